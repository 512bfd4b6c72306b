"""Interpolated Kneser-Ney estimation of a token n-gram LM (Chen & Goodman 1998, one discount per order).

Counting is vectorised with numpy: an n-gram of ids in [0, V) is the integer key sum_i g_i * V^(n-1-i), so that
sorting keys sorts n-grams lexicographically, `key // V` is its context, `key % V` its last token and
`key % V^(n-1)` its suffix. Keys are int64, so V^order must stay below 2^63 (order <= 7 for V = 500, <= 12 for 32).

    p(w | h) = max(c(h, w) - D, 0) / c(h) + gamma(h) * p(w | h[1:]),   gamma(h) = D * N1+(h .) / c(h)

c is the raw count at the highest order and the continuation count N1+(. h w) below it (raw for n-grams that start
with <s>, which nothing precedes); the unigram level interpolates with the uniform distribution over the predictable
tokens. In ARPA's back-off form the listed n-grams carry p(w | h) and the contexts carry bow(h) = gamma(h).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class KneserNeyTables:
    """What write_arpa needs: per order, listed n-grams with log p and log back-off; the back-off of <s>."""

    ngrams: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]
    bos_backoff: float
    discounts: list[float]


def _keys(windows: np.ndarray, vocab_size: int) -> np.ndarray:
    """(M, n) ids -> (M,) int64 keys, base V."""
    keys = np.zeros(len(windows), dtype=np.int64)
    for col in range(windows.shape[1]):
        keys = keys * vocab_size + windows[:, col]
    return keys


def _unkey(keys: np.ndarray, n: int, vocab_size: int) -> np.ndarray:
    """(M,) keys -> (M, n) ids."""
    out = np.empty((len(keys), n), dtype=np.int64)
    k = keys.copy()
    for col in range(n - 1, -1, -1):
        out[:, col] = k % vocab_size
        k //= vocab_size
    return out


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """values at queries' positions in sorted_keys; (found (Q,) bool, values (Q,), 0 where not found)."""
    idx = np.searchsorted(sorted_keys, queries)
    idx_c = np.minimum(idx, len(sorted_keys) - 1)
    if not len(sorted_keys):
        found = np.zeros(len(queries), bool)
    else:
        found = (idx < len(sorted_keys)) & (sorted_keys[idx_c] == queries)
    return found, np.where(found, values[idx_c] if len(values) else 0, 0)


def _discount(counts: np.ndarray) -> float:
    n1, n2 = int((counts == 1).sum()), int((counts == 2).sum())
    if n1 == 0 or n2 == 0:
        return 0.5  # too little data for the estimate; a middling discount
    return min(max(n1 / (n1 + 2.0 * n2), 0.05), 0.95)


