"""Folder and TSV/CSV imports: exactly the good items kept, each kind of bad input counted, audio decodes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from lhotse import load_manifest

from asr.data.importers import import_corpus, read_corpus
from asr.data.importers.entries import (BAD_AUDIO, BAD_ENCODING, DIGITS, DUPLICATE, EMPTY_AUDIO, EMPTY_TRANSCRIPT,
                                        MULTICHANNEL, NO_AUDIO, NO_TRANSCRIPT, TOO_LONG, TOO_SHORT)

from importer_fixtures import report_of, write_garbage, write_tone

ROOT = Path(__file__).resolve().parents[3]

# Good files: every format, several rates, one stereo file; their expected kept duration and normalised text.
GOOD = {  # rel path: (seconds, rate, channels, raw text, expected text)
    "spk1/a.wav": (1.0, 16000, 1, "Hello, world!", "HELLO WORLD"),
    "spk1/b.flac": (1.5, 8000, 1, "don't stop", "DON'T STOP"),
    "spk2/c.mp3": (2.0, 44100, 1, "it costs 5 dollars", "IT COSTS 5 DOLLARS"),
    "spk2/d.ogg": (1.2, 22050, 1, "«Quoted» text\nover two lines", "QUOTED TEXT OVER TWO LINES"),
    "spk3/e.wav": (0.8, 48000, 2, "stereo file", "STEREO FILE"),
    "f.flac": (2.5, 16000, 1, "no speaker folder", "NO SPEAKER FOLDER"),
}


def make_folder_corpus(root):
    for i, (rel, (sec, sr, ch, raw, _)) in enumerate(GOOD.items()):
        write_tone(root / rel, sec, sr, ch, seed=i)
        (root / rel).with_suffix(".txt").write_text(raw)
    write_garbage(root / "spk1" / "broken.wav")  # unreadable audio
    (root / "spk1" / "broken.txt").write_text("broken audio")
    (root / "spk2" / "zero.wav").write_bytes(b"")  # zero-length file
    (root / "spk2" / "zero.txt").write_text("zero bytes")
    write_tone(root / "spk3" / "empty.wav", 1.0)  # empty transcript (only punctuation and spaces)
    (root / "spk3" / "empty.txt").write_text(" ... !\n")
    write_tone(root / "spk3" / "missing.wav", 1.0)  # no transcript file
    write_tone(root / "spk1" / "long.wav", 5.0)  # longer than 4 s
    (root / "spk1" / "long.txt").write_text("too long")
    write_tone(root / "spk2" / "short.flac", 0.2)  # shorter than 0.5 s
    (root / "spk2" / "short.txt").write_text("too short")
    (root / "spk2" / "orphan.txt").write_text("a transcript without audio")
    write_tone(root / "spk3" / "latin1.wav", 1.0)
    (root / "spk3" / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    return {BAD_AUDIO: 1, EMPTY_AUDIO: 1, EMPTY_TRANSCRIPT: 1, NO_TRANSCRIPT: 1, TOO_LONG: 1, TOO_SHORT: 1,
            NO_AUDIO: 1, BAD_ENCODING: 1}


def _uid(rel: str) -> str:
    return rel.rsplit(".", 1)[0].replace("/", "_")


def check_manifests(out, set_name="train"):
    recs = load_manifest(out / f"librispeech_recordings_{set_name}.jsonl.gz")
    sups = load_manifest(out / f"librispeech_supervisions_{set_name}.jsonl.gz")
    assert sorted(s.id for s in sups) == sorted(_uid(r) for r in GOOD)
    by_id = {s.id: s for s in sups}
    for rel, (sec, sr, ch, _, text) in GOOD.items():
        s, r = by_id[_uid(rel)], recs[_uid(rel)]
        assert s.text == text
        assert s.speaker == (rel.split("/")[0] if "/" in rel else None)
        assert r.sampling_rate == 16000 and r.num_channels == 1
        audio = r.load_audio()  # decodes, resampled, mono
        assert audio.shape[0] == 1
        tol = 0.06 if rel.endswith(".mp3") else 1e-3  # mp3 frames pad the end
        assert r.duration == pytest.approx(sec, abs=tol), rel
        assert audio.shape[1] / 16000 == pytest.approx(r.duration, abs=2e-3), rel
        assert s.duration == pytest.approx(r.duration, abs=1e-6) and s.start == 0
    return recs, sups


def test_folder_import_keeps_exactly_the_good_files(tmp_path, cfg):
    corpus = tmp_path / "corpus"
    expected_skips = make_folder_corpus(corpus)
    out = tmp_path / "manifests"
    report = import_corpus(read_corpus("folder", corpus, out), out, cfg, fmt="folder", corpus=str(corpus))
    check_manifests(out)
    assert report["read"]["all"]["skipped"] == expected_skips
    assert report["kept_total"] == len(GOOD)
    assert report_of(out) == report
    text = (out / "import_report.txt").read_text()
    for reason in expected_skips:
        assert reason in text
    assert "spk3/e.wav" not in str(list((out / "audio").rglob("*")))  # the stereo copy is named by id
    assert list((out / "audio").rglob("spk3_e.flac"))


def test_folder_with_named_sets(tmp_path, cfg):
    for name, n in (("train", 4), ("dev", 2), ("test", 2)):
        for i in range(n):
            write_tone(tmp_path / "c" / name / f"s{i % 2}" / f"{name}{i}.wav", 1.0, seed=i)
            (tmp_path / "c" / name / f"s{i % 2}" / f"{name}{i}.txt").write_text(f"utterance {name}")
    out = tmp_path / "m"
    report = import_corpus(read_corpus("folder", tmp_path / "c", out), out, cfg)
    assert {n: s["utterances"] for n, s in report["sets"].items()} == {"train": 4, "dev": 2, "test": 2}
    assert report["split"] is None


@pytest.mark.parametrize("suffix", [".tsv", ".csv"])
def test_table_import(tmp_path, cfg, suffix):
    corpus = tmp_path / "corpus"
    make_folder_corpus(corpus)
    rows = [(rel, raw.replace("\n", " "), rel.split("/")[0] if "/" in rel else "")
            for rel, (*_, raw, _) in GOOD.items()]
    rows += [("spk1/broken.wav", "broken", "spk1"), ("spk2/zero.wav", "zero", "spk2"),
             ("spk3/empty.wav", " ", "spk3"), ("spk1/long.wav", "long", "spk1"), ("spk2/short.flac", "short", "spk2"),
             ("spk9/nowhere.wav", "no such file", "spk9")]
    table = corpus / f"list{suffix}"
    with open(table, "w", newline="") as f:
        w = csv.writer(f, delimiter="\t" if suffix == ".tsv" else ",")
        w.writerow(["path", "text", "speaker"])
        w.writerows(rows)
        w.writerow(["spk3/missing.wav"])  # no text column: missing transcript
    out = tmp_path / "manifests"
    report = import_corpus(read_corpus("tsv", table, out), out, cfg)
    check_manifests(out)
    assert report["read"]["all"]["skipped"] == {BAD_AUDIO: 1, EMPTY_AUDIO: 1, EMPTY_TRANSCRIPT: 1, TOO_LONG: 1,
                                                TOO_SHORT: 1, NO_AUDIO: 1, NO_TRANSCRIPT: 1}


def test_cli_help_and_list_sets(tmp_path, cfg):
    corpus = tmp_path / "corpus"
    make_folder_corpus(corpus)
    out = tmp_path / "m"
    help_text = subprocess.run([sys.executable, "-m", "asr.data.importers", "--help"], capture_output=True,
                               text=True, check=True).stdout
    assert "--format" in help_text and "kaldi" in help_text
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "asr.data.importers", "--format", "folder", "--corpus", "corpus",
                           "--out", "m", "--max-duration", "4", "--dev-fraction", "0.2",
                           "--test-fraction", "0.2", "--case", "lower"], capture_output=True, text=True,
                          cwd=tmp_path, env=env)  # relative paths in, absolute audio paths out
    assert proc.returncode == 0, proc.stderr[-3000:]
    recs = load_manifest(out / "librispeech_recordings_train.jsonl.gz")
    assert all(Path(r.sources[0].source).is_absolute() for r in recs)
    assert "written sets:" in proc.stdout
    report = report_of(out)
    assert report["settings"]["text"]["case"] == "lower"
    listed = {}
    for role in ("train", "dev", "test"):
        listed[role] = subprocess.run([sys.executable, "-m", "asr.data.importers", "--out", str(out), "--list-sets",
                                       role], capture_output=True, text=True, check=True).stdout.strip()
    assert listed == {"train": "train", "dev": "dev", "test": "test"}
    bad = subprocess.run([sys.executable, "-m", "asr.data.importers", "--format", "kaldi", "--corpus", str(corpus),
                          "--out", str(tmp_path / "m2")], capture_output=True, text=True)
    assert bad.returncode != 0 and "no Kaldi data directory" in bad.stderr and "Traceback" not in bad.stderr


def test_numbers_skip_duplicates_and_multichannel_skip(tmp_path, cfg):
    corpus = tmp_path / "c"
    make_folder_corpus(corpus)
    write_tone(corpus / "spk1" / "a.flac", 1.0)  # same id as spk1/a.wav: a duplicate
    cfg.text.numbers = "skip"
    cfg.multichannel = "skip"
    out = tmp_path / "m"
    report = import_corpus(read_corpus("folder", corpus, out), out, cfg)
    skipped = report["read"]["all"]["skipped"]
    assert skipped[DIGITS] == 1 and skipped[MULTICHANNEL] == 1 and skipped[DUPLICATE] == 1
    sups = load_manifest(out / "librispeech_supervisions_train.jsonl.gz")
    assert sorted(s.id for s in sups) == sorted(_uid(r) for r in GOOD if r not in ("spk2/c.mp3", "spk3/e.wav"))
    assert not (out / "audio").exists()


def test_speaker_from_none_and_an_unsplittable_set_name(tmp_path, cfg):
    corpus = tmp_path / "c"
    make_folder_corpus(corpus)
    out = tmp_path / "m"
    import_corpus(read_corpus("folder", corpus, out, speaker_from="none"), out, cfg)
    assert all(s.speaker is None for s in load_manifest(out / "librispeech_supervisions_train.jsonl.gz"))
    for name in ("train", "other"):
        write_tone(tmp_path / "k" / name / f"{name}.wav", 1.0)
        (tmp_path / "k" / name / f"{name}.txt").write_text("x")
    raw = read_corpus("folder", tmp_path / "k", out)  # "other" has no role: the corpus is one set
    assert [r.name for r in raw] == ["all"]
    tsv = tmp_path / "t"
    tsv.mkdir()
    for name in ("train", "other"):
        (tsv / f"{name}.tsv").write_text(f"{tmp_path}/k/train/train.wav\thello\n")
    with pytest.raises(ValueError, match="other"):
        import_corpus(read_corpus("tsv", tsv, tmp_path / "m2"), tmp_path / "m2", cfg)
