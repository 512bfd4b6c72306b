"""The token LM over a BPE model: training from text files (skipping what the BPE cannot spell) and loading."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from asr.data.bpe import train_bpe
from asr.data.tokenizer import Tokenizer
from asr.lm.fusion import NgramFusion, SumFusion, WordNgramFusion
from asr.decode.inference import InferenceConfig
from asr.decode.inference import load_fusion as _load_fusion
from asr.lm.token_lm import load_token_lm, load_word_lm, main, train_token_lm


def load_fusion(lm, lm_scale, lm_bonus, lexicon, tokenizer, word_lm="", word_lm_scale=0.0, word_lm_bonus=0.0):
    """asr.decode.inference.load_fusion of the fusion fields of an InferenceConfig (the files made here)."""
    cfg = InferenceConfig(lm=lm, lm_scale=lm_scale, lm_bonus=lm_bonus, lexicon=lexicon, word_lm=word_lm,
                          word_lm_scale=word_lm_scale, word_lm_bonus=word_lm_bonus)
    return _load_fusion(cfg, tokenizer)

TEXT = ["THE CAT SAT ON THE MAT", "THE DOG SAT ON THE LOG", "A CAT AND A DOG", "THE MAT AND THE LOG"] * 5


@pytest.fixture(scope="module")
def bpe_model(tmp_path_factory) -> Path:
    return train_bpe(TEXT, tmp_path_factory.mktemp("lang"), vocab_size=20)


@pytest.fixture(scope="module")
def tokenizer(bpe_model) -> Tokenizer:
    return Tokenizer(bpe_model)


def test_train_and_load(tokenizer, tmp_path):
    lines = [t.lower() + "\n" for t in TEXT] + ["\n", "THE ZEBRA SAT\n"]  # empty, and Z is not in the BPE model
    stats = train_token_lm(lines, tokenizer, 4, tmp_path / "lm.arpa")
    assert stats["sentences"] == len(TEXT) and stats["skipped_empty"] == 1 and stats["skipped_unk"] == 1
    lm = load_token_lm(tmp_path / "lm.arpa", tokenizer)
    assert lm.order == 4 and lm.vocab_size == tokenizer.vocab_size
    seen = lm.sentence_log_prob(tokenizer.encode(["THE CAT SAT ON THE LOG"])[0])
    shuffled = lm.sentence_log_prob(tokenizer.encode(["LOG THE ON SAT CAT THE"])[0])
    assert seen > shuffled + 5  # word order the text supports scores far better
    row = np.exp(lm.log_probs([1]).astype(np.float64))
    assert row[0] < 1e-12 and row.sum() == pytest.approx(1.0, abs=1e-4)  # blank never, the rest sums to 1


def test_cli_reads_gzip_and_caps_lines(bpe_model, tmp_path):
    text = tmp_path / "lm-norm.txt.gz"
    with gzip.open(text, "wt") as f:
        f.writelines(t + "\n" for t in TEXT)
    out = tmp_path / "lm" / "tokens_3gram.arpa"
    trigrams = {}
    for cap in (1, 0):  # one line, all lines
        main(["--bpe-model", str(bpe_model), "--out", str(out), "--order", "3", "--text", str(text),
              "--max-lines", str(cap)])
        header = [line for line in out.read_text().splitlines() if line.startswith("ngram 3=")]
        trigrams[cap] = int(header[0].split("=")[1])
    assert 0 < trigrams[1] < trigrams[0]
    with pytest.raises(SystemExit, match="no LM text"):
        main(["--bpe-model", str(bpe_model), "--out", str(out), "--text", str(tmp_path / "missing.txt")])


def test_missing_or_foreign_arpa_is_a_clear_error(tokenizer, tmp_path):
    with pytest.raises(FileNotFoundError, match="stage 5"):
        load_token_lm(tmp_path / "none.arpa", tokenizer)
    (tmp_path / "bad.arpa").write_text("\\data\\\nngram 1=2\n\n\\1-grams:\n-1.0\t<s>\t-0.5\n-0.5\tQWERTY\n\n\\end\\\n")
    with pytest.raises(ValueError, match="QWERTY"):
        load_token_lm(tmp_path / "bad.arpa", tokenizer)
    (tmp_path / "cut.arpa").write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-1.0\t<s>\t-0.5\n-0.5\t</s>\n")
    with pytest.raises(ValueError, match="truncated"):
        load_token_lm(tmp_path / "cut.arpa", tokenizer)


def test_load_fusion_combines_lm_and_lexicon(tokenizer, tmp_path):
    train_token_lm(TEXT, tokenizer, 3, tmp_path / "tokens_3gram.arpa")
    words = (tmp_path / "words.txt").read_text().split()
    assert words[:2] == ["THE", "30"]  # most frequent first, with its count
    assert load_fusion("", 0.5, 0.0, "", tokenizer) == (None, "")
    lm_only, name = load_fusion(str(tmp_path / "tokens_3gram.arpa"), 0.5, 0.25, "", tokenizer)
    assert isinstance(lm_only, NgramFusion) and name == "lm_tokens_3gram_scale_0.5_bonus_0.25"
    both, name = load_fusion(str(tmp_path / "tokens_3gram.arpa"), 0.5, 0.0, str(tmp_path / "words.txt"), tokenizer)
    assert isinstance(both, SumFusion) and name.endswith("_lexicon")
    # "CAT" is a word of the lexicon, "CAB" is not
    for text, ok in (("CAT", True), ("CAB", False)):
        state, total = both.initial_state(), 0.0
        for y in tokenizer.encode([text])[0]:
            total += float(both.scores(state)[y])
            state = both.advance(state, y)
        assert np.isfinite(total + both.final(state)) == ok, text
    with pytest.raises(FileNotFoundError, match="stage 5"):
        load_fusion("", 0.5, 0.0, str(tmp_path / "none.txt"), tokenizer)


def test_word_lm_is_trained_over_the_lexicon(tokenizer, tmp_path):
    stats = train_token_lm(TEXT, tokenizer, 3, tmp_path / "tokens_3gram.arpa", word_order=2)
    assert stats["word 1-grams"] == stats["words"] + 1  # every word and </s>
    words = [line.split()[0] for line in (tmp_path / "words.txt").read_text().splitlines()]
    lm = load_word_lm(tmp_path / "words_2gram.arpa", words)
    ids = {w: i + 2 for i, w in enumerate(words)}
    assert lm.sentence_log_prob([ids[w] for w in "THE CAT SAT ON THE MAT".split()]) > lm.sentence_log_prob(
        [ids[w] for w in "MAT THE ON SAT CAT THE".split()]) + 3
    fusion, name = load_fusion("", 0.0, 0.0, str(tmp_path / "words.txt"), tokenizer,
                               str(tmp_path / "words_2gram.arpa"), 0.5, 1.0)
    assert isinstance(fusion, WordNgramFusion) and name == "lexicon_words_2gram_scale_0.5_bonus_1"
    with pytest.raises(ValueError, match="needs the lexicon"):
        load_fusion("", 0.0, 0.0, "", tokenizer, str(tmp_path / "words_2gram.arpa"), 0.5)
