"""Train/valid/test dataloaders over lhotse cuts, and the conversion of a batch into model inputs.

A batch is lhotse's `K2SpeechRecognitionDataset` dict: batch["inputs"] (B, T, F) float fbank, and
batch["supervisions"] with "text" (list[str]), "sequence_idx" (B,), "start_frame" (B,), "num_frames" (B,) and
"cut" (the cuts, return_cuts=True). `batch_to_model_inputs` turns it into (x, x_lens, y, y_lens, cut_ids).
"""

from __future__ import annotations

import logging
import random
import zlib
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import torch
from lhotse import CutSet, Fbank, FbankConfig, load_manifest, load_manifest_lazy
from lhotse.cut import Cut
from lhotse.dataset import (CutMix, DynamicBucketingSampler, K2SpeechRecognitionDataset, OnTheFlyFeatures,
                            PrecomputedFeatures, SimpleCutSampler, SpecAugment)
from torch import Tensor
from torch.utils.data import DataLoader

from asr.data.config import DataConfig
from asr.data.tokenizer import Tokenizer

log = logging.getLogger(__name__)

PREFIX = "librispeech_cuts_"
FRAME_RATE = 100  # fbank frames per second (10 ms shift): frames of a cut without precomputed features
AUDIO_SUFFIXES = (".flac", ".wav", ".mp3", ".ogg", ".opus")
MAX_WARNINGS = 10


