"""BPE model of the requested size, its special ids, and text round trips."""

from __future__ import annotations

import pytest

from asr.data.bpe import train_bpe
from asr.data.text import normalize_transcript
from asr.data.tokenizer import Tokenizer

from tests.data.data_fixtures import WORDS


def test_bpe_size_ids_and_round_trip(prepared):
    tok = Tokenizer(prepared / "lang" / "bpe.model")
    assert tok.vocab_size == 34
    assert tok.blank_id == 0 and tok.sp.id_to_piece(1) == "<sos/eos>" and tok.unk_id == 2
    texts = ["THE QUICK BROWN FOX", "I'LL GO THERE TOMORROW IF IT DOESN'T RAIN", " ".join(WORDS)]
    ids = tok.encode(texts)
    assert all(0 < i < 34 for seq in ids for i in seq)
    assert 2 not in {i for seq in ids for i in seq}  # every character is known
    assert tok.decode(ids) == texts
    assert set("ABCDEFGHIKLMNOPRSTUVWY' ") <= tok.alphabet and "Z" in tok.alphabet and "1" not in tok.alphabet


def test_too_large_vocab_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="smaller --vocab-size"):
        train_bpe(["A B C"], tmp_path, vocab_size=500)


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="prepare.sh"):
        Tokenizer(tmp_path / "none.model")


@pytest.mark.parametrize("raw,norm", [
    ("\u201cWell,\u201d said Mr. Smith -- it's 'done'!", "WELL SAID MISTER SMITH IT'S DONE"),
    ("In the beginning God created the heaven and the earth.", "IN THE BEGINNING GOD CREATED THE HEAVEN AND THE EARTH"),
    ("Chapter 11", None),
    ("na\u00efve", None),
])
def test_normalize_transcript(raw, norm):
    assert normalize_transcript(raw) == norm
