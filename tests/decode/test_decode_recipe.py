"""recipes/librispeech/decode.py end to end on a LibriSpeech-layout folder, checked against asr-transcribe (text,
and the word times of decode.ctm against asr-transcribe --format ctm)."""

import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from asr.decode.formats import parse_ctm
from asr.decode.transcribe import main as transcribe
from asr.metrics.wer import Result, compute_wer
from tests.decode.decode_fakes import make_exp_dir, tone

DECODE = Path(__file__).resolve().parents[2] / "recipes" / "librispeech" / "decode.py"
REFS = {"19-198-0000": "THE CAT SAT", "19-198-0001": "A DOG RAN IN THE PARK", "19-198-0002": "HELLO"}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["greedy", "modified_beam_search"])
def test_decode_folder(tmp_path: Path, capsys, method: str):
    exp = make_exp_dir(tmp_path)
    chapter = tmp_path / "test-mini" / "19" / "198"
    chapter.mkdir(parents=True)
    for i, utt in enumerate(REFS):
        sf.write(chapter / f"{utt}.flac", tone(1.0 + 0.2 * i, 16000, freq=300.0 + 150 * i)[:, 0], 16000)
    (chapter / "19-198.trans.txt").write_text("".join(f"{u} {t}\n" for u, t in REFS.items()))

    # one cut per batch (max_duration below two cuts), so each utterance is encoded alone, as asr-transcribe does
    proc = subprocess.run(
        [sys.executable, str(DECODE), f"exp_dir={exp}", f"test_dirs=[{tmp_path / 'test-mini'}]", "device=cpu",
         f"decode={method}", "max_duration=1.5", "ctm=true"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test-mini" in proc.stdout and "RTF" in proc.stdout

    out = exp / method
    recogs = (out / f"recogs-test-mini-{method}.txt").read_text().splitlines()
    assert len(recogs) == 2 * len(REFS)
    errs = (out / f"errs-test-mini-{method}.txt").read_text()
    summary = (out / f"wer-summary-test-mini-{method}.txt").read_text().splitlines()
    assert summary[0] == "settings\tWER" and summary[1].startswith(method)

    files = sorted(chapter.glob("*.flac"))
    assert transcribe(["--exp-dir", str(exp), "--method", method, *map(str, files)]) == 0
    hyps = {Path(line.split("\t")[0]).stem: line.split("\t")[1] for line in capsys.readouterr().out.splitlines()}
    want = compute_wer([Result(u, REFS[u].split(), hyps[u].split()) for u in REFS])
    assert errs.startswith(f"%WER {want.wer:.2f} [ {want.errors} / {want.ref_words},")
    for u in REFS:
        assert f"{u}:\thyp={hyps[u].split()}" in recogs

    # decode.ctm: the same words and times as asr-transcribe's (cut id = file name here), well-formed NIST CTM
    ctm = parse_ctm((out / f"ctm-test-mini-{method}.ctm").read_text())
    assert {r.file for r in ctm} <= set(REFS)
    for u in REFS:
        assert [r.word for r in ctm if r.file == u] == hyps[u].split()
    assert transcribe(["--exp-dir", str(exp), "--method", method, "--format", "ctm", *map(str, files)]) == 0
    assert [r[:-1] for r in parse_ctm(capsys.readouterr().out)] == [r[:-1] for r in ctm]


@pytest.mark.slow
def test_decode_test_set_from_manifest(tmp_path: Path):
    """test_sets by name: cuts read from <manifest_dir>/librispeech_cuts_<set>.jsonl.gz (features on the fly)."""
    from asr.data.audio_folder import audio_folder_cuts
    from asr.data.prepare import manifest_name

    exp = make_exp_dir(tmp_path)
    chapter = tmp_path / "audio" / "19" / "198"
    chapter.mkdir(parents=True)
    for i, utt in enumerate(REFS):
        sf.write(chapter / f"{utt}.flac", tone(1.0 + 0.2 * i, 16000, freq=300.0 + 150 * i)[:, 0], 16000)
    (chapter / "19-198.trans.txt").write_text("".join(f"{u} {t}\n" for u, t in REFS.items()))
    manifests = tmp_path / "fbank"
    manifests.mkdir()
    audio_folder_cuts(tmp_path / "audio").to_file(manifests / manifest_name("cuts", "test-mini"))

    proc = subprocess.run(
        [sys.executable, str(DECODE), f"exp_dir={exp}", "test_sets=[test-mini,test-absent]", "device=cpu",
         f"manifest_dir={manifests}", "on_the_fly_feats=true"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    recogs = (exp / "greedy" / "recogs-test-mini-greedy.txt").read_text().splitlines()
    assert [line.split(":")[0] for line in recogs[::2]] == sorted(REFS)
    assert not (exp / "greedy" / "recogs-test-absent-greedy.txt").exists()  # missing set: skipped, logged
