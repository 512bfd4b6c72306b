"""Random augmentation that a resumed epoch repeats exactly: per-batch seeding of a lhotse dataset and of the
DataLoader workers."""

from __future__ import annotations

import random
import zlib

import numpy as np
import torch
from lhotse import CutSet


class SeededBatches(torch.utils.data.Dataset):
    """A lhotse dataset whose random augmentation (SpecAugment, CutMix) of a batch depends only on a seed and the
    batch's cut ids: the same in a DataLoader worker or the main process, whichever worker makes it, and after a
    resume mid-epoch. Python's, NumPy's and torch's generators are seeded for the batch and restored after it, so the
    caller's streams (dropout in the main process) are untouched. `set_seed` (the trainer: per epoch and rank)."""

    def __init__(self, dataset: torch.utils.data.Dataset, seed: int = 0) -> None:
        self.dataset, self.seed = dataset, seed

    def set_seed(self, seed: int) -> None:
        self.seed = seed

    def __getitem__(self, cuts: CutSet):
        s = zlib.crc32("\n".join(c.id for c in cuts).encode(), self.seed % 2**32)
        py_state, np_state = random.getstate(), np.random.get_state()
        try:
            with torch.random.fork_rng(devices=[]):
                random.seed(s)
                np.random.seed(s)
                torch.manual_seed(s)
                return self.dataset[cuts]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def seed_worker(worker_id: int) -> None:
    """Seeds Python's and NumPy's generators of a DataLoader worker (SpecAugment, CutMix) from torch's seed.

    PyTorch gives each worker `base_seed + worker_id`, with base_seed drawn from the loader's generator, which the
    trainer seeds from (seed, epoch, rank). SeededBatches then re-seeds per batch, so that a resumed epoch is the same.
    """
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)
