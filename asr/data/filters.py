"""Which cuts a transducer can learn from: CutFilter (with counts of what it drops) and a lazily filtered CutSet."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Callable, Iterable, Iterator

import torch
from lhotse.cut import Cut
from torch import Tensor

from asr.data.tokenizer import Tokenizer

log = logging.getLogger(__name__)

FRAME_RATE = 100  # fbank frames per second (10 ms shift): frames of a cut without precomputed features
MAX_WARNINGS = 10  # dropped cuts logged one by one per reason; the rest only counted


class CutFilter:
    """Keeps the cuts a transducer can learn from, counting what it drops by reason.

    Drops: duration outside [min_duration, max_duration]; text with characters the tokenizer cannot spell;
    fewer encoder frames than tokens (the transducer emits one token per frame at most).

    Args:
        frames_fn: the encoder's frame count, (B,) input frames -> (B,) encoder frames: the model's own,
            `model.encoder.frames_fn` (asr.models.EncoderFrames, picklable for DataLoader workers).
    """

    def __init__(self, tokenizer: Tokenizer, min_duration: float, max_duration: float,
                 frames_fn: Callable[[Tensor], Tensor]) -> None:
        self.tokenizer = tokenizer
        self.min_duration = min_duration
        self.max_duration = max_duration
        self.frames_fn = frames_fn
        self.counts: Counter[str] = Counter()
        self.kept = 0

    def encoder_frames(self, num_frames: int) -> int:
        """Encoder frames of an utterance of `num_frames` input frames."""
        return int(self.frames_fn(torch.tensor([num_frames]))[0])

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
        if self.encoder_frames(frames) < len(self.tokenizer.encode([text])[0]):
            return self._drop("fewer frames after subsampling than tokens", cut)
        self.kept += 1
        return True

    def summary(self) -> str:
        dropped = ", ".join(f"{n} ({r})" for r, n in sorted(self.counts.items())) or "none"
        return f"cut filter: kept {self.kept}, dropped {sum(self.counts.values())}: {dropped}"


class FilteredCuts:
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
