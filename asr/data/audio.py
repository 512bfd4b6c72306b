"""Audio files in, training's features out: the one reader and front end of every inference path (asr-transcribe,
the exported runtimes' evaluation and benchmarks).

Audio of any sample rate and channel count is read with soundfile (wav, flac, ogg; mp3 where libsndfile has it),
channels averaged, resampled to 16 kHz (LibriSpeech's rate, and so every model the recipes train), and turned into
the fbank of training: lhotse's Fbank with its defaults and the model's number of bins (asr.data.features computes
the same for the corpus).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

SAMPLE_RATE = 16000


class AudioError(Exception):
    """An input file that cannot be transcribed (missing, unreadable, empty, too short); the message starts with
    the file's path."""


def read_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """(n,) mono float32 samples in [-1, 1] of an audio file, resampled to `sample_rate`. Raises AudioError."""
    import soundfile as sf
    import torchaudio

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: " + ("no such file" if not path.exists() else "not a file"))
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (n, channels)
    except Exception as e:  # libsndfile's errors: unknown format, truncated file, ...
        raise AudioError(f"{path}: cannot read audio ({e})") from e
    if samples.shape[0] == 0:
        raise AudioError(f"{path}: no samples")
    mono = torch.from_numpy(samples.mean(axis=1))  # (n,)
    if rate != sample_rate:
        mono = torchaudio.functional.resample(mono, rate, sample_rate)
    return mono.numpy()


def fbank(samples: np.ndarray, num_bins: int = 80, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """(T, F) log-mel fbank of (n,) samples, as training computes it (lhotse's Fbank, its defaults, F = num_bins)."""
    from lhotse import Fbank, FbankConfig

    return torch.from_numpy(Fbank(FbankConfig(num_filters=num_bins)).extract(samples, sample_rate)).float()
