"""AsrDataModule: batches within max_duration, exact resume, DDP sharding, model inputs, cut filtering."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from tests.data.data_fixtures import WORDS
from lhotse import load_manifest

from asr.data.config import DataConfig
from asr.data.features import TRAIN_ALL
from asr.data.module import AsrDataModule, CutFilter, batch_to_model_inputs, subsampled_frames
from asr.data.tokenizer import Tokenizer
from asr.train.resume import sampler_state_at

MAX_DURATION = 6.0


@pytest.fixture()
def module(prepared) -> AsrDataModule:
    cfg = DataConfig(manifest_dir=str(prepared / "fbank"), bpe_model=str(prepared / "lang" / "bpe.model"),
                     train_cuts=TRAIN_ALL, valid_sets=["dev-clean"], test_sets=["dev-clean", "test-other"],
                     max_duration=MAX_DURATION, num_buckets=2, num_workers=0, spec_aug=True,
                     min_cut_duration=1.0, max_cut_duration=20.0)
    return AsrDataModule(cfg, Tokenizer(cfg.bpe_model))


def _epoch_ids(loader) -> list[list[str]]:
    return [[c.id for c in b["supervisions"]["cut"]] for b in loader]


def test_train_batches_within_max_duration_and_cover_the_cuts(module, prepared):
    loader = module.train_dataloader(seed=1)
    seen = []
    for batch in loader:
        cuts = batch["supervisions"]["cut"]
        assert sum(c.duration for c in cuts) <= MAX_DURATION + 1e-6
        assert batch["inputs"].shape[0] == len(cuts) and batch["inputs"].shape[2] == 80
        seen += [c.id for c in cuts]
    all_ids = [c.id for c in load_manifest(prepared / "fbank" / TRAIN_ALL)]
    assert len(seen) == len(set(seen))
    assert set(seen) <= set(all_ids) and len(seen) >= len(all_ids) // 2  # drop_last loses at most a batch/bucket


def test_sampler_state_resumes_exactly(module):
    full = _epoch_ids(module.train_dataloader(seed=3))
    assert len(full) >= 3
    loader = module.train_dataloader(seed=3)
    it = iter(loader)
    first = [[c.id for c in next(it)["supervisions"]["cut"]] for _ in range(2)]
    state = loader.sampler.state_dict()
    rest = _epoch_ids(module.train_dataloader(seed=3, sampler_state=state))
    assert first + rest == full


def _epoch_inputs(loader, start: int = 0) -> list[torch.Tensor]:
    return [b["inputs"] for i, b in enumerate(loader) if i >= start]


def test_augmentation_resumes_exactly_with_workers(module):
    """SpecAugment in DataLoader workers: a resumed epoch gets the same augmented features as an uninterrupted one,
    as with no workers at all, and the main process's random streams are untouched."""
    module.cfg.num_workers = 2
    loader = module.train_dataloader(seed=3)
    loader.dataset.set_seed(11)
    full = _epoch_inputs(loader)
    assert len(full) >= 3
    plain = [b["inputs"] for b in AsrDataModule(replace(module.cfg, spec_aug=False), module.tokenizer)
             .train_dataloader(seed=3)]
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


def test_batch_to_model_inputs_matches_the_cuts(module):
    batch = next(iter(module.valid_dataloader()))
    x, x_lens, y, y_lens, cut_ids = batch_to_model_inputs(batch, module.tokenizer)
    cuts = {c.id: c for c in batch["supervisions"]["cut"]}
    assert x.dim() == 3 and x.shape[0] == len(cut_ids) and x.shape[2] == 80 and x.shape[1] == int(x_lens.max())
    assert y.dtype == torch.int64 and y.shape == (len(cut_ids), int(y_lens.max()))
    for i, cid in enumerate(cut_ids):
        cut = cuts[cid]
        assert int(x_lens[i]) == cut.num_frames
        # no SpecAugment on validation: the rows are the stored features exactly
        torch.testing.assert_close(x[i, : x_lens[i]], torch.from_numpy(cut.load_features()))
        assert module.tokenizer.decode([y[i, : y_lens[i]].tolist()])[0] == cut.supervisions[0].text
        assert bool((y[i, y_lens[i]:] == module.tokenizer.blank_id).all())