def subsampled_frames(num_frames: int) -> int:
    """Encoder frames of `num_frames` input frames: the model's exact formula when asr.models provides it."""
    try:
        from asr.models.conformer import subsampled_lengths
    except ImportError:
        return ((num_frames - 7) // 2 + 1) // 2
    return int(subsampled_lengths(torch.tensor([num_frames]))[0])


class _FramesOf:
    """int -> int from a (B,) -> (B,) frames function (a class, not a lambda: samplers may be pickled)."""

    def __init__(self, frames_fn: Callable[[Tensor], Tensor]) -> None:
        self.frames_fn = frames_fn

    def __call__(self, num_frames: int) -> int:
        return int(self.frames_fn(torch.tensor([num_frames]))[0])


class CutFilter:
    """Keeps the cuts a transducer can learn from, counting what it drops by reason.

    Drops: duration outside [min_duration, max_duration]; text with characters the tokenizer cannot spell;
    fewer encoder frames (after subsampling) than tokens (the transducer must emit one token per frame at most).
    """

    def __init__(self, tokenizer: Tokenizer, min_duration: float, max_duration: float,
                 subsample: Callable[[int], int] = subsampled_frames) -> None:
        self.tokenizer = tokenizer
        self.min_duration = min_duration
        self.max_duration = max_duration
        self.subsample = subsample
        self.counts: Counter[str] = Counter()
        self.kept = 0

    def reset(self) -> None:
        self.counts.clear()
        self.kept = 0

    def _drop(self, reason: str, cut: Cut) -> bool:
        self.counts[reason] += 1
        if self.counts[reason] <= MAX_WARNINGS:
            log.warning("dropping cut %s: %s", cut.id, reason)
        return False

    def __call__(self, cut: Cut) -> bool:
        if not self.min_duration <= cut.duration <= self.max_duration:
            return self._drop(f"duration outside [{self.min_duration}, {self.max_duration}] s", cut)
        text = " ".join(s.text or "" for s in cut.supervisions)
        if set(text) - self.tokenizer.alphabet:
            return self._drop("characters outside the tokenizer's alphabet", cut)
        frames = cut.num_frames if cut.has_features else round(cut.duration * FRAME_RATE)
        if self.subsample(frames) < len(self.tokenizer.encode([text])[0]):
            return self._drop("fewer frames after subsampling than tokens", cut)
        self.kept += 1
        return True

    def summary(self) -> str:
        dropped = ", ".join(f"{n} ({r})" for r, n in sorted(self.counts.items())) or "none"
        return f"cut filter: kept {self.kept}, dropped {sum(self.counts.values())}: {dropped}"


class _FilteredCuts:
    """Lazy iterable of the cuts passing `keep`; logs the filter's counts at the end of every pass."""

    def __init__(self, source: Iterable[Cut], keep: CutFilter) -> None:
        self.source = source
        self.keep = keep

    def __iter__(self) -> Iterator[Cut]:
        self.keep.reset()
        for cut in self.source:
            if self.keep(cut):
                yield cut
        log.info("training %s", self.keep.summary())


class SeededBatches(torch.utils.data.Dataset):
    """A lhotse dataset whose random augmentation (SpecAugment, CutMix) of a batch depends only on a seed and the
    batch's cut ids: the same in a DataLoader worker or the main process, whichever worker makes it, and after a
    resume mid-epoch. Python's, NumPy's and torch's generators are seeded for the batch and restored after it, so the
    caller's streams (dropout in the main process) are untouched. `set_seed` (the trainer: per epoch and rank)."""

    def __init__(self, dataset: torch.utils.data.Dataset, seed: int = 0) -> None:
        self.dataset, self.seed = dataset, seed

    def set_seed(self, seed: int) -> None:
        self.seed = seed

    def __getitem__(self, cuts: CutSet) -> dict:
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


def _seed_worker(worker_id: int) -> None:
    """Seeds Python's and NumPy's generators of a DataLoader worker (SpecAugment, CutMix) from torch's seed.

    PyTorch gives each worker `base_seed + worker_id`, with base_seed drawn from the loader's generator, which the
    trainer seeds from (seed, epoch, rank). SeededBatches then re-seeds per batch, so that a resumed epoch is the same.
    """
    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


class AsrDataModule:
    """Builds the dataloaders of a recipe from its cut manifests (see DataConfig for every knob)."""

    def __init__(self, cfg: DataConfig, tokenizer: Tokenizer,
                 frames_fn: Callable[[Tensor], Tensor] | None = None) -> None:
        """frames_fn: the model's encoder frames of (B,) input frames (default: subsampled_frames, factor 4)."""
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.manifest_dir = Path(cfg.manifest_dir)
        self.subsample = subsampled_frames if frames_fn is None else _FramesOf(frames_fn)
        self.train_filter = CutFilter(tokenizer, cfg.min_cut_duration, cfg.max_cut_duration, self.subsample)

    # ------------------------------------------------------------------------------------------------- cuts
    def _cuts_path(self, name: str) -> Path:
        path = self.manifest_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"no cut manifest {path}: run recipes/librispeech/prepare.sh first")
        return path

    def train_cuts(self) -> CutSet:
        """The training cuts (lazy), filtered by `train_filter`."""
        cuts = load_manifest_lazy(self._cuts_path(self.cfg.train_cuts))
        return CutSet(_FilteredCuts(cuts, self.train_filter))

    def _eval_cuts(self, subset: str, filtered: bool) -> CutSet:
        """Cuts of a dev/test subset; `filtered` drops those the loss cannot score (validation), at any length."""
        cuts = load_manifest(self._cuts_path(f"{PREFIX}{subset}.jsonl.gz"))
        if not filtered:  # a test set is decoded whole: every utterance counts in its WER
            return cuts
        keep = CutFilter(self.tokenizer, 0.0, float("inf"), self.subsample)
        cuts = cuts.filter(keep).to_eager()
        if keep.counts:
            log.warning("validation set %s: %s", subset, keep.summary())
        return cuts

    # ---------------------------------------------------------------------------------------------- loaders
    def _input_strategy(self):
        if self.cfg.on_the_fly_feats:
            return OnTheFlyFeatures(Fbank(FbankConfig(num_filters=self.cfg.num_mel_bins)))
        return PrecomputedFeatures()

    def _loader(self, dataset, sampler, seed: int = 0) -> DataLoader:
        generator = torch.Generator().manual_seed(seed)  # workers' seeds; the trainer re-seeds it per epoch and rank
        return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=self.cfg.num_workers,
                          persistent_workers=False, worker_init_fn=_seed_worker, generator=generator)

    def train_dataloader(self, rank: int = 0, world_size: int = 1, sampler_state: dict | None = None,
                         seed: int = 0) -> DataLoader:
        """Training batches; `sampler_state` (from `loader.sampler.state_dict()`) resumes mid-epoch exactly."""
        cfg = self.cfg
        transforms = []
        if cfg.enable_musan:
            musan = load_manifest(self._cuts_path(cfg.musan_cuts))
            transforms.append(CutMix(cuts=musan, p=cfg.musan_prob, snr=tuple(cfg.musan_snr), preserve_id=True,
                                     pad_to_longest=False, seed=seed))
        input_transforms = []
        if cfg.spec_aug:
            input_transforms.append(SpecAugment(
                time_warp_factor=cfg.spec_aug_time_warp_factor, num_feature_masks=cfg.spec_aug_num_feature_masks,
                features_mask_size=cfg.spec_aug_features_mask_size, num_frame_masks=cfg.spec_aug_num_frame_masks,
                frames_mask_size=cfg.spec_aug_frames_mask_size))
        dataset = K2SpeechRecognitionDataset(return_cuts=True, cut_transforms=transforms,
                                             input_transforms=input_transforms,
                                             input_strategy=self._input_strategy())
        dataset = SeededBatches(dataset, seed)
        sampler = DynamicBucketingSampler(self.train_cuts(), max_duration=cfg.max_duration, shuffle=cfg.shuffle,
                                          num_buckets=cfg.num_buckets, drop_last=cfg.drop_last, rank=rank,
                                          world_size=world_size, seed=seed)
        if sampler_state is not None:
            sampler.load_state_dict(sampler_state)
        return self._loader(dataset, sampler, seed)

    def _eval_loader(self, cuts: CutSet, rank: int = 0, world_size: int = 1) -> DataLoader:
        dataset = K2SpeechRecognitionDataset(return_cuts=True, input_strategy=self._input_strategy())
        # Evaluation keeps the manifest order: no bucketing, no shuffling.
        sampler = SimpleCutSampler(cuts, max_duration=self.cfg.max_duration, shuffle=False, rank=rank,
                                   world_size=world_size)
        return self._loader(dataset, sampler)

    def valid_dataloader(self, rank: int = 0, world_size: int = 1) -> DataLoader:
        """Batches of every subset in cfg.valid_sets that has a manifest (missing ones are skipped, logged)."""
        subsets = [s for s in self.cfg.valid_sets if (self.manifest_dir / f"{PREFIX}{s}.jsonl.gz").is_file()]
        missing = sorted(set(self.cfg.valid_sets) - set(subsets))
        if missing:
            log.warning("no cuts for validation set(s) %s in %s; skipped", ", ".join(missing), self.manifest_dir)
        if not subsets:
            raise FileNotFoundError(f"none of the validation sets {self.cfg.valid_sets} in {self.manifest_dir}")
        cuts = CutSet.from_cuts(c for s in subsets for c in self._eval_cuts(s, filtered=True))
        return self._eval_loader(cuts, rank, world_size)

    def test_dataloaders(self) -> dict[str, DataLoader]:
        """One loader per test set in cfg.test_sets that has a manifest (missing ones are skipped, logged)."""
        out = {}
        for subset in self.cfg.test_sets:
            if not (self.manifest_dir / f"{PREFIX}{subset}.jsonl.gz").is_file():
                log.warning("no cuts for test set %s in %s; skipped", subset, self.manifest_dir)
                continue
            out[subset] = self._eval_loader(self._eval_cuts(subset, filtered=False))
        return out

    def test_dataloader_for(self, cuts_or_dir: CutSet | str | Path) -> DataLoader:
        """Loader for a CutSet, a cut manifest file, or a folder of audio files (features computed on the fly)."""
        if isinstance(cuts_or_dir, CutSet):
            return self._eval_loader(cuts_or_dir)
        path = Path(cuts_or_dir)
        if path.is_file():
            return self._eval_loader(load_manifest(path))
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: neither a cut manifest nor a folder of audio files")
        cuts = audio_folder_cuts(path)
        dataset = K2SpeechRecognitionDataset(
            return_cuts=True, input_strategy=OnTheFlyFeatures(Fbank(FbankConfig(num_filters=self.cfg.num_mel_bins))))
        sampler = SimpleCutSampler(cuts, max_duration=self.cfg.max_duration, shuffle=False)
        return self._loader(dataset, sampler)


