"""Audio in, features out, for the exported runtimes: our training fbank (lhotse) and sherpa-onnx's settings of the
Kaldi-compatible fbank, to measure how far apart they are."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

SAMPLE_RATE = 16000


class AudioError(Exception):
    """An input file that cannot be transcribed (missing, unreadable, empty)."""


def read_audio(path: Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 samples in [-1, 1] of an audio file, resampled to `sample_rate`. Raises AudioError."""
    import soundfile as sf
    import torchaudio

    if not path.is_file():
        raise AudioError(f"{path}: " + ("no such file" if not path.exists() else "not a file"))
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (n, channels)
    except Exception as e:  # libsndfile's errors: unknown format, truncated file, ...
        raise AudioError(f"{path}: cannot read audio ({e})") from e
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: no samples")
    mono = torch.from_numpy(samples.mean(axis=1))
    if rate != sample_rate:
        mono = torchaudio.functional.resample(mono, rate, sample_rate)
    return mono.numpy()


def training_fbank(samples: np.ndarray, num_bins: int = 80, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(T, F) log-mel fbank as training computes it (asr.data.features: lhotse's Fbank with its defaults)."""
    from lhotse import Fbank, FbankConfig

    return torch.from_numpy(Fbank(FbankConfig(num_filters=num_bins)).extract(samples, sample_rate)).float()


def kaldi_fbank(samples: np.ndarray, num_bins: int = 80, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(T, F) Kaldi-compatible fbank with sherpa-onnx's settings (torchaudio's implementation of Kaldi's
    compute-fbank-feats): 25/10 ms, povey window, pre-emphasis 0.97, DC removal, low 20 Hz, high -400 Hz, no
    dither, snip_edges false, samples in [-1, 1], log floor float epsilon."""
    import torchaudio

    wave = torch.from_numpy(np.ascontiguousarray(samples, dtype=np.float32)).unsqueeze(0)  # (1, n)
    return torchaudio.compliance.kaldi.fbank(
        wave, num_mel_bins=num_bins, frame_length=25.0, frame_shift=10.0, dither=0.0, snip_edges=False,
        low_freq=20.0, high_freq=-400.0, window_type="povey", preemphasis_coefficient=0.97, remove_dc_offset=True,
        use_energy=False, energy_floor=0.0, sample_frequency=sample_rate,
    )  # fmt: skip


def fbank_difference(samples: np.ndarray, num_bins: int = 80) -> dict[str, float]:
    """How far training's fbank is from the Kaldi-compatible one on `samples`: frames of each, and the max and mean
    absolute difference of the log-mel values over the common frames."""
    a, b = training_fbank(samples, num_bins), kaldi_fbank(samples, num_bins)
    n = min(a.size(0), b.size(0))
    diff = (a[:n] - b[:n]).abs()
    return {"frames_training": a.size(0), "frames_kaldi": b.size(0), "max_abs": float(diff.max()),
            "mean_abs": float(diff.mean())}  # fmt: skip
