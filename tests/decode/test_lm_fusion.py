"""Modified beam search with shallow fusion of a token n-gram: against brute force over all label sequences."""

import math

import numpy as np
import pytest
import torch

from asr.decode.modified_beam_search import modified_beam_search
from asr.decode.search import search
from asr.lm.fusion import LexiconFusion, NgramFusion, SumFusion, WordNgramFusion
from asr.lm.kneser_ney import train_kneser_ney
from asr.lm.ngram import NgramLm, read_arpa, write_arpa

from tests.decode.decode_fakes import TinyTransducer, assert_same_hyps, exact_best, one_symbol_path, tokens_of

V = 4  # the tiny model's labels 1..3; the LM's <s>/</s> is id 3 (the model may emit it; fusion must not)
BOS = EOS = 3


def tiny_lm(tmp_path, order: int, seed: int = 0) -> NgramLm:
    rng = np.random.default_rng(seed)
    sentences = [list(rng.choice([1, 2], size=rng.integers(1, 6), p=[0.7, 0.3])) for _ in range(30)]
    tables = train_kneser_ney(sentences, order, V, BOS, EOS)
    symbols = ["<blk>", "x", "y", "<sos/eos>"]
    write_arpa(tmp_path / "lm.arpa", tables.ngrams, symbols, BOS, EOS, tables.bos_backoff)
    return read_arpa(tmp_path / "lm.arpa", {s: i for i, s in enumerate(symbols)}, BOS, EOS, V)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("length_norm", [True, False])
@pytest.mark.parametrize("order,scale,bonus", [(2, 0.8, 0.0), (3, 1.5, 0.7), (1, 0.5, -0.3)])
def test_wide_beam_fusion_is_exact(tmp_path, seed, length_norm, order, scale, bonus):
    """With nothing pruned, fusion picks argmax over sequences of
    log sum_alignments p_AM + scale * log p_LM(sequence </s>) + bonus * length (divided by length + context)."""
    lm = tiny_lm(tmp_path, order, seed)
    model = TinyTransducer(vocab_size=V, seed=seed).eval()
    torch.manual_seed(seed)
    enc = torch.randn(1, 4, 8, dtype=torch.float64)
    _, hyps = exact_best(model, enc[0], length_norm=False)
    c = model.context_size

    def fused(ys: tuple) -> float:
        labels = list(ys[c:])
        if EOS in labels:  # the LM's sentence mark is not a label
            return -math.inf
        score = hyps[ys] + scale * lm.sentence_log_prob(labels) + bonus * len(labels)
        return score / len(ys) if length_norm else score

    want = list(max(hyps, key=fused)[c:])
    got = modified_beam_search(model, enc, torch.tensor([4]), beam=V**4, length_norm=length_norm,
                               fusion=NgramFusion(lm, scale, bonus))
    assert tokens_of(got) == [want]


def test_fusion_never_emits_the_lm_sentence_mark(tmp_path):
    """<sos/eos> is the LM's end of sentence, not a label: a model that likes it does not get it through fusion."""
    lm = tiny_lm(tmp_path, 2)
    model = TinyTransducer(vocab_size=V, seed=0).eval()
    with torch.no_grad():
        model.joiner.output_linear.bias[EOS] = 5.0
    enc = torch.randn(2, 6, 8, dtype=torch.float64)
    lens = torch.tensor([6, 4])
    assert any(EOS in h for h in tokens_of(modified_beam_search(model, enc, lens, beam=4)))
    fused = tokens_of(modified_beam_search(model, enc, lens, beam=4, fusion=NgramFusion(lm, 0.0)))
    assert not any(EOS in h for h in fused) and any(fused)


def test_fusion_changes_the_result_and_zero_scale_does_not(tmp_path):
    lm = tiny_lm(tmp_path, 3)
    model = TinyTransducer(vocab_size=V, seed=1).eval()
    with torch.no_grad():
        model.joiner.output_linear.bias[EOS] = -1e4  # so that forbidding the LM's sentence mark changes nothing
    torch.manual_seed(1)
    lens = torch.tensor([9, 6, 9, 3])
    enc = torch.randn(len(lens), 9, 8, dtype=torch.float64)
    plain = tokens_of(modified_beam_search(model, enc, lens, beam=4))
    assert tokens_of(modified_beam_search(model, enc, lens, beam=4, fusion=NgramFusion(lm, 0.0))) == plain
    strong = tokens_of(modified_beam_search(model, enc, lens, beam=4, fusion=NgramFusion(lm, 5.0, 3.0)))
    assert strong != plain
    # a strong LM picks what it likes better
    assert sum(map(lm.sentence_log_prob, strong)) > sum(map(lm.sentence_log_prob, plain))


def test_batched_fusion_equals_one_at_a_time(tmp_path):
    lm = tiny_lm(tmp_path, 4)
    model = TinyTransducer(vocab_size=V, seed=2).eval()
    torch.manual_seed(2)
    lens = torch.tensor([7, 12, 1, 9, 0])
    enc = torch.randn(len(lens), 12, 8, dtype=torch.float64)
    fusion = NgramFusion(lm, 0.7, 0.2)
    batched = modified_beam_search(model, enc, lens, beam=3, fusion=fusion)
    single = [modified_beam_search(model, enc[i : i + 1, :n], lens[i : i + 1], beam=3, fusion=fusion)[0]
              for i, n in enumerate(lens.tolist())]
    assert_same_hyps(batched, single)
    assert batched[-1].tokens == []


