"""Words with times and confidences, rebuilt from a hypothesis's sentencepiece pieces.

    hyp = search(model, enc, enc_lens, "greedy")[0]
    words = words_of(hyp, pieces_of(tokenizer), frame_shift_s(model))  # [Word("HELLO", 0.48, 0.52, 0.97), ...]

A transducer emits a token on one encoder frame, so its times mark emissions, not acoustic boundaries: a word
starts at its first token's frame and ends one frame after its last token's (never after the next word's start).
A word's duration is thus a lower bound; the emission itself may lag the sound by a frame or two (the model decides
when it has heard enough), which asr.decode.align's forced alignment shares since it scores the same lattice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from torch import nn

from asr.decode.hypothesis import Hypothesis

WORD_BOUNDARY = "\u2581"  # sentencepiece's "▁": a piece that starts a word
# What pieces_of gives the unknown piece: a word of its own, "⁇", as sentencepiece's decode writes it (" ⁇ ")
UNK_PIECE = WORD_BOUNDARY + "\u2047"
# Frame shift of the features every model here is trained on (lhotse's Fbank, asr.data.audio.fbank): 10 ms.
FEATURE_SHIFT_S = 0.01


@dataclass(frozen=True)
class Word:
    """A recognised word: its text, start and end in seconds from the start of the audio, and confidence in [0, 1]."""

    word: str
    start: float
    end: float
    confidence: float


def frame_shift_s(model: nn.Module) -> float:
    """Seconds per encoder frame of a transducer: its encoder's subsampling factor x the 10 ms feature shift.

    Raises:
        ValueError: the model has no `encoder.subsampling_factor` (asr.models.Conformer has one).
    """
    factor = getattr(getattr(model, "encoder", None), "subsampling_factor", None)
    if not isinstance(factor, int) or factor < 1:
        raise ValueError(f"cannot tell the encoder frame shift of {type(model).__name__}: it has no "
                         f"encoder.subsampling_factor (got {factor!r})")
    return factor * FEATURE_SHIFT_S


def pieces_of(tokenizer) -> list[str]:
    """The piece of every token id of an asr.data.tokenizer.Tokenizer (index = id), spelt as sentencepiece's decode
    spells it, so that words_of gives the words of the decoded text: blank and control pieces are "" (they spell
    nothing), the unknown piece is UNK_PIECE (a word "⁇" of its own)."""
    sp = tokenizer.sp
    return ["" if i == tokenizer.blank_id or sp.is_control(i) else UNK_PIECE if sp.is_unknown(i) else sp.id_to_piece(i)
            for i in range(tokenizer.vocab_size)]


def words_of(hyp: Hypothesis, pieces: Sequence[str], frame_shift_s: float) -> list[Word]:
    """The words of a hypothesis, with times and confidences.

    A piece beginning with "▁" starts a word (so does the first piece); the word's text is its pieces joined,
    without the "▁". A lone "▁" piece starts a word that the following pieces spell; a word left without any
    letters (a trailing "▁") is dropped. With pieces_of's spelling (control pieces empty, the unknown piece a word of
    its own) the words are those of the tokenizer's decoded text.

    Times: start = first token's frame x frame_shift_s; end = (last token's frame + 1) x frame_shift_s, but no
    later than the next word's start, so that words never overlap (a word may then last 0 s when two words are
    emitted on one frame). An emission is one frame, so one frame is the least a word can be said to occupy.

    Confidence: the smallest probability (exp of the joiner log-probability) among the word's tokens. A word is
    wrong as soon as one of its pieces is, so its least certain piece bounds it; a mean would let a long word's
    confident pieces hide one doubtful piece, and a product would penalise long words for their length. This is
    what NVIDIA Riva documents for transducer/CTC greedy word confidence (the minimum over the word's tokens,
    blanks excluded) and NeMo's "min" aggregation of token confidences into word confidences.

    Args:
        hyp: a search's (or asr.decode.align's) hypothesis: tokens, frames, log_probs.
        pieces: the piece of each token id (`pieces_of(tokenizer)`, or an export's tokens.txt).
        frame_shift_s: seconds per encoder frame (`frame_shift_s(model)`: subsampling factor x 10 ms).
    Returns:
        The words in order.
    Raises:
        ValueError: tokens, frames and log_probs differ in length, or a token id has no piece.
    """
    n = len(hyp.tokens)
    if len(hyp.frames) != n or len(hyp.log_probs) != n:
        raise ValueError(f"a hypothesis needs a frame and a log-prob per token: {n} tokens, {len(hyp.frames)} "
                         f"frames, {len(hyp.log_probs)} log_probs")
    groups: list[tuple[str, int, int, float]] = []  # text, first frame, last frame, least log-prob
    text, first, last, least = "", -1, -1, 0.0
    after_unk = False  # the piece after UNK_PIECE starts a word, as in sentencepiece's decoded text
    for tok, frame, lp in zip(hyp.tokens, hyp.frames, hyp.log_probs):
        if not 0 <= tok < len(pieces):
            raise ValueError(f"token id {tok} has no piece ({len(pieces)} pieces)")
        piece = pieces[tok]
        if not piece:  # a control piece spells nothing
            continue
        if piece.startswith(WORD_BOUNDARY) or first < 0 or after_unk:
            if text:
                groups.append((text, first, last, least))
            text, first, least = "", frame, 0.0
        text += piece.replace(WORD_BOUNDARY, "")
        after_unk = piece == UNK_PIECE
        last, least = frame, min(least, lp)  # a lone "▁" leaves text empty: the next pieces spell the word
    if text:
        groups.append((text, first, last, least))

    words = []
    for i, (word, first, last, least) in enumerate(groups):
        start = first * frame_shift_s
        end = (last + 1) * frame_shift_s
        if i + 1 < len(groups):
            end = max(start, min(end, groups[i + 1][1] * frame_shift_s))
        words.append(Word(word, start, end, math.exp(least)))
    return words


def upper_words_of(hyp: Hypothesis, pieces: Sequence[str], frame_shift_s: float) -> list[Word]:
    """words_of, each word upper-cased as the tokenizer's decoded text is printed (decode.py's CTM, asr-transcribe)."""
    return [replace(w, word=w.word.upper()) for w in words_of(hyp, pieces, frame_shift_s)]
