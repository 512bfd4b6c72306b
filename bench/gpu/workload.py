"""Synthetic LibriSpeech-like workloads and timing helpers shared by the steps of the GPU check.

k2's transducer-loss benchmark (csukuangfj/transducer-loss-benchmarking) draws its (T, U) pairs from the real
train-clean-100 utterances; we do not ship that corpus, so the pool here is synthetic with train-clean-100's
published totals: 28,539 utterances in 100.6 h (mean 12.7 s, at most 24.5 s), most of them 11-16 s, and
2.73 words/s. Tokens per second with a 500-piece BPE are taken as 4.0 (about 1.45 pieces per word): an assumption,
stated in the table. T is counted after subsampling by 4, as k2's benchmark does: ((frames - 1) // 2 - 1) // 2.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

FRAMES_PER_SECOND = 100  # 10 ms fbank frame shift
TOKENS_PER_SECOND = 4.0  # BPE-500 pieces per second of LibriSpeech speech (assumption, see the module docstring)


@dataclass(frozen=True)
class Utterance:
    seconds: float
    frames: int  # fbank frames (100 per second)
    T: int  # encoder frames after subsampling by 4
    U: int  # tokens


def subsampled(frames: int) -> int:
    """Encoder frames of icefall's Conv2dSubsampling (factor 4) for `frames` input frames."""
    return ((frames - 1) // 2 - 1) // 2


def utterance_pool(n: int, seed: int = 0, scale: float = 1.0) -> list[Utterance]:
    """n utterances with train-clean-100-like durations (scaled by `scale`, < 1 for the CPU fallback's tiny sizes).

    Three quarters of the utterances are N(14.3 s, 1.6 s) clipped to 10-24.5 s (LibriSpeech's segmentation), a
    quarter uniform on 1.3-14 s: mean about 12.6 s, as train-clean-100.
    """
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        if float(torch.rand(1, generator=g)) < 0.75:
            seconds = min(max(14.3 + 1.6 * float(torch.randn(1, generator=g)), 10.0), 24.5)
        else:
            seconds = 1.3 + 12.7 * float(torch.rand(1, generator=g))
        seconds *= scale
        frames = max(int(seconds * FRAMES_PER_SECOND), 16)
        T = subsampled(frames)
        rate = TOKENS_PER_SECOND * (1.0 + 0.1 * float(torch.randn(1, generator=g)))
        U = min(max(1, round(seconds * rate)), T)
        out.append(Utterance(seconds, frames, T, U))
    return out


def fixed_batches(pool: list[Utterance], batch_size: int) -> list[list[Utterance]]:
    """Consecutive batches of `batch_size` in pool order (k2's unsorted benchmark: 30 utterances each)."""
    return [pool[i : i + batch_size] for i in range(0, len(pool) - batch_size + 1, batch_size)]


def sorted_batches(pool: list[Utterance], max_frames: int) -> list[list[Utterance]]:
    """Utterances sorted by T, then batches holding at most `max_frames` encoder frames before padding (k2's sorted
    benchmark: 10k frames)."""
    batches, cur, total = [], [], 0
    for utt in sorted(pool, key=lambda u: u.T):
        if cur and total + utt.T > max_frames:
            batches.append(cur)
            cur, total = [], 0
        cur.append(utt)
        total += utt.T
    if cur:
        batches.append(cur)
    return batches


def duration_batch(pool: list[Utterance], max_seconds: float, start: int = 0) -> list[Utterance]:
    """Utterances of similar length (a window of the pool sorted by duration) filling at most `max_seconds` of
    audio, as a bucketing sampler with max_duration makes them (icefall: 300 s)."""
    ordered = sorted(pool, key=lambda u: u.seconds)
    out, total = [], 0.0
    for utt in ordered[start:]:
        if out and total + utt.seconds > max_seconds:
            break
        out.append(utt)
        total += utt.seconds
    return out


def feature_batch(utts: list[Utterance], vocab_size: int, device: torch.device, seed: int = 0, num_features: int = 80):
    """Random fbank-like features and labels for `utts`.

    Returns:
        x (B, T, F) float32, x_lens (B,), y (B, U) int64 in [1, V), y_lens (B,), all on `device`.
    """
    g = torch.Generator().manual_seed(seed)
    x_lens = torch.tensor([u.frames for u in utts])
    y_lens = torch.tensor([u.U for u in utts])
    x = torch.randn(len(utts), int(x_lens.max()), num_features, generator=g)
    y = torch.randint(1, vocab_size, (len(utts), int(y_lens.max())), generator=g)
    return x.to(device), x_lens.to(device), y.to(device), y_lens.to(device)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_gb(device: torch.device) -> float | None:
    """Peak memory allocated by tensors on `device` since reset_peak, GB (None on CPU: not tracked)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 1e9


def time_steps(fn: Callable[[int], object], device: torch.device, warmup: int, runs: int) -> dict:
    """Calls fn(i) warmup + runs times; the median and minimum wall time of the timed calls (device synchronised)."""
    times = []
    for i in range(warmup + runs):
        sync(device)
        start = time.perf_counter()
        fn(i)
        sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times), "runs": len(times)}


def matmul_peak_tflops(device: torch.device, n: int, dtype: torch.dtype, runs: int = 10) -> float:
    """Measured throughput of an (n, n) @ (n, n) matmul in `dtype`, TFLOP/s (best of `runs`)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(runs):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12
