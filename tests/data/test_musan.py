"""MUSAN: manifests (stage 1), 10 s windows with fbank (stage 3), and CutMix noise in training batches."""

from __future__ import annotations

import dataclasses

import numpy as np
import soundfile as sf
import torch
from lhotse import load_manifest

from asr.data.config import DataConfig
from asr.data.features import TRAIN_ALL, compute_musan
from asr.data.loaders import AsrDataModule
from asr.data.prepare import main as prepare_main
from asr.data.tokenizer import Tokenizer
from asr.models import EncoderFrames


def _wav(path, seconds, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = 0.3 * np.random.default_rng(seed).standard_normal(int(seconds * 16000))
    sf.write(str(path), noise.astype(np.float32), 16000)


def test_musan_features_and_cutmix(tmp_path, prepared):
    musan = tmp_path / "musan"
    _wav(musan / "noise" / "free-sound" / "noise-0001.wav", 12.0, 1)
    _wav(musan / "speech" / "us-gov" / "speech-0001.wav", 11.0, 2)
    _wav(musan / "music" / "fma" / "music-0001.wav", 16.0, 3)
    (musan / "music" / "fma" / "ANNOTATIONS").write_text("music-0001 rock N someone\n")
    prepare_main(["--musan", str(musan), "--out", str(tmp_path / "manifests")])
    compute_musan(tmp_path / "manifests", tmp_path / "fbank")
    cuts = load_manifest(tmp_path / "fbank" / "musan_cuts.jsonl.gz")
    # windows of 10 s, those under 5 s dropped: 12 s -> 10 (+2 dropped), 11 s -> 10, 16 s -> 10 + 6
    assert sorted(round(c.duration) for c in cuts) == [6, 10, 10, 10]
    assert all(c.load_features().shape == (c.num_frames, 80) for c in cuts)

    (prepared / "fbank" / "musan_cuts.jsonl.gz").write_bytes((tmp_path / "fbank" / "musan_cuts.jsonl.gz").read_bytes())
    try:
        cfg = DataConfig(manifest_dir=str(prepared / "fbank"), bpe_model=str(prepared / "lang" / "bpe.model"),
                         train_cuts=TRAIN_ALL, max_duration=6.0, num_buckets=2, num_workers=0, spec_aug=False,
                         enable_musan=True, musan_prob=1.0)
        dm = AsrDataModule(cfg, Tokenizer(cfg.bpe_model), frames_fn=EncoderFrames(4))
        clean_cuts = {c.id: c for c in load_manifest(prepared / "fbank" / TRAIN_ALL)}
        batch = next(iter(dm.train_dataloader()))
        # with p = 1 every cut gets noise (preserve_id keeps its id): features differ from the stored clean ones
        clean = torch.from_numpy(clean_cuts[batch.cut_ids[0]].load_features())
        noisy = batch.features[0, : batch.feature_lens[0]]
        assert noisy.shape[1] == 80
        assert not torch.allclose(noisy[: clean.shape[0]], clean[: noisy.shape[0]], atol=1e-3)
        dm_clean = AsrDataModule(dataclasses.replace(cfg, enable_musan=False), dm.tokenizer, frames_fn=dm.frames_fn)
        b2 = next(iter(dm_clean.train_dataloader()))
        c2 = clean_cuts[b2.cut_ids[0]]
        assert int(b2.feature_lens[0]) == c2.num_frames
        torch.testing.assert_close(b2.features[0, : c2.num_frames], torch.from_numpy(c2.load_features()))
    finally:
        (prepared / "fbank" / "musan_cuts.jsonl.gz").unlink()
