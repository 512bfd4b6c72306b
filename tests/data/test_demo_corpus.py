"""scripts/make_demo_corpus.py at a tiny size: LibriSpeech layout, determinism, held-out eval sentences."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from asr.data.prepare import find_subsets, scan_subset

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_demo_corpus.py"
pytestmark = pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed (scripts/install_tts.sh)")


def _make(out: Path) -> None:
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), "--seed", "0", "--train-minutes", "0.4",
           "--eval-minutes", "0.15", "--jobs", "2"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)


def _texts(root: Path, subset: str) -> dict[str, str]:
    out = {}
    for trans in (root / subset).rglob("*.trans.txt"):
        for line in trans.read_text().splitlines():
            uid, text = line.split(" ", 1)
            out[uid] = text
    return out


@pytest.mark.slow  # two syntheses of a tiny corpus: 10-30 s on 2 busy cores
def test_tiny_demo_corpus(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _make(a)
    _make(b)
    root = a / "LibriSpeech"
    assert find_subsets(root) == ["dev-clean", "test-clean", "train-clean-100"]
    assert (root / "SPEAKERS.TXT").read_text().startswith(";ID")
    texts = {s: _texts(root, s) for s in find_subsets(root)}
    for subset, utts in texts.items():
        recs, sups, skipped = scan_subset(root / subset)
        assert not skipped.counts and len(recs) == len(utts) > 0
        assert sum(r.duration for r in recs) >= (24 if subset.startswith("train") else 9)
        for r in list(recs)[:3]:
            info = sf.info(r.sources[0].source)
            assert info.samplerate == 16000 and info.channels == 1 and info.format == "FLAC"
        for uid, text in utts.items():
            spk, chapter, _ = uid.split("-")
            assert (root / subset / spk / chapter / f"{uid}.flac").is_file()
            assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ' ") and text == " ".join(text.split())
    train = set(texts["train-clean-100"].values())
    assert not train & set(texts["dev-clean"].values()) and not train & set(texts["test-clean"].values())
    # deterministic: the same seed gives the same transcripts and the same audio
    assert texts == {s: _texts(b / "LibriSpeech", s) for s in texts}
    for uid in list(texts["train-clean-100"])[:5]:
        spk, chapter, _ = uid.split("-")
        rel = Path("LibriSpeech/train-clean-100") / spk / chapter / f"{uid}.flac"
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
