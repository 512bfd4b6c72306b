"""Train/valid/test DataLoaders over lhotse cut manifests; every loader yields `asr.data.batch.Batch`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch
from lhotse import CutSet, Fbank, FbankConfig, load_manifest, load_manifest_lazy
from lhotse.dataset import (CutMix, DynamicBucketingSampler, K2SpeechRecognitionDataset, OnTheFlyFeatures,
                            PrecomputedFeatures, SimpleCutSampler, SpecAugment)
from torch import Tensor
from torch.utils.data import DataLoader

from asr.data.audio_folder import audio_folder_cuts
from asr.data.batch import ToBatch
from asr.data.config import DataConfig
from asr.data.filters import CutFilter, FilteredCuts
from asr.data.prepare import manifest_name
from asr.data.seeding import SeededBatches, seed_worker
from asr.data.tokenizer import Tokenizer
from asr.data.unreadable import SkipUnreadableCuts

log = logging.getLogger(__name__)


class AsrDataModule:
    """Builds the dataloaders of a recipe from its cut manifests (see DataConfig for every knob).

    Args:
        frames_fn: the encoder's frame count, (B,) input frames -> (B,) encoder frames (`model.encoder.frames_fn`),
            for the filter of training and validation cuts; test loaders need none (decoding keeps every cut).
    """

    def __init__(self, cfg: DataConfig, tokenizer: Tokenizer,
                 frames_fn: Callable[[Tensor], Tensor] | None = None) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.manifest_dir = Path(cfg.manifest_dir)
        self.frames_fn = frames_fn
        self.train_filter = None if frames_fn is None else CutFilter(
            tokenizer, cfg.min_cut_duration, cfg.max_cut_duration, frames_fn)

    def _filter(self, min_duration: float, max_duration: float) -> CutFilter:
        if self.frames_fn is None:
            raise ValueError("AsrDataModule(frames_fn=None): filtering training or validation cuts needs the "
                             "encoder's frame count; pass frames_fn=model.encoder.frames_fn")  # fmt: skip
        return CutFilter(self.tokenizer, min_duration, max_duration, self.frames_fn)

    # ------------------------------------------------------------------------------------------------- cuts
    def _cuts_path(self, subset_or_file: str) -> Path:
        path = self.manifest_dir / subset_or_file
        if not path.is_file():
            raise FileNotFoundError(f"no cut manifest {path}: run recipes/librispeech/prepare.sh first")
        return path

    def _has_cuts(self, subset: str) -> bool:
        return (self.manifest_dir / manifest_name("cuts", subset, self.cfg.manifest_prefix)).is_file()

    def train_cuts(self) -> CutSet:
        """The training cuts (lazy), filtered by `train_filter`."""
        if self.train_filter is None:
            self.train_filter = self._filter(self.cfg.min_cut_duration, self.cfg.max_cut_duration)
        cuts = load_manifest_lazy(self._cuts_path(self.cfg.train_cuts))
        return CutSet(FilteredCuts(cuts, self.train_filter))

    def _eval_cuts(self, subset: str, filtered: bool) -> CutSet:
        """Cuts of a dev/test subset; `filtered` drops those the loss cannot score (validation), at any length."""
        cuts = load_manifest(self._cuts_path(manifest_name("cuts", subset, self.cfg.manifest_prefix)))
        if not filtered:  # a test set is decoded whole: every utterance counts in its WER
            return cuts
        keep = self._filter(0.0, float("inf"))
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
                          persistent_workers=False, worker_init_fn=seed_worker, generator=generator)

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
        # a cut whose features cannot be read is left out of its batch and counted, not fatal to the run
        dataset = SeededBatches(ToBatch(SkipUnreadableCuts(dataset), self.tokenizer), seed)
        sampler = DynamicBucketingSampler(self.train_cuts(), max_duration=cfg.max_duration, shuffle=cfg.shuffle,
                                          num_buckets=cfg.num_buckets, drop_last=cfg.drop_last, rank=rank,
                                          world_size=world_size, seed=seed)
        if sampler_state is not None:
            sampler.load_state_dict(sampler_state)
        return self._loader(dataset, sampler, seed)

    def _eval_loader(self, cuts: CutSet, rank: int = 0, world_size: int = 1, input_strategy=None) -> DataLoader:
        dataset = K2SpeechRecognitionDataset(return_cuts=True, input_strategy=input_strategy or self._input_strategy())
        # Evaluation keeps the manifest order: no bucketing, no shuffling.
        sampler = SimpleCutSampler(cuts, max_duration=self.cfg.max_duration, shuffle=False, rank=rank,
                                   world_size=world_size)
        return self._loader(ToBatch(dataset, self.tokenizer), sampler)

    def valid_dataloader(self, rank: int = 0, world_size: int = 1) -> DataLoader:
        """Batches of every subset in cfg.valid_sets that has a manifest (missing ones are skipped, logged)."""
        subsets = [s for s in self.cfg.valid_sets if self._has_cuts(s)]
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
            if not self._has_cuts(subset):
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
        on_the_fly = OnTheFlyFeatures(Fbank(FbankConfig(num_filters=self.cfg.num_mel_bins)))
        return self._eval_loader(audio_folder_cuts(path), input_strategy=on_the_fly)
