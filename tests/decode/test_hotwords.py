"""Hotwords (asr.decode.hotwords): the context graph against brute force, the file's errors, modified beam search
with the scorer (exact with a wide beam, unchanged with no phrase), and recall on the trained tone-language model."""

import itertools
import math

import numpy as np
import pytest
import torch

from asr.data.bpe import train_bpe
from asr.data.tokenizer import Tokenizer
from asr.decode.config import SearchConfig, check_search
from asr.decode.hotwords import (ContextGraph, HotwordError, HotwordFusion, encode_hotwords, load_hotwords,
                                 parse_hotwords, read_hotwords)
from asr.decode.modified_beam_search import modified_beam_search
from asr.lm.fusion import NgramFusion, SumFusion
from tests.decode.decode_fakes import SENTENCES, TinyTransducer, exact_best


def walk(graph: ContextGraph, tokens) -> tuple[list[float], float]:
    """Per-token bonuses of a token sequence and the final take-back."""
    state, steps = 0, []
    for t in tokens:
        bonus, state = graph.step(state, t)
        steps.append(bonus)
    return steps, graph.final(state)


def occurrences_bonus(phrases: list[tuple[tuple[int, ...], float]], tokens: tuple[int, ...]) -> float:
    """Brute force: the sum over every occurrence of every (distinct) phrase of its bonus, the sum over its prefixes
    of the largest score of the phrases sharing that prefix."""
    def bonus(p):
        return sum(max(s for q, s in phrases if q[: j + 1] == p[: j + 1]) for j in range(len(p)))

    distinct = {p for p, _ in phrases}
    return sum(bonus(p) for p in distinct for i in range(len(tokens) - len(p) + 1) if tokens[i : i + len(p)] == p)


def test_known_totals():
    """A classic Aho-Corasick set (overlaps, prefixes, suffixes) over letters, score 1 per token: each total is the
    number of letters of all phrase occurrences, counted by hand."""
    phrases = ["S", "HE", "SHE", "SHELL", "HIS", "HERS", "HELLO", "THIS", "THEM"]
    graph = ContextGraph([([ord(c) for c in p], 1.0) for p in phrases])
    totals = {"HEHERSHE": 14, "HERSHE": 12, "HISHE": 9, "SHED": 6, "HELL": 2, "HELLO": 7, "DHRHISQ": 4, "THEN": 2,
              "XYZ": 0, "HERX": 2, "SHELX": 6}
    for text, want in totals.items():
        steps, final = walk(graph, [ord(c) for c in text])
        assert sum(steps) + final == want, text


@pytest.mark.parametrize("seed", range(20))
def test_total_is_the_bonus_of_all_occurrences(seed):
    """Random phrase sets over 4 tokens (shared prefixes, phrases inside phrases, repeats, per-phrase scores) and
    every sequence of up to 6 tokens: the bonuses after `final` sum to the occurrences' bonuses (brute force), so a
    sequence that completes no phrase ends with exactly 0; the scorer's rows and states agree with the graph."""
    rng = np.random.default_rng(seed)
    phrases = [(tuple(int(t) for t in rng.integers(1, 5, size=rng.integers(1, 4))), float(rng.choice([0.5, 1.0, 2.5])))
               for _ in range(rng.integers(1, 6))]
    graph = ContextGraph(phrases)
    fusion = HotwordFusion(graph, vocab_size=5)
    for n in range(7):
        for tokens in itertools.product(range(1, 5), repeat=n):
            steps, final = walk(graph, tokens)
            assert sum(steps) + final == pytest.approx(occurrences_bonus(phrases, tokens), abs=1e-9), tokens
            state, total = fusion.initial_state(), 0.0
            for t, want in zip(tokens, steps):
                assert fusion.scores(state)[t] == pytest.approx(want, abs=1e-6)
                total += float(fusion.scores(state)[t])
                state = fusion.advance(state, t)
            assert total + fusion.final(state) == pytest.approx(sum(steps) + final, abs=1e-5)