def train_kneser_ney(
    sentences: Iterable[Sequence[int]],
    order: int,
    vocab_size: int,
    bos: int,
    eos: int,
    exclude: Sequence[int] = (0,),
) -> KneserNeyTables:
    """Interpolated Kneser-Ney n-gram LM of token-id sentences.

    Args:
        sentences: token ids of each sentence, without <s> / </s> (they are added); empty ones are skipped.
        order: N, the longest n-gram.
        vocab_size: V; ids are in [0, V).
        bos, eos: the ids of sentence start and end (may be equal).
        exclude: ids that are never predicted and get no probability (the transducer's blank).
    Raises:
        ValueError: order < 1, V^order too large for int64 keys, an id outside [0, V) or an excluded id in the text,
            or no sentence at all.
    """
    if order < 1:
        raise ValueError(f"order must be >= 1, got {order}")
    if order * np.log2(vocab_size) >= 62.5:
        raise ValueError(f"vocab_size {vocab_size} ** order {order} does not fit int64 n-gram keys; lower the order")
    seqs = [np.asarray([bos, *s, eos], dtype=np.int64) for s in sentences if len(s) > 0]
    if not seqs:
        raise ValueError("no non-empty sentence to train the LM on")
    flat = np.concatenate(seqs)
    body = np.concatenate([s[1:-1] for s in seqs])
    if body.min() < 0 or body.max() >= vocab_size:
        raise ValueError(f"token ids must be in [0, {vocab_size}), got {body.min()}..{body.max()}")
    bad = np.isin(body, np.asarray([*exclude, bos], dtype=np.int64)) if bos != eos else np.isin(body, list(exclude))
    if bad.any() or np.isin(body, [eos]).any():
        raise ValueError("the LM text holds an excluded, <s> or </s> id inside a sentence")
    sent_id = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])

    # raw counts of every order; windows inside one sentence, never ending on the leading <s>
    raw_keys: list[np.ndarray] = []
    raw_counts: list[np.ndarray] = []
    for n in range(1, order + 1):
        m = len(flat) - n + 1
        if m <= 0:
            raw_keys.append(np.zeros(0, np.int64))
            raw_counts.append(np.zeros(0, np.int64))
            continue
        windows = np.stack([flat[i : i + m] for i in range(n)], axis=1)  # (m, n)
        ok = sent_id[:m] == sent_id[n - 1 : n - 1 + m]
        ok &= ~((windows[:, -1] == bos) & (np.r_[True, sent_id[1:] != sent_id[:-1]][n - 1 : n - 1 + m]))
        keys, counts = np.unique(_keys(windows[ok], vocab_size), return_counts=True)
        raw_keys.append(keys)
        raw_counts.append(counts)

    # Kneser-Ney counts: continuation counts below the top order, raw for n-grams that start with <s>
    kn_counts: list[np.ndarray] = []
    for n in range(1, order + 1):
        keys = raw_keys[n - 1]
        if n == order:
            kn_counts.append(raw_counts[n - 1].astype(np.float64))
            continue
        suffix_keys, cont = np.unique(raw_keys[n] % vocab_size**n, return_counts=True)
        found, c = _lookup(suffix_keys, cont, keys)
        # an n-gram (n >= 2) whose first id is bos starts with <s>; a unigram with that id is </s> (bos == eos)
        starts_bos = (keys // vocab_size ** (n - 1) == bos) & (n > 1)
        kn_counts.append(np.where(starts_bos | ~found, raw_counts[n - 1], c).astype(np.float64))

    predictable = np.setdiff1d(np.arange(vocab_size), np.asarray(list(exclude), dtype=np.int64))
    if bos != eos:
        predictable = predictable[predictable != bos]
    ngrams: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
    discounts: list[float] = []
    lower_keys = np.zeros(0, np.int64)
    lower_logp = np.zeros(0)
    gammas: list[tuple[np.ndarray, np.ndarray]] = []  # per order: (context keys, log gamma)
    for n in range(1, order + 1):
        keys, c = raw_keys[n - 1], kn_counts[n - 1]
        d = _discount(c)
        discounts.append(d)
        ctx = keys // vocab_size
        ctx_keys, inverse = np.unique(ctx, return_inverse=True)
        ctx_total = np.bincount(inverse, weights=c)
        ctx_types = np.bincount(inverse)
        gamma = d * ctx_types / ctx_total
        if n == 1:
            # interpolate with the uniform distribution over predictable tokens; unseen ones are listed too
            uni = np.zeros(vocab_size)
            uni[keys] = np.maximum(c - d, 0) / ctx_total[0]
            p = uni + gamma[0] / len(predictable)
            keys = predictable.astype(np.int64)
            logp = np.log(p[keys])
        else:
            found, lower = _lookup(lower_keys, lower_logp, keys % vocab_size ** (n - 1))
            if not found.all():
                raise AssertionError("a suffix of a seen n-gram is missing one order down")
            logp = np.log(np.maximum(c - d, 0) / ctx_total[inverse] + gamma[inverse] * np.exp(lower))
        gammas.append((ctx_keys, np.log(gamma)))
        ngrams.append([_unkey(keys, n, vocab_size), logp, None])
        lower_keys, lower_logp = keys, logp

    # back-offs: gamma of order n + 1 belongs to the n-gram that is its context
    bos_backoff = 0.0
    for n in range(1, order):
        ctx_keys, log_gamma = gammas[n]
        keys = _keys(ngrams[n - 1][0], vocab_size)
        _, bow = _lookup(ctx_keys, log_gamma, keys)
        if n == 1:
            bow = np.where(ngrams[0][0][:, 0] == eos, 0.0, bow)  # </s> is never a context (bos may equal eos)
        ngrams[n - 1][2] = bow
        if n == 1:
            hit = np.searchsorted(ctx_keys, bos)
            if hit < len(ctx_keys) and ctx_keys[hit] == bos:
                bos_backoff = float(log_gamma[hit])
    return KneserNeyTables(ngrams=[tuple(t) for t in ngrams], bos_backoff=bos_backoff, discounts=discounts)
