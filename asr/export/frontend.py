"""sherpa-onnx's front end beside ours: its settings of the Kaldi-compatible fbank, and how far training's fbank
(asr.data.audio.fbank, lhotse) is from it. Audio reading for the runtimes is asr.data.audio.read_audio."""

from __future__ import annotations

import numpy as np
import torch

from asr.data.audio import SAMPLE_RATE
from asr.data.audio import fbank as training_fbank


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
