"""asr.data.batch: a loader's Batch holds the cuts' features, lengths, tokens and texts; bad shapes are refused."""

from __future__ import annotations

import pytest
import torch
from lhotse import load_manifest

from asr.data.batch import Batch


def test_batches_match_the_cuts(module, prepared):
    batch = next(iter(module.valid_dataloader()))
    cuts = {c.id: c for c in load_manifest(prepared / "fbank" / "librispeech_cuts_dev-clean.jsonl.gz")}
    x, x_lens, y, y_lens = batch.features, batch.feature_lens, batch.tokens, batch.token_lens
    assert x.dim() == 3 and x.shape[0] == len(batch) and x.shape[2] == 80 and x.shape[1] == int(x_lens.max())
    assert x_lens.dtype == y.dtype == y_lens.dtype == torch.int64
    assert y.shape == (len(batch), int(y_lens.max()))
    for i, cid in enumerate(batch.cut_ids):
        cut = cuts[cid]
        assert int(x_lens[i]) == cut.num_frames
        # no SpecAugment on validation: the rows are the stored features exactly
        torch.testing.assert_close(x[i, : x_lens[i]], torch.from_numpy(cut.load_features()))
        assert batch.texts[i] == cut.supervisions[0].text
        assert module.tokenizer.decode([y[i, : y_lens[i]].tolist()])[0] == cut.supervisions[0].text
        assert bool((y[i, y_lens[i]:] == module.tokenizer.blank_id).all())
    moved = batch.to("cpu")
    assert moved.cut_ids == batch.cut_ids and torch.equal(moved.tokens, batch.tokens)
    sub = batch.select(torch.tensor([len(batch) - 1]))
    assert sub.cut_ids == batch.cut_ids[-1:] and sub.features.shape[1] == int(x_lens[-1])
    assert sub.tokens.shape[1] == max(int(y_lens[-1]), 1)


def test_batch_rejects_disagreeing_shapes():
    with pytest.raises(ValueError, match="Batch shapes disagree"):
        Batch(features=torch.zeros(2, 5, 3), feature_lens=torch.tensor([5, 5]), tokens=torch.zeros(3, 1),
              token_lens=torch.tensor([1, 1]), cut_ids=["a", "b"], texts=["", ""])  # fmt: skip