def test_lm_with_other_methods_or_vocabulary_is_an_error(tmp_path):
    lm = tiny_lm(tmp_path, 2)
    model = TinyTransducer(vocab_size=V + 1).eval()
    enc = torch.randn(1, 3, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="only used by modified_beam_search"):
        search(model, enc, torch.tensor([3]), "greedy", fusion=NgramFusion(lm, 0.5))
    with pytest.raises(ValueError, match="tokens, the model"):
        modified_beam_search(model, enc, torch.tensor([3]), fusion=NgramFusion(lm, 0.5))
    assert math.isfinite(lm.sentence_log_prob([1, 2]))


# Lexicon: pieces of a 6-label vocabulary; words are spelt from them in any segmentation.
PIECES = ["<blk>", "\u2581", "\u2581A", "B", "\u2581AB", "A"]
WORDS = ["AB", "A", "BA"]  # "BA" cannot start with a "▁B" piece, only "▁" + "B" + "A"


def spelt(labels: list[int]) -> str:
    return "".join(PIECES[y] for y in labels).replace("\u2581", " ").strip()


def lexicon_ok(labels: list[int]) -> bool:
    text = "".join(PIECES[y] for y in labels)
    return (not labels or (PIECES[labels[0]].startswith("\u2581") and all(
        w in WORDS for w in text.split("\u2581")[1:])))


def test_lexicon_allows_exactly_the_spellings_of_its_words():
    lex = LexiconFusion(WORDS, PIECES)
    import itertools

    for n in range(0, 5):
        for labels in itertools.product(range(1, 6), repeat=n):
            state, score = lex.initial_state(), 0.0
            for y in labels:
                score += float(lex.scores(state)[y])
                state = lex.advance(state, y)
            score += lex.final(state)
            assert (score == 0.0) == lexicon_ok(list(labels)), (labels, spelt(list(labels)))
    assert lex.scores(lex.initial_state())[0] == -np.inf  # blank is the search's business: never a label here


@pytest.mark.parametrize("seed", range(3))
def test_wide_beam_lexicon_search_is_exact(seed):
    """The best hypothesis is the brute-force best among the sequences the lexicon allows."""
    model = TinyTransducer(vocab_size=6, seed=seed).eval()
    torch.manual_seed(seed)
    enc = torch.randn(1, 4, 8, dtype=torch.float64)
    _, hyps = exact_best(model, enc[0], length_norm=False)
    c = model.context_size
    allowed = {ys: lp for ys, lp in hyps.items() if lexicon_ok(list(ys[c:]))}
    want = list(max(allowed, key=allowed.get)[c:])
    lex = LexiconFusion(WORDS, PIECES)
    got = modified_beam_search(model, enc, torch.tensor([4]), beam=6**4, length_norm=False, fusion=lex)
    assert tokens_of(got) == [want]
    combined = SumFusion([lex, LexiconFusion(WORDS, PIECES)])  # the same constraint twice changes nothing
    assert modified_beam_search(model, enc, torch.tensor([4]), beam=6**4, length_norm=False, fusion=combined) == got


def word_lm(tmp_path, order: int) -> NgramLm:
    """A word n-gram over WORDS (ids 2, 3, 4; 1 is <s>/</s>)."""
    rng = np.random.default_rng(order)
    sentences = [list(rng.choice([2, 3, 4], size=rng.integers(1, 4), p=[0.5, 0.3, 0.2])) for _ in range(30)]
    tables = train_kneser_ney(sentences, order, 5, 1, 1)
    symbols = ["<eps>", "<sos/eos>", *WORDS]
    write_arpa(tmp_path / "words.arpa", tables.ngrams, symbols, 1, 1, tables.bos_backoff)
    return read_arpa(tmp_path / "words.arpa", {s: i for i, s in enumerate(symbols)}, 1, 1, 5)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("order,scale,bonus", [(2, 1.0, 0.0), (3, 0.6, 1.2)])
def test_wide_beam_word_lm_search_is_exact(tmp_path, seed, order, scale, bonus):
    """Among the sequences the lexicon allows, the best of AM + scale * log p_wordLM(words </s>) + bonus * words."""
    lm = word_lm(tmp_path, order)
    model = TinyTransducer(vocab_size=6, seed=seed).eval()
    torch.manual_seed(seed)
    enc = torch.randn(1, 4, 8, dtype=torch.float64)
    _, hyps = exact_best(model, enc[0], length_norm=False)
    c = model.context_size

    def fused(ys: tuple) -> float:
        words = spelt(list(ys[c:])).split()
        ids = [WORDS.index(w) + 2 for w in words]
        return hyps[ys] + scale * lm.sentence_log_prob(ids) + bonus * len(words)

    allowed = [ys for ys in hyps if lexicon_ok(list(ys[c:]))]
    want = list(max(allowed, key=fused)[c:])
    fusion = WordNgramFusion(lm, LexiconFusion(WORDS, PIECES), [2, 3, 4], scale, bonus)
    got = modified_beam_search(model, enc, torch.tensor([4]), beam=6**4, length_norm=False, fusion=fusion)
    assert tokens_of(got) == [want]


def test_fused_search_reports_the_joiners_log_probs(tmp_path):
    """With fusion, each token's log-probability is still the joiner's (the LM's score is not in it)."""
    lm = tiny_lm(tmp_path, 3)
    model = TinyTransducer(vocab_size=V, seed=3).eval()
    torch.manual_seed(3)
    lens = torch.tensor([8, 5])
    enc = torch.randn(2, 8, 8, dtype=torch.float64)
    hyps = modified_beam_search(model, enc, lens, beam=4, fusion=NgramFusion(lm, 2.0, 0.5))
    assert any(h.tokens for h in hyps)
    with torch.no_grad():
        for h, e, n in zip(hyps, enc, lens.tolist()):
            lps, _ = one_symbol_path(model, e[:n], h.tokens, h.frames)
            assert h.log_probs == pytest.approx(lps, abs=1e-9)
