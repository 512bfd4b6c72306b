"""Existing lhotse data: recording/supervision manifests, cut manifests and Shar directories."""

from __future__ import annotations

import pytest
from lhotse import CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet, load_manifest

from asr.data.importers import import_corpus, read_corpus
from asr.data.importers.entries import BAD_AUDIO, EMPTY_TRANSCRIPT, NO_AUDIO, TOO_LONG, TOO_SHORT

from importer_fixtures import write_garbage, write_tone


def _manifests(tmp_path):
    audio = tmp_path / "audio"
    durs = {"a": 1.0, "b": 2.0, "c": 3.5, "long": 6.0}
    recs = [Recording.from_file(write_tone(audio / f"{k}.wav", d, seed=i) and audio / f"{k}.wav", recording_id=k)
            for i, (k, d) in enumerate(durs.items())]
    write_tone(audio / "gone.wav", 1.0)
    recs.append(Recording.from_file(audio / "gone.wav", recording_id="gone"))
    (audio / "gone.wav").unlink()  # listed in the manifest, missing on disk
    write_tone(audio / "bad.wav", 1.0)
    recs.append(Recording.from_file(audio / "bad.wav", recording_id="bad"))
    write_garbage(audio / "bad.wav")  # header was fine when listed, garbage now
    sups = [SupervisionSegment("a", "a", 0, 1.0, text="first one", speaker="x"),
            SupervisionSegment("b1", "b", 0.0, 0.9, text="second, part one", speaker="y"),
            SupervisionSegment("b2", "b", 1.0, 1.0, text="second part two", speaker="y"),
            SupervisionSegment("c", "c", 0.5, 0.3, text="too short", speaker="z"),
            SupervisionSegment("c2", "c", 1.0, 2.5, text="", speaker="z"),
            SupervisionSegment("l", "long", 0, 6.0, text="too long"),
            SupervisionSegment("g", "gone", 0, 1.0, text="gone"),
            SupervisionSegment("x", "bad", 0, 1.0, text="bad"),
            SupervisionSegment("o", "other", 0, 1.0, text="no recording")]
    kept = {"a": (0.0, 1.0, "FIRST ONE"), "b1": (0.0, 0.9, "SECOND PART ONE"), "b2": (1.0, 1.0, "SECOND PART TWO")}
    skips = {TOO_SHORT: 1, EMPTY_TRANSCRIPT: 1, TOO_LONG: 1, NO_AUDIO: 2, BAD_AUDIO: 1}
    return RecordingSet.from_recordings(recs), SupervisionSet.from_segments(sups), kept, skips


def _check(out, kept, name="train"):
    sups = {s.id: s for s in load_manifest(out / f"librispeech_supervisions_{name}.jsonl.gz")}
    recs = load_manifest(out / f"librispeech_recordings_{name}.jsonl.gz")
    assert {k: (s.start, s.duration, s.text) for k, s in sups.items()} == {
        k: (pytest.approx(a), pytest.approx(b), t) for k, (a, b, t) in kept.items()}
    for s in sups.values():
        audio = recs[s.recording_id].load_audio(offset=s.start, duration=s.duration)
        assert audio.shape[1] == round(s.duration * 16000)


def test_recording_and_supervision_manifests(tmp_path, cfg):
    recs, sups, kept, skips = _manifests(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    recs.to_file(src / "mycorpus_recordings_train.jsonl.gz")
    sups.to_file(src / "mycorpus_supervisions_train.jsonl.gz")
    out = tmp_path / "m"
    report = import_corpus(read_corpus("lhotse", src, out), out, cfg)
    assert report["read"]["train"]["skipped"] == skips
    _check(out, kept)


def test_cut_manifest(tmp_path, cfg):
    recs, sups, kept, skips = _manifests(tmp_path)
    cuts = CutSet.from_manifests(recordings=recs, supervisions=sups.filter(lambda s: s.recording_id != "other"))
    cuts = cuts.trim_to_supervisions(keep_overlapping=False)  # supervision times relative to the cuts now
    src = tmp_path / "src"
    src.mkdir()
    cuts.to_file(src / "cuts.jsonl.gz")
    out = tmp_path / "m"
    report = import_corpus(read_corpus("lhotse", src, out), out, cfg)
    skips[NO_AUDIO] -= 1  # the supervision without a recording never became a cut
    assert report["read"]["all"]["skipped"] == skips
    _check(out, kept)


def test_shar_directory(tmp_path, cfg):
    recs, sups, kept, _ = _manifests(tmp_path)
    good = {"a", "b", "c", "long"}
    cuts = CutSet.from_manifests(recordings=recs.filter(lambda r: r.id in good),
                                 supervisions=sups.filter(lambda s: s.recording_id in good))
    shar = tmp_path / "shar"
    shar.mkdir()
    cuts.to_shar(shar, fields={"recording": "flac"}, shard_size=2)
    out = tmp_path / "m"
    report = import_corpus(read_corpus("lhotse", shar, out), out, cfg)
    assert report["read"]["all"]["skipped"] == {TOO_SHORT: 1, EMPTY_TRANSCRIPT: 1, TOO_LONG: 1}
    sups_out = {s.id: s for s in load_manifest(out / "librispeech_supervisions_train.jsonl.gz")}
    assert sorted(sups_out) == sorted(kept)
    recs_out = load_manifest(out / "librispeech_recordings_train.jsonl.gz")
    for s in sups_out.values():
        path = recs_out[s.recording_id].sources[0].source
        assert path.startswith(str(out / "audio" / "shar"))
        audio = recs_out[s.recording_id].load_audio(offset=s.start, duration=s.duration)
        assert audio.shape[1] == round(kept[s.id][1] * 16000)