def audio_folder_cuts(folder: Path) -> CutSet:
    """One cut per audio file under `folder` (recursively), with the text of a LibriSpeech `.trans.txt` if any."""
    from lhotse import Recording, SupervisionSegment
    from lhotse.cut import MonoCut

    texts = {}
    for trans in folder.rglob("*.trans.txt"):
        for line in trans.read_text(errors="replace").splitlines():
            parts = line.strip().split(maxsplit=1)
            if parts:
                texts[parts[0]] = parts[1] if len(parts) > 1 else ""
    cuts = []
    for audio in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        try:
            rec = Recording.from_file(audio)
        except Exception as e:
            log.warning("skipping unreadable audio %s: %s", audio, e)
            continue
        sup = SupervisionSegment(id=rec.id, recording_id=rec.id, start=0.0, duration=rec.duration,
                                 text=texts.get(rec.id, ""))
        cuts.append(MonoCut(id=rec.id, start=0.0, duration=rec.duration, channel=0, recording=rec,
                            supervisions=[sup]))
    if not cuts:
        raise FileNotFoundError(f"no readable audio file ({', '.join(AUDIO_SUFFIXES)}) under {folder}")
    return CutSet.from_cuts(cuts)


def batch_to_model_inputs(batch: dict, tokenizer: Tokenizer) -> tuple[Tensor, Tensor, Tensor, Tensor, list[str]]:
    """Model inputs of a K2SpeechRecognitionDataset batch, one row per supervision, in supervision order.

    Returns:
        x: (B, T, F) features (rows gathered by sequence_idx, cropped at start_frame, zero-padded).
        x_lens: (B,) int64 valid frames of each row.
        y: (B, U) int64 token ids, padded with the blank id.
        y_lens: (B,) int64 tokens per row.
        cut_ids: the cut id of each row.
    """
    inputs: Tensor = batch["inputs"]  # (B, T, F)
    sup = batch["supervisions"]
    seq_idx = torch.as_tensor(sup["sequence_idx"], dtype=torch.int64)
    start = torch.as_tensor(sup["start_frame"], dtype=torch.int64) if "start_frame" in sup else None
    x_lens = torch.as_tensor(sup["num_frames"], dtype=torch.int64) if "num_frames" in sup else None
    if x_lens is None:  # on-the-fly features of a padded batch: every row is its full length
        x_lens = torch.full((len(seq_idx),), inputs.size(1), dtype=torch.int64)
    if start is None or bool((start == 0).all()):
        x = inputs.index_select(0, seq_idx)[:, : int(x_lens.max())]  # (B, T, F)
    else:
        x = inputs.new_zeros(len(seq_idx), int(x_lens.max()), inputs.size(2))  # (B, T, F)
        for i, (r, s, n) in enumerate(zip(seq_idx.tolist(), start.tolist(), x_lens.tolist())):
            x[i, :n] = inputs[r, s:s + n]
    tokens = tokenizer.encode(list(sup["text"]))
    y_lens = torch.tensor([len(t) for t in tokens], dtype=torch.int64)
    y = torch.full((len(tokens), max(1, int(y_lens.max()) if len(tokens) else 1)), tokenizer.blank_id,
                   dtype=torch.int64)  # (B, U)
    for i, t in enumerate(tokens):
        y[i, : len(t)] = torch.tensor(t, dtype=torch.int64)
    cuts = sup.get("cut") or []
    cut_ids = [c.id for c in cuts]
    return x, x_lens, y, y_lens, cut_ids
