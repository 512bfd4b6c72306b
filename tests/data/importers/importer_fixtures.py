"""Helpers of the importer tests: tone and noise audio written with soundfile, broken files on demand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf



def write_tone(path: Path, seconds: float, sr: int = 16000, channels: int = 1, seed: int = 0,
               fmt: str | None = None) -> float:
    """A tone plus a little noise of `seconds` at `sr`; returns the duration actually written."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    x = 0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.01 * rng.standard_normal(n)
    if channels > 1:
        x = np.stack([x * (c + 1) / channels for c in range(channels)], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), sr, format=fmt)
    return n / sr


def write_garbage(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"this is not audio at all" * 50)




def report_of(out: Path) -> dict:
    return json.loads((out / "import_report.json").read_text())
