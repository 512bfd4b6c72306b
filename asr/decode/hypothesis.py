"""The result of a search: a hypothesis's tokens with the encoder frame and log-probability of each."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Hypothesis:
    """One decoded hypothesis (or one forced alignment: asr.decode.align).

    `frames[i]` is the encoder frame on which `tokens[i]` was emitted (non-decreasing: several tokens may share a
    frame when the search emits more than one symbol per frame); its time is frames[i] x the encoder's frame shift
    (asr.decode.words.frame_shift_s). `log_probs[i]` is the token's log-probability from the joiner's log_softmax
    when it was emitted, before any fusion score (LM, lexicon, hotwords). `score` is the value the search ranked
    hypotheses by: the path's log-probability (blanks included), plus fusion scores, divided by the length where the
    search normalises by length (beam searches with length_norm=True).
    """

    tokens: list[int]
    frames: list[int]
    log_probs: list[float]
    score: float