def test_steps_earn_and_take_back():
    """Phrases 1 2 3 (score 1), its prefix 1 2 (score 1) and its suffix 2 3 4 (score 2): a token that continues a
    phrase earns its score, a completed phrase keeps its bonus, a failure or the end takes back only the pending
    part."""
    graph = ContextGraph([((1, 2, 3), 1.0), ((1, 2), 1.0), ((2, 3, 4), 2.0)])
    assert walk(graph, [1]) == ([1.0], -1.0)  # partial match taken back at the end
    assert walk(graph, [1, 4]) == ([1.0, -1.0], 0.0)  # failure takes it back
    assert walk(graph, [1, 2]) == ([1.0, 1.0], 0.0)  # "1 2" completed: kept
    assert walk(graph, [1, 2, 4]) == ([1.0, 1.0, 0.0], 0.0)  # nothing pending after a completed phrase
    assert walk(graph, [1, 2, 3]) == ([1.0, 1.0, 3.0], 0.0)  # "1 2 3" completes: its 3 on top of the 2 of "1 2"
    assert walk(graph, [1, 2, 3, 4]) == ([1.0, 1.0, 3.0, 6.0], 0.0)  # and "2 3 4", inside it, completes too
    steps, final = walk(graph, [2, 3, 1, 2])  # "2 3" fails at 1 (-4), then "1 2" completes
    assert steps == [2.0, 2.0, -3.0, 1.0] and final == 0.0


def test_empty_graph_and_bad_phrases():
    graph = ContextGraph([])
    assert graph.num_states == 1 and walk(graph, [1, 2, 3]) == ([0.0, 0.0, 0.0], 0.0)
    with pytest.raises(ValueError, match="without tokens"):
        ContextGraph([((), 1.0)])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        HotwordFusion(ContextGraph([((1, 7), 1.0)]), vocab_size=5)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> Tokenizer:
    return Tokenizer(train_bpe(SENTENCES, tmp_path_factory.mktemp("lang"), vocab_size=30))


def test_parse_format():
    text = "# a comment\n\n  HELLO   WORLD :2.5\nTHE CAT\n   # indented comment\nA DOG :-1\n"
    assert [(h.phrase, h.boost, h.line) for h in parse_hotwords(text)] == [
        ("HELLO WORLD", 2.5, 3), ("THE CAT", None, 4), ("A DOG", -1.0, 6)]


@pytest.mark.parametrize("line,message", [
    ("HELLO :abc", r"names.txt:3: the boost 'abc' \(after ':'\) is not a number"),
    ("HELLO :", r"names.txt:3: the boost '' \(after ':'\) is not a number"),
    ("HELLO :nan", "names.txt:3: the boost 'nan' is not a finite number"),
    (":2", "names.txt:3: a boost without a phrase"),
    ("HELLO :2 WORLD", "names.txt:3: ':2': a boost ':N' must be the last field"),
])
def test_parse_errors_name_the_line(tmp_path, tokenizer, line, message):
    path = tmp_path / "names.txt"
    path.write_text(f"THE CAT\n# ok\n{line}\n")
    with pytest.raises(HotwordError, match=message):
        read_hotwords(path, tokenizer)


def test_unspellable_phrase_names_the_line(tmp_path, tokenizer):
    path = tmp_path / "names.txt"
    path.write_text("THE CAT\nZOË QUIZ\n")
    with pytest.raises(HotwordError, match=r"names.txt:2: 'ZOË QUIZ': the BPE model cannot spell 'QZË'"):
        read_hotwords(path, tokenizer)
    with pytest.raises(FileNotFoundError, match="no hotword file"):
        read_hotwords(tmp_path / "missing.txt", tokenizer)
    path.write_bytes(b"THE \xff CAT\n")
    with pytest.raises(HotwordError, match="not UTF-8"):
        read_hotwords(path, tokenizer)


def test_encoding_folds_case_and_uses_boosts(tokenizer):
    hotwords = parse_hotwords("the cat :3\nHELLO WORLD\n")
    (cat, cat_score), (hello, hello_score) = encode_hotwords(hotwords, tokenizer, score=1.25)
    assert cat == tokenizer.encode(["THE CAT"])[0] and cat_score == 3.0
    assert hello == tokenizer.encode(["HELLO WORLD"])[0] and hello_score == 1.25
    with pytest.raises(HotwordError, match="finite"):
        encode_hotwords(hotwords, tokenizer, score=math.inf)


