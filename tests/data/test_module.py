"""AsrDataModule (asr.data.loaders): batches within max_duration, exact resume, DDP sharding, Batch contents,
cut filtering (asr.data.filters) with the encoder's own frame count."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from lhotse import load_manifest

from asr.data.batch import Batch
from asr.data.config import DataConfig
from asr.data.features import TRAIN_ALL
from asr.data.filters import CutFilter
from asr.data.loaders import AsrDataModule
from asr.data.tokenizer import Tokenizer
from asr.models import EncoderFrames
from asr.train.resume import sampler_state_at
from tests.data.data_fixtures import WORDS

MAX_DURATION = 6.0


@pytest.fixture()
def module(prepared) -> AsrDataModule:
    cfg = DataConfig(manifest_dir=str(prepared / "fbank"), bpe_model=str(prepared / "lang" / "bpe.model"),
                     train_cuts=TRAIN_ALL, valid_sets=["dev-clean"], test_sets=["dev-clean", "test-other"],
                     max_duration=MAX_DURATION, num_buckets=2, num_workers=0, spec_aug=True,
                     min_cut_duration=1.0, max_cut_duration=20.0)
    return AsrDataModule(cfg, Tokenizer(cfg.bpe_model), frames_fn=EncoderFrames(4))


def _epoch_ids(loader) -> list[list[str]]:
    return [b.cut_ids for b in loader]


def test_train_batches_within_max_duration_and_cover_the_cuts(module, prepared):
    loader = module.train_dataloader(seed=1)
    all_cuts = {c.id: c for c in load_manifest(prepared / "fbank" / TRAIN_ALL)}
    seen = []
    for batch in loader:
        assert isinstance(batch, Batch)
        assert sum(all_cuts[i].duration for i in batch.cut_ids) <= MAX_DURATION + 1e-6
        assert batch.features.shape[0] == len(batch.cut_ids) and batch.features.shape[2] == 80
        seen += batch.cut_ids
    all_ids = list(all_cuts)
    assert len(seen) == len(set(seen))
    assert set(seen) <= set(all_ids) and len(seen) >= len(all_ids) // 2  # drop_last loses at most a batch/bucket


def test_sampler_state_resumes_exactly(module):
    full = _epoch_ids(module.train_dataloader(seed=3))
    assert len(full) >= 3
    loader = module.train_dataloader(seed=3)
    it = iter(loader)
    first = [next(it).cut_ids for _ in range(2)]
    state = loader.sampler.state_dict()
    rest = _epoch_ids(module.train_dataloader(seed=3, sampler_state=state))
    assert first + rest == full


def _epoch_inputs(loader, start: int = 0) -> list[torch.Tensor]:
    return [b.features for i, b in enumerate(loader) if i >= start]


def test_augmentation_resumes_exactly_with_workers(module):
    """SpecAugment in DataLoader workers: a resumed epoch gets the same augmented features as an uninterrupted one,
    as with no workers at all, and the main process's random streams are untouched."""
    module.cfg.num_workers = 2
    loader = module.train_dataloader(seed=3)
    loader.dataset.set_seed(11)
    full = _epoch_inputs(loader)
    assert len(full) >= 3
    plain = [b.features for b in AsrDataModule(replace(module.cfg, spec_aug=False), module.tokenizer,
                                               frames_fn=module.frames_fn).train_dataloader(seed=3)]
    assert any(not torch.equal(a, p) for a, p in zip(full, plain))  # augmentation happened

    start = module.train_dataloader(seed=3).sampler.state_dict()  # workers prefetch: the trainer resumes this way
    resumed = module.train_dataloader(seed=3, sampler_state=sampler_state_at(start, 2))
    resumed.dataset.set_seed(11)
    rest = _epoch_inputs(resumed)
    assert len(rest) == len(full) - 2
    assert all(torch.equal(a, b) for a, b in zip(rest, full[2:]))

    module.cfg.num_workers = 0
    loader = module.train_dataloader(seed=3)
    loader.dataset.set_seed(11)
    torch.manual_seed(0)
    want = torch.rand(3)
    torch.manual_seed(0)
    in_process = _epoch_inputs(loader)
    assert torch.equal(torch.rand(3), want)  # the batch seeding restored the global generator
    assert all(torch.equal(a, b) for a, b in zip(in_process, full))
    loader.dataset.set_seed(12)
    assert any(not torch.equal(a, b) for a, b in zip(_epoch_inputs(loader), full))  # the seed matters


