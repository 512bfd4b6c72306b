"""Interpolated Kneser-Ney: against a textbook dictionary implementation, a hand-computed value, normalisation."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict

import numpy as np
import pytest

from asr.lm import read_arpa, train_kneser_ney, write_arpa

V, BOS, EOS = 6, 1, 1  # ids: 0 blank (never predicted), 1 <s>/</s>, 2..5 tokens
SYMBOLS = ["<blk>", "<sos/eos>", "a", "b", "c", "d"]


def random_sentences(seed: int, n: int = 40) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    # skewed token distribution, so that counts of 1 and 2 both occur at every order
    return [list(rng.choice([2, 3, 4, 5], size=rng.integers(1, 7), p=[0.4, 0.3, 0.2, 0.1])) for _ in range(n)]


def textbook_kn(sentences: list[list[int]], order: int):
    """p(w | h) by the interpolated Kneser-Ney recursion, with plain dictionaries (the independent oracle)."""
    grams = [Counter() for _ in range(order + 1)]  # grams[n][tuple] = raw count
    for s in sentences:
        seq = [BOS, *s, EOS]
        for n in range(1, order + 1):
            for i in range(len(seq) - n + 1):
                g = tuple(seq[i : i + n])
                if n == 1 and i == 0:
                    continue  # the leading <s> is never predicted
                grams[n][g] += 1
    counts = [dict() for _ in range(order + 1)]
    for n in range(1, order + 1):
        if n == order:
            counts[n] = dict(grams[n])
            continue
        left = Counter(g[1:] for g in grams[n + 1])
        counts[n] = {g: (c if g[0] == BOS and n > 1 else left[g]) for g, c in grams[n].items()}
    discount, total, types = {}, {}, {}
    for n in range(1, order + 1):
        cs = list(counts[n].values())
        n1, n2 = cs.count(1), cs.count(2)
        discount[n] = min(max(n1 / (n1 + 2 * n2), 0.05), 0.95) if n1 and n2 else 0.5
        total[n], types[n] = defaultdict(float), defaultdict(int)
        for g, c in counts[n].items():
            total[n][g[:-1]] += c
            types[n][g[:-1]] += 1
    predictable = [w for w in range(V) if w != 0]

    def p(w: int, h: tuple) -> float:
        n = len(h) + 1
        lower = 1 / len(predictable) if n == 1 else p(w, h[1:])
        if total[n].get(h, 0) == 0:
            return lower
        d = discount[n]
        return max(counts[n].get(h + (w,), 0) - d, 0) / total[n][h] + d * types[n][h] / total[n][h] * lower

    return p


@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_textbook_recursion_through_arpa(order: int, seed: int, tmp_path):
    sentences = random_sentences(seed)
    tables = train_kneser_ney(sentences, order, V, BOS, EOS)
    write_arpa(tmp_path / "lm.arpa", tables.ngrams, SYMBOLS, BOS, EOS, tables.bos_backoff)
    lm = read_arpa(tmp_path / "lm.arpa", {s: i for i, s in enumerate(SYMBOLS)}, BOS, EOS, V)
    oracle = textbook_kn(sentences, order)
    checked = 0
    for length in range(order):
        for tail in itertools.product(range(1, V), repeat=length):
            # contexts start with <s> or not; <s> elsewhere never occurs
            if any(t == BOS for t in tail[1:]):
                continue
            got = lm.log_probs(tail)
            for w in range(1, V):
                assert got[w] == pytest.approx(math.log(oracle(w, tail)), abs=2e-5), (tail, w)
                checked += 1
    assert checked >= 5


def test_hand_computed_unigram(tmp_path):
    sentences = [[2, 3, 4], [2, 3, 5], [3, 4, 2, 3], [4, 4, 5]]
    tables = train_kneser_ney(sentences, 2, V, BOS, EOS)
    ids, logp, _ = tables.ngrams[0]
    uni = dict(zip(ids[:, 0].tolist(), np.exp(logp).tolist()))
    # <s> a b c </s> | <s> a b d </s> | <s> b c a b </s> | <s> c c d </s>: distinct left neighbours of each token
    cont = {2: 2, 3: 2, 4: 3, 5: 2, EOS: 3}  # a {<s>, c}, b {a, <s>}, c {b, <s>, c}, d {b, c}, </s> {c, d, b}
    n1 = sum(c == 1 for c in cont.values())
    assert n1 == 0  # no count of 1: the discount falls back to 0.5
    d = 0.5
    total = sum(cont.values())
    for w, c in cont.items():
        assert uni[w] == pytest.approx((c - d) / total + d * len(cont) / total / (V - 1))


@pytest.mark.parametrize("order", [2, 3, 5])
def test_every_distribution_sums_to_one(order: int, tmp_path):
    sentences = random_sentences(3, n=100)
    tables = train_kneser_ney(sentences, order, V, BOS, EOS)
    write_arpa(tmp_path / "lm.arpa.gz", tables.ngrams, SYMBOLS, BOS, EOS, tables.bos_backoff)
    lm = read_arpa(tmp_path / "lm.arpa.gz", {s: i for i, s in enumerate(SYMBOLS)}, BOS, EOS, V)
    for ctx in [(), (BOS,), (BOS, 2), (2, 3, 4, 5), (5, 5, 5, 5, 5, 5)]:
        assert np.exp(lm.log_probs(ctx)[1:].astype(np.float64)).sum() == pytest.approx(1.0, abs=1e-4)
        assert lm.log_probs(ctx)[0] <= -29  # blank gets no probability


def test_higher_order_fits_the_training_text_better():
    sentences = random_sentences(4, n=60)
    scores = []
    for order in (1, 2, 3, 4):
        t = train_kneser_ney(sentences, order, V, BOS, EOS)
        # log-likelihood of the training text under the model, from the listed top-order n-grams' contexts
        from asr.lm.ngram import NgramLm

        probs = [dict() for _ in range(order)]
        bows = [dict() for _ in range(order)]
        for n, (ids, logp, bow) in enumerate(t.ngrams, start=1):
            for row, lp, b in zip(ids.tolist(), logp.tolist(), (bow if bow is not None else [0.0] * len(ids))):
                ctx = tuple(row[:-1])
                w, p = probs[n - 1].setdefault(ctx, ([], []))
                w.append(row[-1])
                p.append(lp)
                if b:
                    bows[n - 1][tuple(row)] = b
        if order > 1:
            bows[0][(BOS,)] = t.bos_backoff
        lm = NgramLm(order, V, BOS, EOS, [{k: (np.array(w), np.array(p, np.float32)) for k, (w, p) in d.items()}
                                          for d in probs], bows)
        scores.append(sum(lm.sentence_log_prob(s) for s in sentences))
    assert scores == sorted(scores)


@pytest.mark.parametrize("bad,match", [
    (dict(sentences=[[2, 3]], order=0), "order"),
    (dict(sentences=[[2, 9]], order=2), r"\[0, 6\)"),
    (dict(sentences=[[2, 0, 3]], order=2), "excluded"),
    (dict(sentences=[[2, 1, 3]], order=2), "excluded"),
    (dict(sentences=[[]], order=2), "no non-empty"),
    (dict(sentences=[[2]], order=30), "int64"),
])
def test_bad_input_is_a_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        train_kneser_ney(bad["sentences"], bad["order"], V, BOS, EOS)


def test_distinct_bos_and_eos_ids(tmp_path):
    symbols = [*SYMBOLS, "<eos>"]
    sentences = random_sentences(5)
    tables = train_kneser_ney(sentences, 3, V + 1, BOS, V)
    write_arpa(tmp_path / "lm.arpa", tables.ngrams, symbols, BOS, V, tables.bos_backoff)
    text = (tmp_path / "lm.arpa").read_text()
    assert "\t<s>\t" in text and "</s>" in text and "<sos/eos>" not in text and "<eos>" not in text
    lm = read_arpa(tmp_path / "lm.arpa", {s: i for i, s in enumerate(symbols)}, BOS, V, V + 1)
    row = np.exp(lm.log_probs((BOS, 2)).astype(np.float64))
    assert row[2:].sum() == pytest.approx(1.0, abs=1e-4) and row[BOS] < 1e-12  # <s> is never predicted
