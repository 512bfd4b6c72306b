"""Structured config of the data pipeline (cuts, sampler, augmentation); YAML files in conf/data/ select values."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class DataConfig:
    # Where prepare.sh stage 2 writes the cut manifests (relative to the recipe folder the entry point runs in).
    manifest_dir: str = "data/fbank"
    # The sentencepiece model of prepare.sh stage 4; 500 units as icefall's LibriSpeech transducers.
    bpe_model: str = "data/lang_bpe_500/bpe.model"
    # Manifests are named <manifest_prefix>_<kind>_<subset>.jsonl.gz: "librispeech" as icefall's LibriSpeech recipe;
    # recipes/custom writes and reads "custom_*" (the --prefix of asr.data.importers, features and bpe).
    manifest_prefix: str = "librispeech"
    # Combined, shuffled, speed-perturbed training cuts (icefall's name), inside manifest_dir.
    train_cuts: str = "librispeech_cuts_train-all-shuf.jsonl.gz"
    # Validation subsets: cuts `<manifest_prefix>_cuts_<name>.jsonl.gz`, joined into one validation loader.
    valid_sets: list[str] = field(default_factory=lambda: ["dev-clean", "dev-other"])
    # Test subsets, one loader each (decoding reports a WER per set).
    test_sets: list[str] = field(default_factory=lambda: ["test-clean", "test-other"])
    # Seconds of audio per batch (per GPU); icefall's pruned transducer on a 32 GB V100 uses 300.
    max_duration: float = 300.0
    # Duration buckets of the sampler: similar lengths batched together, less padding (icefall: 30).
    num_buckets: int = 30
    # Shuffle training cuts each epoch (within and across buckets).
    shuffle: bool = True
    # Drop the last incomplete batch of the training epoch (keeps DDP ranks in step).
    drop_last: bool = True
    # DataLoader worker processes; 2 as icefall (features are precomputed, loading is cheap).
    num_workers: int = 2
    # SpecAugment on training batches (icefall's defaults below).
    spec_aug: bool = True
    # SpecAugment: time warp factor, frequency masks of up to 27 bins (2 of them), 10 time masks of up to 100 frames:
    # icefall's LibriSpeech values (lhotse >= 1.x).
    spec_aug_time_warp_factor: int = 80
    spec_aug_num_feature_masks: int = 2
    spec_aug_features_mask_size: int = 27
    spec_aug_num_frame_masks: int = 10
    spec_aug_frames_mask_size: int = 100
    # MUSAN noise mixed into training cuts (CutMix) when prepare.sh stage 3 made `musan_cuts`.
    enable_musan: bool = False
    # MUSAN cuts file in manifest_dir, and the mixing: probability 0.5 at 10-20 dB SNR (icefall).
    musan_cuts: str = "musan_cuts.jsonl.gz"
    musan_prob: float = 0.5
    musan_snr: list[float] = field(default_factory=lambda: [10.0, 20.0])
    # Compute fbank on the fly from audio instead of reading the precomputed features (slower; needs the audio).
    on_the_fly_feats: bool = False
    # Feature dim of the 80-bin fbank prepare.sh computes (and on-the-fly features use).
    num_mel_bins: int = 80
    # Training cuts shorter or longer than this are dropped: below 1 s there is little to learn; above 20 s
    # the memory of a batch explodes (icefall's limits).
    min_cut_duration: float = 1.0
    max_cut_duration: float = 20.0
