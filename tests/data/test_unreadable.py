"""SkipUnreadableCuts: a cut whose chunk of a lilcom archive is corrupt is dropped from its batch and named."""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from lhotse import CutSet, LilcomChunkyWriter, load_manifest
from lhotse.dataset import K2SpeechRecognitionDataset
from lhotse.features import Features
from lhotse.testing.dummies import dummy_cut, dummy_supervision

from asr.data.unreadable import UNREADABLE_KEY, SkipUnreadableCuts, UnreadableBatchError


def _cuts_with_features(path, n=4) -> tuple[list, dict]:
    cuts, feats = [], {}
    with LilcomChunkyWriter(path) as writer:
        for i in range(n):
            cut = dummy_cut(i, duration=1.0, supervisions=[dummy_supervision(i)])
            feats[cut.id] = np.random.RandomState(i).randn(100, 8).astype(np.float32)
            key = writer.write(cut.id, feats[cut.id])
            cut.features = Features(type="fbank", num_frames=100, num_features=8, frame_shift=0.01,
                                    sampling_rate=16000, start=0, duration=1.0, storage_type="lilcom_chunky",
                                    storage_path=str(path), storage_key=key, channels=0)  # fmt: skip
            cuts.append(cut)
    return cuts, feats


def _corrupt(cut) -> None:
    """Overwrites the cut's chunks of the archive with garbage, as a bad sector or a bad copy would."""
    offset, *sizes = (int(v) for v in cut.features.storage_key.split(","))  # lilcom_chunky: offset, chunk sizes
    length = sum(sizes)
    with open(cut.features.storage_path, "r+b") as f:
        f.seek(offset)
        f.write(bytes([0xFF]) * length)


def test_readable_batch_is_untouched(tmp_path):
    cuts, _ = _cuts_with_features(tmp_path / "f.lca")
    inner = K2SpeechRecognitionDataset(return_cuts=True)
    batch = SkipUnreadableCuts(inner)[CutSet.from_cuts(cuts)]
    assert batch[UNREADABLE_KEY] == []
    assert torch.equal(batch["inputs"], inner[CutSet.from_cuts(cuts)]["inputs"])


def test_corrupt_cut_is_skipped_and_named(tmp_path, caplog):
    cuts, feats = _cuts_with_features(tmp_path / "f.lca")
    _corrupt(cuts[2])
    inner = K2SpeechRecognitionDataset(return_cuts=True)
    with pytest.raises(Exception):  # the oracle: without the wrapper the batch kills the run
        inner[CutSet.from_cuts(cuts)]
    with caplog.at_level(logging.WARNING):
        batch = SkipUnreadableCuts(inner)[CutSet.from_cuts(cuts)]
    assert batch[UNREADABLE_KEY] == [cuts[2].id]
    assert cuts[2].id in caplog.text
    kept = [c.id for c in batch["supervisions"]["cut"]]
    assert sorted(kept) == sorted(c.id for i, c in enumerate(cuts) if i != 2)
    for row, cut in enumerate(batch["supervisions"]["cut"]):  # the survivors' features, as written (lilcom: ~1%)
        np.testing.assert_allclose(batch["inputs"][row].numpy(), feats[cut.id], atol=0.05, rtol=0.05)


def test_all_cuts_unreadable_raises_naming_them(tmp_path):
    cuts, _ = _cuts_with_features(tmp_path / "f.lca", n=2)
    for c in cuts:
        _corrupt(c)
    with pytest.raises(UnreadableBatchError, match=cuts[1].id):
        SkipUnreadableCuts(K2SpeechRecognitionDataset(return_cuts=True))[CutSet.from_cuts(cuts)]


def test_train_loader_skips_and_names_a_corrupt_cut(module, prepared, tmp_path):
    """The training loader over a manifest where one cut's features sit in a corrupt copy of its archive."""
    import shutil
    from dataclasses import replace

    from asr.data.features import TRAIN_ALL
    from asr.data.loaders import AsrDataModule

    cuts = list(load_manifest(prepared / "fbank" / TRAIN_ALL))
    bad = cuts[1]
    copy = tmp_path / Path(bad.features.storage_path).name
    shutil.copy(bad.features.storage_path, copy)
    bad.features.storage_path = str(copy)
    _corrupt(bad)
    CutSet.from_cuts(cuts).to_file(tmp_path / "train.jsonl.gz")
    cfg = replace(module.cfg, train_cuts=str(tmp_path / "train.jsonl.gz"), spec_aug=False)
    loader = AsrDataModule(cfg, module.tokenizer, frames_fn=module.frames_fn).train_dataloader(seed=1)
    seen, unreadable = [], []
    for batch in loader:
        seen += batch.cut_ids
        unreadable += batch.unreadable_cut_ids
    assert unreadable == [bad.id] and bad.id not in seen
    assert len(seen) >= len(cuts) // 2  # the other cuts of its batch were trained on