def test_ranks_get_disjoint_batches(module):
    r0 = {i for b in _epoch_ids(module.train_dataloader(rank=0, world_size=2, seed=5)) for i in b}
    r1 = {i for b in _epoch_ids(module.train_dataloader(rank=1, world_size=2, seed=5)) for i in b}
    assert r0 and r1 and not r0 & r1


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


def test_on_the_fly_features_match_the_stored_ones(module, prepared):
    """Fbank computed from the audio in the loader equals the precomputed (lilcom-compressed) features."""
    import dataclasses

    otf = AsrDataModule(dataclasses.replace(module.cfg, on_the_fly_feats=True), module.tokenizer,
                        frames_fn=module.frames_fn)  # fmt: skip
    batch = next(iter(otf.valid_dataloader()))
    cuts = {c.id: c for c in load_manifest(prepared / "fbank" / "librispeech_cuts_dev-clean.jsonl.gz")}
    x, x_lens = batch.features, batch.feature_lens
    for i, cid in enumerate(batch.cut_ids):
        stored = torch.from_numpy(cuts[cid].load_features())
        n = min(int(x_lens[i]), stored.shape[0]) - 1  # the last frame sees the batch's padding
        assert abs(int(x_lens[i]) - stored.shape[0]) <= 1
        torch.testing.assert_close(x[i, :n], stored[:n], atol=0.1, rtol=0.02)


def test_test_dataloaders_skip_missing_sets(module, tiny_corpus):
    loaders = module.test_dataloaders()
    assert list(loaders) == ["dev-clean"]
    ids = sorted(i for b in _epoch_ids(loaders["dev-clean"]) for i in b)
    assert ids == sorted(tiny_corpus[1]["dev-clean"])


def test_audio_folder_loader_computes_features(module, tiny_corpus):
    root, utts = tiny_corpus
    loader = module.test_dataloader_for(root / "LibriSpeech" / "dev-clean")
    batches = list(loader)
    texts = {i: t for b in batches for i, t in zip(b.cut_ids, b.texts)}
    assert sorted(texts) == sorted(utts["dev-clean"]) and all(texts.values())
    assert all(b.features.shape[2] == 80 for b in batches)


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


def test_training_and_validation_need_the_encoder_frames(module):
    """Without frames_fn the test loaders work (decoding keeps every cut) but training and validation refuse."""
    bare = AsrDataModule(module.cfg, module.tokenizer)
    assert "dev-clean" in bare.test_dataloaders()
    with pytest.raises(ValueError, match="frames_fn=model.encoder.frames_fn"):
        bare.valid_dataloader()
    with pytest.raises(ValueError, match="frames_fn=model.encoder.frames_fn"):
        bare.train_dataloader()


def test_validation_drops_unscorable_cuts_but_tests_keep_them(module, prepared):
    import dataclasses

    cuts = load_manifest(prepared / "fbank" / "librispeech_cuts_dev-clean.jsonl.gz").to_eager()
    bad = cuts[0].with_id("bad")
    bad.supervisions = [cuts[0].supervisions[0].transform_text(lambda t: t + " 42")]
    path = prepared / "fbank" / "librispeech_cuts_dev-bad.jsonl.gz"
    cuts.__class__.from_cuts([bad, *cuts]).to_file(path)
    try:
        dm = AsrDataModule(dataclasses.replace(module.cfg, valid_sets=["dev-bad"], test_sets=["dev-bad"]),
                           module.tokenizer, frames_fn=module.frames_fn)
        valid = {i for b in _epoch_ids(dm.valid_dataloader()) for i in b}
        test = {i for b in _epoch_ids(dm.test_dataloaders()["dev-bad"]) for i in b}
        assert test == valid | {"bad"} and "bad" not in valid
    finally:
        path.unlink()
