"""asr-transcribe: the CLI's handling of bad files and options (audio reading and features: tests/data/test_audio.py)."""

from pathlib import Path

import pytest
import soundfile as sf

from asr.decode.transcribe import main
from tests.decode.decode_fakes import make_exp_dir, tone

@pytest.fixture
def exp_dir(tmp_path: Path) -> Path:
    return make_exp_dir(tmp_path)


def test_cli_bad_file_does_not_stop_the_others(exp_dir: Path, tmp_path: Path, capsys):
    good1, good2 = tmp_path / "one.wav", tmp_path / "two.flac"
    sf.write(good1, tone(1.0, 22050), 22050)
    sf.write(good2, tone(0.8, 16000), 16000)
    missing, bad = tmp_path / "missing.wav", tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF garbage")
    rc = main(["--exp-dir", str(exp_dir), str(good1), str(missing), str(bad), str(good2)])
    out, err = capsys.readouterr()
    assert rc == 1
    lines = out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(good1), str(good2)]
    for line in lines:
        path, text = line.split("\t")
        assert text == text.upper() and text.strip()
    assert f"{missing}: no such file" in err
    assert f"{bad}: cannot read audio" in err
    assert "2 of 4 files" in err


@pytest.mark.parametrize("method", ["greedy", "beam_search", "modified_beam_search"])
def test_cli_all_good_exits_zero(exp_dir: Path, tmp_path: Path, capsys, method: str):
    sf.write(tmp_path / "a.wav", tone(1.0, 16000), 16000)
    assert main(["--exp-dir", str(exp_dir), "--method", method, str(tmp_path / "a.wav")]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'a.wav'}\t")


def test_cli_bad_exp_dir(tmp_path: Path, capsys):
    assert main(["--exp-dir", str(tmp_path / "nope"), str(tmp_path / "a.wav")]) == 2
    assert "cannot load the model" in capsys.readouterr().err


def test_cli_shallow_fusion_spells_only_lexicon_words(exp_dir: Path, tmp_path: Path, capsys):
    """--lm/--lexicon/--word-lm: the files of prepare.sh stage 5; with the lexicon every output word is one of its."""
    from asr.data.tokenizer import Tokenizer
    from asr.lm.token_lm import train_token_lm
    from tests.decode.decode_fakes import SENTENCES

    lm = tmp_path / "lm" / "tokens_3gram.arpa"
    train_token_lm(SENTENCES, Tokenizer(tmp_path / "lang" / "bpe.model"), 3, lm, word_order=2)
    sf.write(tmp_path / "a.wav", tone(1.5, 16000), 16000)
    args = ["--exp-dir", str(exp_dir), "--method", "modified_beam_search", "--beam", "8", "--lm", str(lm),
            "--lexicon", str(lm.parent / "words.txt"), "--word-lm", str(lm.parent / "words_2gram.arpa")]
    assert main(args + [str(tmp_path / "a.wav")]) == 0
    text = capsys.readouterr().out.rstrip("\n").split("\t")[1]
    vocabulary = {w for s in SENTENCES for w in s.split()}
    assert set(text.split()) <= vocabulary, text


def test_cli_bad_lm_options(exp_dir: Path, tmp_path: Path, capsys):
    wav = str(tmp_path / "a.wav")
    assert main(["--exp-dir", str(exp_dir), "--lm", str(tmp_path / "x.arpa"), wav]) == 2  # greedy: no LM
    assert "only used by modified_beam_search" in capsys.readouterr().err
    args = ["--exp-dir", str(exp_dir), "--method", "modified_beam_search"]
    assert main(args + ["--lexicon", str(tmp_path / "missing.txt"), wav]) == 2
    assert "cannot load the LM: no lexicon at" in capsys.readouterr().err
