"""Cuts whose features (or audio) cannot be read are dropped from their batch, counted and named, not fatal.

One corrupt chunk of a lilcom feature archive (a disk error, a copy cut short) would otherwise raise inside a
DataLoader worker and end a run of days. `SkipUnreadableCuts` wraps a lhotse dataset: a batch that loads is
returned untouched (no cost); when it fails, each of its cuts is loaded alone to find the unreadable ones, which
are dropped, and the rest is loaded again. Their ids travel in the batch, under `UNREADABLE_KEY`, to the trainer,
which counts and logs them (a DataLoader worker's own log is not the run's). A batch with no readable cut at all
raises `UnreadableBatchError` naming them: that is a broken disk, not one bad cut.
"""

import logging

import torch
from lhotse import CutSet

log = logging.getLogger(__name__)

UNREADABLE_KEY = "unreadable_cut_ids"


class UnreadableBatchError(RuntimeError):
    """Not one cut of a batch could be read."""


class SkipUnreadableCuts(torch.utils.data.Dataset):
    """A lhotse dataset (CutSet -> batch dict) that leaves out the cuts it cannot load.

    Args:
        dataset: e.g. K2SpeechRecognitionDataset.
    """

    def __init__(self, dataset: torch.utils.data.Dataset):
        self.dataset = dataset

    def __getitem__(self, cuts: CutSet) -> dict:
        try:
            batch = self.dataset[cuts]
        except Exception as batch_error:
            bad: dict[str, str] = {}
            for cut in cuts:
                try:
                    self.dataset[CutSet.from_cuts([cut])]
                except Exception as e:
                    bad[cut.id] = f"{type(e).__name__}: {e}"
            if not bad:  # not a per-cut problem (e.g. a bug in collation): report it as it is
                raise
            good = CutSet.from_cuts(c for c in cuts if c.id not in bad)
            if len(good) == 0:
                raise UnreadableBatchError(
                    f"no cut of a batch could be loaded: {bad}; check the feature archives on disk"
                ) from batch_error
            for cut_id, err in bad.items():
                log.warning("cut %s skipped: its features cannot be loaded (%s)", cut_id, err)
            batch = self.dataset[good]
            batch[UNREADABLE_KEY] = list(bad)
            return batch
        batch[UNREADABLE_KEY] = []
        return batch