V = 4


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("length_norm", [True, False])
@pytest.mark.parametrize("with_lm", [False, True])
def test_wide_beam_hotwords_are_exact(tmp_path, seed, length_norm, with_lm):
    """With nothing pruned, modified beam search with hotwords (alone or summed with a token LM) picks the argmax
    over label sequences of log p_AM + the sequence's total hotword bonus (+ the LM's score)."""
    from tests.decode.test_lm_fusion import tiny_lm

    phrases = [((1, 2), 1.5), ((2, 2, 1), 2.0), ((1,), 0.5)]
    hot = HotwordFusion(ContextGraph(phrases), V)
    model = TinyTransducer(vocab_size=V, seed=seed).eval()
    torch.manual_seed(seed)
    enc = torch.randn(1, 4, 8, dtype=torch.float64)
    _, hyps = exact_best(model, enc[0], length_norm=False)
    c = model.context_size
    lm = tiny_lm(tmp_path, 2, seed) if with_lm else None

    def fused(ys: tuple) -> float:
        labels = tuple(ys[c:])
        score = hyps[ys] + occurrences_bonus(phrases, labels)
        if lm is not None:
            if 3 in labels:  # the LM's sentence mark is never a label
                return -math.inf
            score += 0.5 * lm.sentence_log_prob(list(labels))
        return score / len(ys) if length_norm else score

    want = list(max(hyps, key=fused)[c:])
    fusion = SumFusion([NgramFusion(lm, 0.5), hot]) if with_lm else hot
    got = modified_beam_search(model, enc, torch.tensor([4]), beam=V**4, length_norm=length_norm, fusion=fusion)
    assert _tokens(got) == [want]


def _tokens(hyps) -> list[list[int]]:
    """Token lists of the search's results (lists of ids, or typed hypotheses with `.tokens`)."""
    return [list(getattr(h, "tokens", h)) for h in hyps]


def _tokens_and_scores(hyps):
    """Token lists and, where the search returns typed hypotheses (asr.decode.hypothesis), their scores."""
    return [(list(getattr(h, "tokens", h)), getattr(h, "score", None)) for h in hyps]


def test_no_hotwords_change_nothing(tmp_path):
    """An empty hotword file: exactly the unbiased search (tokens and scores), with or without an LM."""
    from tests.decode.test_lm_fusion import tiny_lm

    empty = HotwordFusion(ContextGraph([]), V)
    assert not empty.scores(empty.initial_state()).any() and empty.final(empty.initial_state()) == 0.0
    model = TinyTransducer(vocab_size=V, seed=1).eval()
    torch.manual_seed(1)
    enc, lens = torch.randn(3, 6, 8, dtype=torch.float64), torch.tensor([6, 4, 5])
    lm = NgramFusion(tiny_lm(tmp_path, 2), 0.5)
    for plain, biased in [(None, empty), (lm, SumFusion([lm, empty]))]:
        want = _tokens_and_scores(modified_beam_search(model, enc, lens, beam=3, fusion=plain))
        assert _tokens_and_scores(modified_beam_search(model, enc, lens, beam=3, fusion=biased)) == want


def test_load_hotwords(tmp_path, tokenizer):
    path = tmp_path / "names.txt"
    path.write_text("# nothing yet\n\n")
    empty = load_hotwords(path, tokenizer)
    assert empty.graph.num_states == 1 and empty.vocab_size == tokenizer.vocab_size
    path.write_text("THE CAT\nA DOG :3\n")
    fusion = load_hotwords(path, tokenizer, score=2.0)
    state, total = fusion.initial_state(), 0.0
    for t in tokenizer.encode(["A DOG"])[0]:
        total += float(fusion.scores(state)[t])
        state = fusion.advance(state, t)
    assert total == pytest.approx(3.0 * len(tokenizer.encode(["A DOG"])[0])) and fusion.final(state) == 0.0


def test_hotwords_only_with_modified_beam_search():
    check_search(SearchConfig(method="modified_beam_search", hotwords="names.txt"))
    with pytest.raises(ValueError, match="only used by modified_beam_search"):
        check_search(SearchConfig(method="greedy", hotwords="names.txt"))


# ---- the trained tone-language model (tests/tone_asr.py: words A..F)


@pytest.fixture(scope="module")
def tone(trained):
    """(tokenizer, (encoder output (B, T, D), lengths (B,)) of the test utterances, references)."""
    from asr.data.audio import fbank, read_audio

    feats = [fbank(read_audio(wav), 80) for wav in trained.wavs]  # (T, F) each
    x = torch.nn.utils.rnn.pad_sequence(feats, batch_first=True)  # (B, T, F)
    with torch.inference_mode():
        enc = trained.model.encode(x, torch.tensor([f.size(0) for f in feats]))
    return Tokenizer(trained.bpe_model), enc, trained.texts


