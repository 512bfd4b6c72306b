"""A back-off n-gram language model over integer ids: ARPA reading and writing, and next-id log-probabilities.

The ids are the BPE pieces the transducer was trained with (a token LM, as icefall's token-level n-grams for LODR
and shallow fusion), so a hypothesis' context indexes it directly, or the words of a lexicon (a word LM). Sentence
start and end are the `<s>` / `</s>` of ARPA files; they map to ids `bos` / `eos`, which may be the same id (the
BPE's `<sos/eos>`): `<s>` only ever appears as context and `</s>` only as a predicted token, so one id serves both.

Back-off semantics are ARPA's: for a context h and token w,
    log p(w | h) = log p*(h, w)                      when (h, w) is listed,
                 = bow(h) + log p(w | h[1:])         otherwise (bow(h) = 0 when h is not listed as an n-gram).
A context longer than order - 1 keeps its last order - 1 tokens; an unseen one backs off with weight 1, so a
context padded on the left with `bos` scores like the short one (no "<s> <s>" n-gram exists).
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

LN10 = math.log(10.0)
# ARPA's conventional "impossible" log10 probability (of <s> as a predicted word).
ARPA_IMPOSSIBLE = -99.0


@dataclass
class NgramLm:
    """Back-off n-gram tables over token ids 0..vocab_size-1 (natural-log probabilities).

    probs[n - 1] maps a context of n - 1 ids to (token ids (M,) int64, log-probabilities (M,) float32) of the
    n-grams listed for it; backoffs[n - 1] maps an n-gram (n ids) to its log back-off weight.
    `unigram_floor` is the log-probability of a token that has no unigram (outside the LM's vocabulary).
    """

    order: int
    vocab_size: int
    bos: int
    eos: int
    probs: list[dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]]]
    backoffs: list[dict[tuple[int, ...], float]]
    unigram_floor: float = -30.0
    _cache: dict[tuple[int, ...], np.ndarray] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.order < 1:
            raise ValueError(f"n-gram order must be >= 1, got {self.order}")
        if len(self.probs) != self.order or len(self.backoffs) != self.order:
            raise ValueError(f"an order-{self.order} LM needs {self.order} probability and back-off tables")

    def log_probs(self, context: Sequence[int]) -> np.ndarray:
        """(V,) float32 log p(w | context) for every token id w; cached per context.

        Ids never listed as unigrams get `unigram_floor`. The distribution over listed ids sums to 1 (up to the
        rounding of the ARPA file) for an LM trained by asr.lm.kneser_ney.
        """
        ctx = tuple(int(t) for t in context)
        ctx = ctx[len(ctx) - self.order + 1 :] if len(ctx) >= self.order else ctx
        return self._log_probs(ctx)

    def _log_probs(self, ctx: tuple[int, ...]) -> np.ndarray:
        hit = self._cache.get(ctx)
        if hit is not None:
            return hit
        if not ctx:
            out = np.full(self.vocab_size, self.unigram_floor, dtype=np.float32)
        else:
            out = self._log_probs(ctx[1:]) + np.float32(self.backoffs[len(ctx) - 1].get(ctx, 0.0))
        listed = self.probs[len(ctx)].get(ctx)
        if listed is not None:
            out = out.copy()
            out[listed[0]] = listed[1]
        self._cache[ctx] = out
        return out

    def sentence_log_prob(self, tokens: Sequence[int]) -> float:
        """log p(tokens </s> | <s>): the LM score of a whole sentence (natural log)."""
        ctx: list[int] = [self.bos]
        total = 0.0
        for t in [*tokens, self.eos]:
            total += float(self.log_probs(ctx)[t])
            ctx.append(int(t))
        return total


# ------------------------------------------------------------------------------------------------------------- ARPA
def open_text(path: str | Path, mode: str = "r"):
    """A UTF-8 text file for reading ("r") or writing ("w"); a name ending in ".gz" is read or written gzipped."""
    if str(path).endswith(".gz"):
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def write_arpa(
    path: str | Path,
    ngrams: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]],
    symbols: Sequence[str],
    bos: int,
    eos: int,
    bos_backoff: float,
) -> None:
    """Writes an ARPA file (".gz" compresses it).

    Args:
        ngrams: per order n = 1..N: (ids (M, n) int, natural-log probabilities (M,), natural-log back-offs (M,) or
            None for the highest order). Rows are predicted n-grams: the unigrams hold no `bos` row.
        symbols: the string of each id (the BPE pieces); `bos` first in an n-gram is written <s>, `eos` last </s>.
        bos_backoff: natural-log back-off of the context <s>, written on the unigram row "<s>" (probability -99).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    def word(i: int, position: int, n: int) -> str:
        if i == bos and position == 0 and n > 1:
            return "<s>"
        if i == eos and position == n - 1:
            return "</s>"
        return symbols[i]

    with open_text(path, "w") as f:
        f.write("\\data\\\n")
        for n, (ids, _, _) in enumerate(ngrams, start=1):
            f.write(f"ngram {n}={len(ids) + (n == 1)}\n")
        for n, (ids, logp, bow) in enumerate(ngrams, start=1):
            f.write(f"\n\\{n}-grams:\n")
            if n == 1:
                f.write(f"{ARPA_IMPOSSIBLE:.6f}\t<s>" + (f"\t{bos_backoff / LN10:.6f}\n" if len(ngrams) > 1 else "\n"))
            p10 = np.asarray(logp, dtype=np.float64) / LN10
            b10 = None if bow is None else np.asarray(bow, dtype=np.float64) / LN10
            for r, row in enumerate(np.asarray(ids).tolist()):
                line = f"{p10[r]:.6f}\t" + " ".join(word(t, k, n) for k, t in enumerate(row))
                if b10 is not None and b10[r] != 0.0:
                    line += f"\t{b10[r]:.6f}"
                f.write(line + "\n")
        f.write("\n\\end\\\n")


def read_arpa(path: str | Path, symbol_ids: dict[str, int], bos: int, eos: int, vocab_size: int) -> NgramLm:
    """Loads an ARPA file whose words are `symbol_ids` keys (plus <s> and </s>).

    Raises ValueError naming the line for a word not in `symbol_ids` or a malformed file.
    """
    path = Path(path)
    counts: dict[int, int] = {}
    probs: list[dict] = []
    backoffs: list[dict] = []
    section = 0
    rows: list[int] = []  # lines read per section
    raw: list[dict[tuple[int, ...], tuple[list[int], list[float]]]] = []

    def to_id(w: str, lineno: int) -> int:
        if w == "<s>":
            return bos
        if w == "</s>":
            return eos
        i = symbol_ids.get(w)
        if i is None:
            raise ValueError(f"{path}:{lineno}: token {w!r} is not in the BPE model's vocabulary")
        return i

    with open_text(path, "r") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.strip()
            if not line:
                continue
            if line == "\\data\\":
                section = 0
                continue
            if line == "\\end\\":
                break
            if line.startswith("ngram ") and section == 0:
                n, c = line[6:].split("=")
                counts[int(n)] = int(c)
                continue
            if line.startswith("\\") and line.endswith("-grams:"):
                section = int(line[1:].split("-")[0])
                while len(raw) < section:
                    raw.append({})
                    backoffs.append({})
                    rows.append(0)
                continue
            if section == 0:
                continue
            parts = line.split()
            if len(parts) not in (section + 1, section + 2):
                raise ValueError(f"{path}:{lineno}: expected {section} words, a log-probability and an optional "
                                 f"back-off, got {line!r}")
            rows[section - 1] += 1
            ids = tuple(to_id(w, lineno) for w in parts[1 : section + 1])
            logp = float(parts[0]) * LN10
            if len(parts) == section + 2:
                backoffs[section - 1][ids] = float(parts[-1]) * LN10
            if section == 1 and parts[1] == "<s>":
                continue  # <s> is never predicted; its row only carries the back-off
            ctx, w = ids[:-1], ids[-1]
            words, lps = raw[section - 1].setdefault(ctx, ([], []))
            words.append(w)
            lps.append(logp)
    if not raw:
        raise ValueError(f"{path}: no n-gram sections; not an ARPA file")
    for n, c in counts.items():
        if n > len(rows) or rows[n - 1] != c:
            got = rows[n - 1] if n <= len(rows) else 0
            raise ValueError(f"{path}: the header says {c} {n}-grams, the file lists {got} (truncated file?)")
    for table in raw:
        probs.append({ctx: (np.asarray(w, dtype=np.int64), np.asarray(p, dtype=np.float32))
                      for ctx, (w, p) in table.items()})
    return NgramLm(order=len(raw), vocab_size=vocab_size, bos=bos, eos=eos, probs=probs, backoffs=backoffs)
