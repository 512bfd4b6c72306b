"""AsrDataModule (asr.data.loaders): batches within max_duration, exact resume, DDP sharding, test and audio-folder
loaders, validation filtering."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from lhotse import load_manifest

from asr.data.batch import Batch
from asr.data.features import TRAIN_ALL
from asr.data.loaders import AsrDataModule
from asr.train.resume import sampler_state_at
from tests.data.data_fixtures import MAX_DURATION


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
