"""recipes/librispeech/prepare.sh end to end on a tiny corpus with bad input; re-runs skip finished stages."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from tests.data.data_fixtures import make_corpus
from lhotse import load_manifest

from asr.data.tokenizer import Tokenizer
from asr.lm.token_lm import load_token_lm

PREPARE = Path(__file__).resolve().parents[2] / "recipes" / "librispeech" / "prepare.sh"


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(PREPARE), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.slow  # three prepare.sh runs: about 10 s
def test_prepare_sh_stages(tmp_path):
    corpus = tmp_path / "dl"
    make_corpus(corpus, {"train-clean-100": 6, "test-clean": 2})
    chapter = corpus / "LibriSpeech" / "train-clean-100" / "100" / "1000"
    (chapter / "100-1000-0050.flac").write_bytes(b"")  # zero-length file with a transcript line
    with open(chapter / "100-1000.trans.txt", "a") as f:
        f.write("100-1000-0050 EMPTY\n100-1000-0051 NO AUDIO\n")
    work = tmp_path / "recipe"
    work.mkdir()
    r = _run(work, "--dl-dir", str(corpus), "--vocab-size", "30", "--no-download")
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert "subsets found: test-clean train-clean-100" in out
    assert "skipped 1 transcript line with no audio, 1 zero-length audio file" in out
    cuts = load_manifest(work / "data" / "fbank" / "librispeech_cuts_train-all-shuf.jsonl.gz")
    assert len(cuts) == 18 and {c.id.split("_sp")[0] for c in cuts} == {f"100-1000-{i:04d}" for i in range(6)}
    assert (work / "data" / "fbank" / "librispeech_cuts_test-clean.jsonl.gz").is_file()
    tokenizer = Tokenizer(work / "data" / "lang_bpe_30" / "bpe.model")
    assert tokenizer.vocab_size == 30
    assert "no download" not in out and "the LM is trained on the train transcripts" in out  # no lm/ text here
    lm = load_token_lm(work / "data" / "lm_bpe_30" / "tokens_6gram.arpa", tokenizer)
    assert lm.order == 6 and lm.vocab_size == 30
    assert (work / "data" / "lm_bpe_30" / "words_3gram.arpa").is_file()

    again = _run(work, "--dl-dir", str(corpus), "--vocab-size", "30", "--no-download")
    assert again.returncode == 0 and again.stdout.count("already") == 4

    flat = tmp_path / "flat"
    flat.mkdir()
    r = _run(flat, "--dl-dir", str(corpus), "--stop-stage", "2", "--perturb-speed", "false", "--no-download")
    assert r.returncode == 0, r.stderr[-3000:]
    assert len(load_manifest(flat / "data" / "fbank" / "librispeech_cuts_train-all-shuf.jsonl.gz")) == 6

    other = tmp_path / "other"
    make_corpus(other, {"dev-clean": 1})
    clash = _run(work, "--dl-dir", str(other), "--no-download")
    assert clash.returncode != 0 and "was prepared from" in clash.stderr