def _decode(trained, tone, phrases: list[str], score: float = 1.5) -> list[str]:
    tok, (enc, enc_lens), _ = tone
    fusion = HotwordFusion(ContextGraph(encode_hotwords(parse_hotwords("\n".join(phrases)), tok, score)),
                           tok.vocab_size)
    return tok.decode(_tokens(modified_beam_search(trained.model, enc, enc_lens, beam=4, fusion=fusion)))


def _has(text: str, phrase: str) -> bool:
    return f" {phrase} " in f" {' '.join(text.split())} "


def _bigrams(text: str) -> set[str]:
    w = text.split()
    return {f"{a} {b}" for a, b in zip(w, w[1:])}


def _errors(refs, hyps) -> int:
    from asr.metrics.wer import Result, compute_wer

    return compute_wer([Result(str(i), r.split(), h.split()) for i, (r, h) in enumerate(zip(refs, hyps))]).errors


def test_hotwords_raise_recall_on_the_trained_model(trained, tone):
    """The word pairs of the references that the unbiased search misses, as hotwords (default score 1.5): more of
    their occurrences are recognised, and the word errors do not grow."""
    refs = tone[2]
    base = _decode(trained, tone, [])
    missed = sorted({g for r, h in zip(refs, base) for g in _bigrams(r) if not _has(h, g)})
    if not missed:
        pytest.skip("the tone model recognises every word pair of its test set")
    pairs = [(i, g) for i, r in enumerate(refs) for g in _bigrams(r) if g in missed]

    def recall(hyps):
        return sum(_has(hyps[i], g) for i, g in pairs) / len(pairs)

    biased = _decode(trained, tone, missed)
    assert recall(biased) > recall(base) + 0.25, (missed, base, biased)
    assert _errors(refs, biased) <= _errors(refs, base)


def test_unrelated_hotwords_change_little(trained, tone):
    """Ten word triples that occur in no reference: the word errors change by at most one."""
    refs = tone[2]
    triples = [" ".join(t) for t in itertools.product("ABCDEF", repeat=3)]
    unrelated = [t for t in triples if not any(_has(r, t) for r in refs)]
    picked = list(np.random.default_rng(0).choice(unrelated, size=10, replace=False))
    base, biased = _decode(trained, tone, []), _decode(trained, tone, picked)
    assert abs(_errors(refs, biased) - _errors(refs, base)) <= 1, (picked, base, biased)


# ---- the entries: decode.hotwords (recipes' decode.py) and asr-transcribe --hotwords


def test_decode_config_hotwords_reach_the_fusion(tmp_path, tokenizer):
    """decode.hotwords / decode.hotword_score become a HotwordFusion (after an LM, summed) with a name in the result
    files."""
    from asr.decode.config import DecodeConfig
    from asr.decode.inference import InferenceConfig, load_fusion

    path = tmp_path / "names.txt"
    path.write_text("THE CAT\n")
    cfg = InferenceConfig.from_decode_config(DecodeConfig(decode=SearchConfig(
        method="modified_beam_search", hotwords=str(path), hotword_score=2.0)))
    assert (cfg.hotwords, cfg.hotword_score) == (str(path), 2.0)
    fusion, name = load_fusion(cfg, tokenizer)
    assert isinstance(fusion, HotwordFusion) and name == "hotwords_names_score_2"


def test_cli_hotwords(tmp_path, capsys):
    import soundfile as sf

    from asr.decode.transcribe import main
    from tests.decode.decode_fakes import make_exp_dir, tone

    exp = make_exp_dir(tmp_path)
    wav = tmp_path / "a.wav"
    sf.write(wav, tone(1.0, 16000), 16000)
    path = tmp_path / "names.txt"
    path.write_text("the cat :2\nHELLO WORLD\n")
    args = ["--exp-dir", str(exp), "--method", "modified_beam_search", "--hotwords", str(path)]
    assert main(args + ["--hotword-score", "1", str(wav)]) == 0
    assert capsys.readouterr().out.startswith(f"{wav}\t")
    path.write_text("THE CAT\nHELLO :x\n")
    assert main(args + [str(wav)]) == 2
    assert f"cannot load the hotwords: {path}:2: the boost 'x'" in capsys.readouterr().err
    assert main(["--exp-dir", str(exp), "--hotwords", str(path), str(wav)]) == 2  # greedy
    assert "only used by modified_beam_search" in capsys.readouterr().err
    assert main(["--jit", str(tmp_path / "jit.pt"), "--method", "modified_beam_search", "--hotwords", str(path),
                 str(wav)]) == 2
    assert "--hotwords needs the PyTorch model" in capsys.readouterr().err