def test_on_the_fly_features_match_the_stored_ones(module):
    """Fbank computed from the audio in the loader equals the precomputed (lilcom-compressed) features."""
    import dataclasses

    otf = AsrDataModule(dataclasses.replace(module.cfg, on_the_fly_feats=True), module.tokenizer)
    batch = next(iter(otf.valid_dataloader()))
    x, x_lens, _, _, cut_ids = batch_to_model_inputs(batch, otf.tokenizer)
    cuts = {c.id: c for c in batch["supervisions"]["cut"]}
    for i, cid in enumerate(cut_ids):
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
    texts = {c.id: c.supervisions[0].text for b in batches for c in b["supervisions"]["cut"]}
    assert sorted(texts) == sorted(utts["dev-clean"]) and all(texts.values())
    assert all(b["inputs"].shape[2] == 80 for b in batches)


def test_cut_filter_drops_and_counts(module, prepared):
    cut = next(iter(load_manifest(prepared / "fbank" / "librispeech_cuts_dev-clean.jsonl.gz")))
    keep = CutFilter(module.tokenizer, 1.0, 20.0)
    short = cut.truncate(duration=0.5)
    odd = cut.with_id("odd")
    odd.supervisions = [cut.supervisions[0].transform_text(lambda t: t + " 42")]
    wordy = cut.with_id("wordy")
    wordy.supervisions = [cut.supervisions[0].transform_text(lambda t: " ".join(WORDS * 2))]
    assert subsampled_frames(cut.num_frames) < len(module.tokenizer.encode([" ".join(WORDS * 2)])[0])
    assert [keep(c) for c in (cut, short, odd, wordy)] == [True, False, False, False]
    assert keep.kept == 1 and sum(keep.counts.values()) == 3 and len(keep.counts) == 3


def test_subsampled_frames_follows_the_model():
    conformer = pytest.importorskip("asr.models.conformer")
    for t in (7, 8, 9, 10, 100, 1001):
        assert subsampled_frames(t) == int(conformer.subsampled_lengths(torch.tensor([t]))[0])


def test_the_filter_counts_the_model_frames_it_is_given(module):
    """A factor-8 encoder has half the frames: an utterance with as many tokens as 40 ms frames is dropped."""
    import functools

    from asr.models.conformer import subsampled_lengths

    by8 = AsrDataModule(module.cfg, module.tokenizer, frames_fn=functools.partial(subsampled_lengths, factor=8))
    assert [by8.subsample(t) for t in (15, 100, 1000)] == [1, 11, 124]
    assert by8.train_filter.subsample(1000) == 124 and module.train_filter.subsample(1000) == 249


def test_subsampled_frames_fallback_without_the_model(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "asr.models.conformer", None)  # import fails
    assert [subsampled_frames(t) for t in (7, 8, 9, 10, 100)] == [0, 0, 1, 1, 23]  # ((T - 7) // 2 + 1) // 2


def test_validation_drops_unscorable_cuts_but_tests_keep_them(module, prepared):
    import dataclasses

    cuts = load_manifest(prepared / "fbank" / "librispeech_cuts_dev-clean.jsonl.gz").to_eager()
    bad = cuts[0].with_id("bad")
    bad.supervisions = [cuts[0].supervisions[0].transform_text(lambda t: t + " 42")]
    path = prepared / "fbank" / "librispeech_cuts_dev-bad.jsonl.gz"
    cuts.__class__.from_cuts([bad, *cuts]).to_file(path)
    try:
        dm = AsrDataModule(dataclasses.replace(module.cfg, valid_sets=["dev-bad"], test_sets=["dev-bad"]),
                           module.tokenizer)
        valid = {i for b in _epoch_ids(dm.valid_dataloader()) for i in b}
        test = {i for b in _epoch_ids(dm.test_dataloaders()["dev-bad"]) for i in b}
        assert test == valid | {"bad"} and "bad" not in valid
    finally:
        path.unlink()
