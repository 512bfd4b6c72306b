"""Scorers that modified beam search adds to the transducer's label log-probabilities (shallow fusion).

A scorer follows each hypothesis with a hashable state. For a state it gives a (V,) row of scores added to the
log-probability of each non-blank label (the blank column is ignored: blank costs nothing), the state after a label,
and a score for ending the sentence there. Equal label sequences reach equal states, so merging hypotheses in the
search stays exact.

- `NgramFusion`: scale * log p_LM(label | last labels) + bonus per label; scale * log p_LM(</s> | ...) at the end
  (icefall's modified_beam_search_lm_shallow_fusion, with a token n-gram instead of a neural LM).
- `LexiconFusion`: closed vocabulary: a label may only continue a word of the lexicon, and the sentence may only end
  after a whole word (0 or -inf), like decoding with a lexicon in a WFST decoder. Works on any segmentation of a word
  into BPE pieces, since pieces are matched letter by letter on a prefix tree of the words.
- `WordNgramFusion`: a word n-gram over the lexicon's words, scored as each word completes (with the lexicon's
  constraint), like the G of a WFST decoder's LG.
- `SumFusion`: several scorers together.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Protocol

import numpy as np

from asr.data.tokenizer import WORD_BOUNDARY  # sentencepiece's "▁" starts a piece that begins a word
from asr.lm.ngram import NgramLm



class FusionScorer(Protocol):
    vocab_size: int

    def initial_state(self) -> Hashable: ...

    def scores(self, state: Hashable) -> np.ndarray:
        """(V,) float32 added to the log-probability of each label in this state."""

    def advance(self, state: Hashable, label: int) -> Hashable: ...

    def final(self, state: Hashable) -> float:
        """Added when the hypothesis ends in this state."""


class NgramFusion:
    """scale * log p_LM(label | context) + bonus; the state is the last order - 1 labels (<s>-padded). The LM's
    <s> and </s> ids (<sos/eos> of the BPE model) are not text: they are never emitted as labels (-inf)."""

    def __init__(self, lm: NgramLm, scale: float, bonus: float = 0.0) -> None:
        self.lm, self.scale, self.bonus = lm, scale, bonus
        self.vocab_size = lm.vocab_size
        self._width = max(lm.order - 1, 1)
        self._rows: dict[tuple[int, ...], np.ndarray] = {}

    def initial_state(self) -> tuple[int, ...]:
        return (self.lm.bos,) * self._width

    def scores(self, state: tuple[int, ...]) -> np.ndarray:
        row = self._rows.get(state)
        if row is None:
            row = (self.lm.log_probs(state) * np.float32(self.scale) + np.float32(self.bonus)).astype(np.float32)
            row[[self.lm.bos, self.lm.eos]] = -np.inf  # the LM's sentence marks: an end is final(), never a label
            self._rows[state] = row
        return row

    def advance(self, state: tuple[int, ...], label: int) -> tuple[int, ...]:
        return (*state[1:], label)

    def final(self, state: tuple[int, ...]) -> float:
        return self.scale * float(self.lm.log_probs(state)[self.lm.eos])


class LexiconFusion:
    """Only spellings of lexicon words: 0 for a label that continues one, -inf otherwise.

    The state is a node of the prefix tree of the words (0: the root, before the first word; -1: dead, after a
    label that spells no word; -2: after a lone "▁"). `pieces` are the
    strings of the label ids (BPE pieces, "▁" starting a word); labels that are not pieces of text (<blk>, <unk>,
    <sos/eos>) are never allowed.
    """

    def __init__(self, words: Iterable[str], pieces: Sequence[str]) -> None:
        self.vocab_size = len(pieces)
        self._children: list[dict[str, int]] = [{}]
        self._word: list[int] = [-1]  # index in `words` of the word ending at each node, -1: none
        for i, w in enumerate(words):
            node = 0
            for ch in w:
                nxt = self._children[node].get(ch)
                if nxt is None:
                    nxt = len(self._children)
                    self._children[node][ch] = nxt
                    self._children.append({})
                    self._word.append(-1)
                node = nxt
            if node and self._word[node] < 0:
                self._word[node] = i
        self.num_words = sum(w >= 0 for w in self._word)
        if self.num_words == 0:
            raise ValueError("the lexicon holds no word")
        self._pieces = [None if (p.startswith("<") and p.endswith(">")) else p for p in pieces]
        self._rows: dict[int, tuple[np.ndarray, list[int]]] = {}

    def _walk(self, node: int, text: str) -> int:
        for ch in text:
            node = self._children[node].get(ch, -1)
            if node < 0:
                return -1
        return node

    def _step(self, node: int, piece: str | None) -> int:
        """The node after `piece`: -1 when no lexicon word is spelt that way, -2 after a lone "▁" (a word has
        started, no letter yet)."""
        if piece is None or node == -1:
            return -1
        if piece.startswith(WORD_BOUNDARY):
            if node == -2 or (node > 0 and self._word[node] < 0):
                return -1  # the previous word is empty or unfinished
            return self._walk(0, piece[1:]) if len(piece) > 1 else -2
        if node == 0:
            return -1  # the first word starts with a "▁" piece
        return self._walk(0 if node == -2 else node, piece)

    def initial_state(self) -> int:
        return 0

    def scores(self, state: int) -> np.ndarray:
        hit = self._rows.get(state)
        if hit is None:
            nxt = [self._step(state, p) for p in self._pieces]
            row = np.where(np.asarray(nxt) == -1, -np.inf, 0.0).astype(np.float32)
            hit = (row, nxt)
            self._rows[state] = hit
        return hit[0]

    def advance(self, state: int, label: int) -> int:
        self.scores(state)
        return self._rows[state][1][label]

    def final(self, state: int) -> float:
        """0 after a whole word (or before any: an empty hypothesis), -inf inside a word."""
        return 0.0 if state == 0 or self.word_at(state) >= 0 else -np.inf

    def word_at(self, state: int) -> int:
        """Index (in the `words` given) of the word that ends at this state, -1 when none does."""
        return self._word[state] if state > 0 else -1

    def starts_word(self) -> np.ndarray:
        """(V,) bool: labels whose piece starts a word ("▁...")."""
        return np.asarray([p is not None and p.startswith(WORD_BOUNDARY) for p in self._pieces])


class WordNgramFusion:
    """A word n-gram over a lexicon's words, scored when a word is complete: when the next word starts, and at the
    end (with </s>); plus `bonus` per word, against deletions; it includes the lexicon's constraint. The state is
    (lexicon node, last order - 1 word ids).

    `lm_ids[i]` is the word LM's id of the lexicon's i-th word. Combine it with a token n-gram (`SumFusion`) so
    that the letters inside a word are guided too: the word score only arrives at the word's end.
    """

    def __init__(self, lm: NgramLm, lexicon: LexiconFusion, lm_ids: Sequence[int], scale: float,
                 bonus: float = 0.0) -> None:
        self.lm, self.lexicon, self.scale, self.bonus = lm, lexicon, scale, bonus
        self.lm_ids = list(lm_ids)
        self.vocab_size = lexicon.vocab_size
        self._starts = lexicon.starts_word()
        self._width = max(lm.order - 1, 1)
        self._rows: dict[tuple, np.ndarray] = {}

    def initial_state(self) -> tuple[int, tuple[int, ...]]:
        return (self.lexicon.initial_state(), (self.lm.bos,) * self._width)

    def _word_score(self, node: int, history: tuple[int, ...]) -> tuple[float, tuple[int, ...]]:
        """scale * log p(word ending at node | history) + bonus and the history after it; (0, history) when no
        word ends there."""
        w = self.lexicon.word_at(node)
        if w < 0:
            return 0.0, history
        wid = self.lm_ids[w]
        return self.scale * float(self.lm.log_probs(history)[wid]) + self.bonus, (*history[1:], wid)

    def scores(self, state: tuple) -> np.ndarray:
        row = self._rows.get(state)
        if row is None:
            node, history = state
            row = self.lexicon.scores(node).copy()
            score, _ = self._word_score(node, history)
            row[self._starts] += np.float32(score)
            self._rows[state] = row
        return row

    def advance(self, state: tuple, label: int) -> tuple:
        node, history = state
        if self._starts[label]:
            _, history = self._word_score(node, history)
        return (self.lexicon.advance(node, label), history)

    def final(self, state: tuple) -> float:
        node, history = state
        end = self.lexicon.final(node)
        if not np.isfinite(end):
            return end
        score, history = self._word_score(node, history)
        return end + score + self.scale * float(self.lm.log_probs(history)[self.lm.eos])


class SumFusion:
    """The sum of several scorers; the state is the tuple of theirs."""

    def __init__(self, scorers: Sequence[FusionScorer]) -> None:
        if not scorers or len({s.vocab_size for s in scorers}) != 1:
            raise ValueError("SumFusion needs one or more scorers over the same vocabulary")
        self.scorers = list(scorers)
        self.vocab_size = scorers[0].vocab_size
        self._rows: dict[tuple, np.ndarray] = {}

    def initial_state(self) -> tuple:
        return tuple(s.initial_state() for s in self.scorers)

    def scores(self, state: tuple) -> np.ndarray:
        row = self._rows.get(state)
        if row is None:
            row = sum(s.scores(x) for s, x in zip(self.scorers, state))
            self._rows[state] = row
        return row

    def advance(self, state: tuple, label: int) -> tuple:
        return tuple(s.advance(x, label) for s, x in zip(self.scorers, state))

    def final(self, state: tuple) -> float:
        return sum(s.final(x) for s, x in zip(self.scorers, state))
