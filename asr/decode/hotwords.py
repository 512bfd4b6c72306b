"""Hotwords (contextual biasing) for modified beam search: the hotword file, its context graph and its scorer.

    phrases = read_hotwords("hotwords.txt", tokenizer, score=1.5)  # [(token ids, per-token score), ...]
    fusion = HotwordFusion(ContextGraph(phrases), tokenizer.vocab_size)
    search(model, enc, enc_lens, "modified_beam_search", fusion=fusion)  # or SumFusion([lm_fusion, fusion])

The hotword file (sherpa-onnx's format; `--hotwords FILE`, `decode.hotwords=FILE`), UTF-8, one phrase per line:

    # names of the speakers
    JOHN SMITH :3.5
    KUBERNETES

- a phrase may end with ` :BOOST`, a field of its own: the score of each of its tokens instead of the global
  `--hotword-score` (sherpa-onnx's `:3.5`); any finite number, a negative one discourages the phrase;
- blank lines and lines whose first non-blank character is `#` are skipped;
- words are separated by any whitespace; a phrase whose characters the BPE model cannot spell as written, but can
  once upper- (or lower-) cased, is folded to that case (a LibriSpeech model spells upper case only);
- a phrase the BPE model can only spell with `<unk>`, an empty phrase (`:2` alone), a boost that is not a finite
  number or a `:field` before the end of the line is an error naming the file and line (`HotwordError`).

A phrase is matched on the BPE pieces the model's sentencepiece model encodes it into (its first piece starts a word
with "▁", so "SMITH" is not matched inside "BLACKSMITH"); the model spelling the same text with other pieces gets no
bonus (as in icefall and sherpa-onnx).

The context graph is an Aho-Corasick automaton over token ids (icefall's ContextGraph, WeNet's context biasing,
sherpa-onnx's hotwords): a trie of the phrases, with failure links (the longest proper suffix of a node's tokens that
is also a trie node) and output links (the nearest failure-chain node that ends a phrase). Its scores are
"potential" differences, so that they add up exactly:

    total bonus of a token sequence after `final` = sum over every occurrence of every phrase in it of the
                                                     phrase's bonus (the sum of its tokens' scores)

At any point the bonus collected so far is (bonus of the phrases completed so far) + (the pending bonus of the
state: the scores of the tokens matched since the last completed phrase on its trie path). So each token that
continues a phrase earns its score; a token that completes a phrase earns it and keeps it (the pending bonus is 0 at
a phrase's end, and a later mismatch takes nothing back from it; a longer phrase that extends it can still be
matched); a token that breaks a partial match falls back along the failure links (to root or to the longest suffix
still matching) and takes back the pending bonus of the abandoned match; `final` takes back the pending bonus of an
unfinished match. A sequence that completes no phrase therefore ends with a total bonus of exactly 0. Where phrases
share a prefix, each token of the prefix earns the largest of their scores (as sherpa-onnx does). Occurrences may
overlap, so a phrase that overlaps itself ("HA HA") is paid again at each repetition ("HA HA HA" holds two): keep
such boosts moderate, or the search may repeat the word.

Unlike sherpa-onnx, a completed phrase is not counted twice until the next token (sherpa-onnx adds a phrase's
bonus again on completion and takes it back at the next token or at the end, which favours leaving out the word
after a hotword); the totals after `final` are the same.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr.decode.config import SearchConfig

# Bonus per token of a hotword without its own boost: sherpa-onnx's default 1.5 (SearchConfig says why).
DEFAULT_SCORE = SearchConfig.hotword_score


class HotwordError(ValueError):
    """A hotword file that cannot be used, with the file and line: "hotwords.txt:3: ..."."""


@dataclass(frozen=True)
class Hotword:
    """One line of a hotword file."""

    phrase: str  # words separated by single spaces, as written
    boost: float | None  # the line's `:BOOST`; None: the global score
    line: int  # 1-based line number in the file


def parse_hotwords(text: str, name: str = "<hotwords>") -> list[Hotword]:
    """The phrases of a hotword file's text (syntax only; `read_hotwords` also checks them against the BPE model).

    Args:
        text: the file's content.
        name: the file's name for error messages.
    Raises:
        HotwordError: an empty phrase, a boost that is not a finite number, or a `:field` that is not last.
    """
    out = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        boost = None
        if fields[-1].startswith(":"):
            value = fields.pop()[1:]
            try:
                boost = float(value)
            except ValueError:
                raise HotwordError(f"{name}:{number}: the boost {value!r} (after ':') is not a number") from None
            if not math.isfinite(boost):
                raise HotwordError(f"{name}:{number}: the boost {value!r} is not a finite number")
        misplaced = [f for f in fields if f.startswith(":")]
        if misplaced:
            raise HotwordError(f"{name}:{number}: {misplaced[0]!r}: a boost ':N' must be the last field of the line")
        if not fields:
            raise HotwordError(f"{name}:{number}: a boost without a phrase")
        out.append(Hotword(" ".join(fields), boost, number))
    return out


def encode_hotwords(hotwords: Sequence[Hotword], tokenizer, score: float = DEFAULT_SCORE,
                    name: str = "<hotwords>") -> list[tuple[list[int], float]]:
    """(token ids, per-token score) of each hotword, encoded with the model's BPE model.

    Args:
        hotwords: parsed lines (`parse_hotwords`).
        tokenizer: asr.data.tokenizer.Tokenizer (its `alphabet`, `encode` and `unk_id`).
        score: the per-token score of a phrase without its own boost.
        name: the file's name for error messages.
    Raises:
        HotwordError: a phrase the BPE model spells only with <unk> (naming the characters it lacks).
    """
    if not math.isfinite(score):
        raise HotwordError(f"the hotword score must be a finite number, got {score}")
    phrases = []
    for h in hotwords:
        text = spelling(h, tokenizer, name)
        phrases.append((tokenizer.encode([text])[0], score if h.boost is None else h.boost))
    return phrases


def spelling(hotword: Hotword, tokenizer, name: str = "<hotwords>") -> str:
    """The hotword's phrase in the characters of the BPE model (case folded when that makes it spellable).

    Raises:
        HotwordError: the BPE model spells the phrase only with <unk>.
    """
    alphabet = tokenizer.alphabet
    text = hotword.phrase
    if not set(text) <= alphabet:
        text = next((t for t in (text.upper(), text.lower()) if set(t) <= alphabet), text)
    missing = sorted(set(text) - alphabet)
    ids = tokenizer.encode([text])[0]
    if missing or not ids or tokenizer.unk_id in ids:
        shown = "".join(missing) if missing else "?"
        raise HotwordError(f"{name}:{hotword.line}: {hotword.phrase!r}: the BPE model cannot spell {shown!r} (it "
                           f"would be <unk>); write the phrase with the characters of the transcripts")
    return text


def read_hotwords(path: str | Path, tokenizer, score: float = DEFAULT_SCORE) -> list[tuple[list[int], float]]:
    """(token ids, per-token score) of each phrase of a hotword file (format: the module docstring).

    Raises:
        FileNotFoundError: no such file; HotwordError: a bad line (file and line named).
    """
    return encode_hotwords(_parse_file(path), tokenizer, score, str(path))


def _parse_file(path: str | Path) -> list[Hotword]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no hotword file at {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise HotwordError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    return parse_hotwords(text, str(path))


class ContextGraph:
    """The Aho-Corasick automaton of the phrases (the module docstring has its scores). States are ints, 0 the root.

    Args:
        phrases: (token ids, per-token score) of each phrase; empty token lists are refused, repeated phrases
            merged (the larger score wins).
    """

    def __init__(self, phrases: Sequence[tuple[Sequence[int], float]]) -> None:
        self.children: list[dict[int, int]] = [{}]
        self.token_score: list[float] = [0.0]
        self.is_end: list[bool] = [False]
        parent: list[int] = [0]
        label: list[int] = [-1]  # the token on the arc into each node
        for tokens, score in phrases:
            if len(tokens) == 0:
                raise ValueError("a hotword phrase without tokens")
            node = 0
            for token in tokens:
                nxt = self.children[node].get(int(token))
                if nxt is None:
                    nxt = len(self.children)
                    self.children[node][int(token)] = nxt
                    self.children.append({})
                    self.token_score.append(float(score))
                    self.is_end.append(False)
                    parent.append(node)
                    label.append(int(token))
                else:
                    self.token_score[nxt] = max(self.token_score[nxt], float(score))
                node = nxt
            self.is_end[node] = True
        n = len(self.children)
        # In breadth-first order a node's parent, failure node and output node come before it.
        order = self._bfs()
        self.fail = [0] * n
        self.output = [-1] * n  # nearest node on the failure chain (not itself) that ends a phrase; -1: none
        self.node_score = [0.0] * n  # sum of the token scores from the root: the bonus of a phrase ending here
        self.pending = [0.0] * n  # token scores since the deepest phrase end on the trie path (0 at an end)
        self.matched = [0.0] * n  # bonus of the phrases that end when this node is reached (itself + outputs)
        for node in order[1:]:
            p, token = parent[node], label[node]
            self.node_score[node] = self.node_score[p] + self.token_score[node]
            self.pending[node] = 0.0 if self.is_end[node] else self.pending[p] + self.token_score[node]
            if p != 0:
                f = self.fail[p]
                while f and token not in self.children[f]:
                    f = self.fail[f]
                self.fail[node] = self.children[f].get(token, 0)
            f = self.fail[node]
            self.output[node] = f if self.is_end[f] else self.output[f]
            self.matched[node] = (self.node_score[node] if self.is_end[node] else 0.0) + self.matched[f]
        self._next: dict[int, np.ndarray] = {}  # state -> (V,) next state of each label, filled on demand

    def _bfs(self) -> list[int]:
        order, queue = [], deque([0])
        while queue:
            node = queue.popleft()
            order.append(node)
            queue.extend(self.children[node].values())
        return order

    @property
    def num_states(self) -> int:
        return len(self.children)

    def next_state(self, state: int, token: int) -> int:
        """The state after `token`: the child for it, else the child of the longest suffix that has one, else 0."""
        while state and token not in self.children[state]:
            state = self.fail[state]
        return self.children[state].get(token, 0)

    def step(self, state: int, token: int) -> tuple[float, int]:
        """(bonus, next state) for `token` in `state`: the bonus of the phrases it completes plus the change of
        the pending bonus (negative when a partial match is abandoned)."""
        nxt = self.next_state(state, token)
        return self.matched[nxt] + self.pending[nxt] - self.pending[state], nxt

    def final(self, state: int) -> float:
        """Added at the end of a hypothesis: takes back the pending bonus of an unfinished match."""
        return -self.pending[state]

    def next_states(self, state: int, vocab_size: int) -> np.ndarray:
        """(V,) int64 next state of every label (a row of the automaton's transition table, cached)."""
        row = self._next.get(state)
        if row is None:
            row = np.zeros(vocab_size, dtype=np.int64) if state == 0 else self.next_states(self.fail[state],
                                                                                          vocab_size).copy()
            for token, child in self.children[state].items():
                if token < vocab_size:
                    row[token] = child
            self._next[state] = row
        return row


class HotwordFusion:
    """A FusionScorer (asr.lm.fusion) of a context graph: modified beam search adds each label's bonus (take-backs
    included) and, at the end, takes back an unfinished match. The state is the graph's state (an int); combine it
    with LM fusion through asr.lm.fusion.SumFusion.

    Args:
        graph: the phrases' context graph.
        vocab_size: V, the model's labels (token ids of the graph must be below it).
    """

    def __init__(self, graph: ContextGraph, vocab_size: int) -> None:
        too_big = [t for kids in graph.children for t in kids if not 0 <= t < vocab_size]
        if too_big:
            raise ValueError(f"hotword token id {too_big[0]} is outside the vocabulary of {vocab_size} labels")
        self.graph, self.vocab_size = graph, vocab_size
        self._matched = np.asarray(graph.matched, dtype=np.float64)
        self._pending = np.asarray(graph.pending, dtype=np.float64)
        self._rows: dict[int, np.ndarray] = {}

    def initial_state(self) -> int:
        return 0

    def scores(self, state: int) -> np.ndarray:
        """(V,) float32 bonus of each label in `state`."""
        row = self._rows.get(state)
        if row is None:
            nxt = self.graph.next_states(state, self.vocab_size)
            row = (self._matched[nxt] + self._pending[nxt] - self._pending[state]).astype(np.float32)
            self._rows[state] = row
        return row

    def advance(self, state: int, label: int) -> int:
        return int(self.graph.next_states(state, self.vocab_size)[label])

    def final(self, state: int) -> float:
        return self.graph.final(state)


def load_hotwords(path: str | Path, tokenizer, score: float = DEFAULT_SCORE) -> HotwordFusion:
    """The scorer of a hotword file for a model with this tokenizer (an empty file: a scorer that changes nothing).

    Raises:
        FileNotFoundError, HotwordError (see `read_hotwords`).
    """
    return HotwordFusion(ContextGraph(read_hotwords(path, tokenizer, score)), tokenizer.vocab_size)


def sherpa_hotword_files(path: str | Path, bpe_model: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """What sherpa-onnx's own hotwords need (`hotwords_file`, and `bpe_vocab` with modeling_unit "bpe"), written to
    `out_dir`: the hotword file checked by our rules (sherpa-onnx ends the process on a piece it cannot find) and
    rewritten with the phrases case-folded as ours are, and the BPE model's pieces with their scores (the
    sentencepiece .vocab format sherpa-onnx segments the words with).

    Raises:
        FileNotFoundError, HotwordError (see `read_hotwords`).
    """
    from asr.data.tokenizer import Tokenizer

    out_dir = Path(out_dir)
    tokenizer = Tokenizer(bpe_model)
    lines = []
    for h in _parse_file(path):
        text = spelling(h, tokenizer, str(path))
        lines.append(text if h.boost is None else f"{text} :{h.boost:g}")
    hotwords_file, vocab = out_dir / "hotwords.txt", out_dir / "bpe.vocab"
    hotwords_file.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    sp = tokenizer.sp
    vocab.write_text("".join(f"{sp.id_to_piece(i)}\t{sp.get_score(i)}\n" for i in range(sp.get_piece_size())),
                     encoding="utf-8")
    return hotwords_file, vocab
