"""asr.data.filters: what CutFilter drops, and its encoder frame count, which is the model's own."""

from __future__ import annotations

import pytest
import torch
from lhotse import load_manifest

from asr.data.filters import CutFilter
from asr.data.loaders import AsrDataModule
from asr.models import EncoderFrames
from tests.data.data_fixtures import WORDS


def test_cut_filter_drops_and_counts(module, prepared):
    cut = next(iter(load_manifest(prepared / "fbank" / "librispeech_cuts_dev-clean.jsonl.gz")))
    keep = CutFilter(module.tokenizer, 1.0, 20.0, EncoderFrames(4))
    short = cut.truncate(duration=0.5)
    odd = cut.with_id("odd")
    odd.supervisions = [cut.supervisions[0].transform_text(lambda t: t + " 42")]
    wordy = cut.with_id("wordy")
    wordy.supervisions = [cut.supervisions[0].transform_text(lambda t: " ".join(WORDS * 2))]
    assert keep.encoder_frames(cut.num_frames) < len(module.tokenizer.encode([" ".join(WORDS * 2)])[0])
    assert [keep(c) for c in (cut, short, odd, wordy)] == [True, False, False, False]
    assert keep.kept == 1 and sum(keep.counts.values()) == 3 and len(keep.counts) == 3


@pytest.mark.parametrize("factor", [4, 8])
@pytest.mark.parametrize("half_rate", [False, True])
def test_the_filter_counts_the_frames_the_encoder_outputs(factor, half_rate):
    """For every input length T in 1..200, the filter's encoder frames (the model's frames_fn, pickled as a
    DataLoader worker gets it) equal the frames a real encoder outputs: with subsampling by 4 or 8, with or without
    half-rate layers; below the encoder's minimum the count is <= 0 (such a cut is always dropped)."""
    import pickle

    from asr.models import Conformer

    torch.manual_seed(0)
    enc = Conformer(num_features=16, d_model=8, num_heads=2, ff_dim=8, num_layers=3, cnn_kernel=3, dropout=0.0,
                    subsampling_factor=factor, half_rate_layers=[1, 2] if half_rate else []).eval()  # fmt: skip
    tok = _Tokenizer()
    keep = pickle.loads(pickle.dumps(CutFilter(tok, 0.0, float("inf"), enc.frames_fn)))
    with torch.no_grad():
        for T in range(1, 201):
            counted = keep.encoder_frames(T)
            if T < enc.min_input_frames:
                assert counted <= 0, T
                continue
            out, out_lens = enc(torch.randn(1, T, 16), torch.tensor([T]))
            assert counted == out.size(1) == int(out_lens[0]), (T, counted, out.shape)


class _Tokenizer:
    """The filter's view of a tokenizer, for the frame-count test (picklable)."""

    alphabet = frozenset("AB ")

    def encode(self, texts):
        return [[1] * len(t) for t in texts]


def test_the_filter_counts_the_model_frames_it_is_given(module):
    """A factor-8 encoder has half the frames: an utterance with as many tokens as 40 ms frames is dropped."""
    by8 = AsrDataModule(module.cfg, module.tokenizer, frames_fn=EncoderFrames(8))
    assert [by8.train_filter.encoder_frames(t) for t in (15, 100, 1000)] == [1, 11, 124]
    assert module.train_filter.encoder_frames(1000) == 249
