"""Kaldi data directories: files and pipes in wav.scp, segments, utt2spk; bad lines and audio counted."""

from __future__ import annotations

import pytest
from lhotse import CutSet, load_manifest

from asr.data.importers import import_corpus, read_corpus
from asr.data.importers.entries import (BAD_AUDIO, BAD_SEGMENT, EMPTY_TRANSCRIPT, MALFORMED, NO_AUDIO, NO_TRANSCRIPT,
                                        TOO_LONG, TOO_SHORT)

from importer_fixtures import write_garbage, write_tone


def make_kaldi_dir(root):
    """A data dir (in root/data/train, audio in root/audio, paths relative to root as Kaldi recipes write them)."""
    d = root / "data" / "train"
    d.mkdir(parents=True)
    write_tone(root / "audio" / "r1.wav", 1.5, seed=1)
    write_tone(root / "audio" / "r2.flac", 2.0, sr=8000, seed=2)
    write_tone(root / "audio" / "long.wav", 9.0, seed=3)  # cut by segments into utterances
    write_tone(root / "audio" / "r5.wav", 6.0, seed=5)
    write_garbage(root / "audio" / "bad.wav")
    (d / "wav.scp").write_text("\n".join([
        "r1 audio/r1.wav",
        "r2 cat audio/r2.flac |",  # a pipe, relative to root
        "long cat audio/long.wav |",
        "bad audio/bad.wav",
        "fails cat audio/does-not-exist.wav |",  # a failing pipe
        "r5 audio/r5.wav",  # too long (whole recording, no segment... see segments)
        "nosegment audio/r1.wav",  # a recording no segment uses
    ]) + "\n")
    (d / "segments").write_text("\n".join([
        "u1 r1 0.0 -1",
        "u2 r2 0.0 2.0",
        "long-a long 0.0 2.5",
        "long-b long 3.0 5.25",
        "long-c long 6.0 6.2",  # too short
        "long-d long 8.0 9.5",  # beyond the end of the 9 s recording
        "long-e long 4.0",  # malformed
        "long-f long 5.5 8.0",  # no text line: missing transcript
        "ubad bad 0 1",
        "ufail fails 0 1",
        "u5 r5 0 -1",  # 6 s: too long
        "u9 r9 0 1",  # recording not in wav.scp
        "u-empty r1 0.0 1.0",  # its text line has no words
    ]) + "\n")
    (d / "text").write_text("\n".join([
        "u1 hello there",
        "u2 SECOND one",
        "long-a first part",
        "long-b second part",
        "long-c short",
        "long-d beyond",
        "long-e malformed",
        "ubad bad audio",
        "ufail failing pipe",
        "u5 too long",
        "u9 no recording",
        "ghost an utterance nowhere",
        "u-empty",
    ]) + "\n")
    (d / "utt2spk").write_text("u1 A\nu2 B\nlong-a C\nlong-b C\nlong-c C\nlong-f C\n")
    kept = {"u1": (0.0, 1.5, "HELLO THERE", "A"), "u2": (0.0, 2.0, "SECOND ONE", "B"),
            "long-a": (0.0, 2.5, "FIRST PART", "C"), "long-b": (3.0, 2.25, "SECOND PART", "C")}
    skips = {BAD_AUDIO: 2, TOO_SHORT: 1, TOO_LONG: 1, BAD_SEGMENT: 1, MALFORMED: 1, NO_AUDIO: 2, NO_TRANSCRIPT: 2,
             EMPTY_TRANSCRIPT: 1}
    # NO_AUDIO: u9's segment (recording not in wav.scp) and "ghost" (a text line with no segment);
    # NO_TRANSCRIPT: long-f (segment without text) and "nosegment" (a recording without segments)
    return d, kept, skips


def test_kaldi_dir_with_pipes_and_segments(tmp_path, cfg):
    d, kept, skips = make_kaldi_dir(tmp_path)
    out = tmp_path / "m"
    report = import_corpus(read_corpus("kaldi", d, out), out, cfg)
    assert report["read"]["all"]["skipped"] == skips
    sups = {s.id: s for s in load_manifest(out / "librispeech_supervisions_train.jsonl.gz")}
    recs = load_manifest(out / "librispeech_recordings_train.jsonl.gz")
    assert sorted(sups) == sorted(kept)
    for uid, (start, dur, text, spk) in kept.items():
        s = sups[uid]
        assert (s.start, s.text, s.speaker) == (pytest.approx(start), text, spk)
        assert s.duration == pytest.approx(dur, abs=1e-6)
    assert recs["r2"].sources[0].type == "command" and recs["r2"].sampling_rate == 16000
    assert recs["r2"].load_audio().shape == (1, 32000)  # 2 s at 8 kHz through the pipe, resampled
    # One cut per segment, audio of the right length (what asr.data.features makes of segmented manifests).
    cuts = CutSet.from_manifests(recordings=recs, supervisions=load_manifest(
        out / "librispeech_supervisions_train.jsonl.gz")).trim_to_supervisions(keep_overlapping=False)
    lengths = {c.id: c.load_audio().shape[1] for c in cuts}
    assert lengths == {uid: round(dur * 16000) for uid, (_, dur, _, _) in kept.items()}


def test_kaldi_text_without_segments_and_sets(tmp_path, cfg):
    """A folder of data dirs (train, test): dev is split off train by speaker; test kept as it is."""
    for name, n in (("train", 12), ("test", 3)):
        d = tmp_path / "data" / name
        d.mkdir(parents=True)
        scp, text, u2s = [], [], []
        for i in range(n):
            uid = f"{name}-s{i % 4}-{i}"
            write_tone(tmp_path / "wav" / f"{uid}.wav", 1.0, seed=i)
            scp.append(f"{uid} {tmp_path}/wav/{uid}.wav")
            text.append(f"{uid} words of {name}")
            u2s.append(f"{uid} s{i % 4}")
        (d / "wav.scp").write_text("\n".join(scp) + "\n")
        (d / "text").write_text("\n".join(text) + "\n")
        (d / "utt2spk").write_text("\n".join(u2s) + "\n")
    cfg.split.dev_fraction = 0.25
    out = tmp_path / "m"
    report = import_corpus(read_corpus("kaldi", tmp_path / "data", out), out, cfg)
    sets = report["sets"]
    assert set(sets) == {"train", "dev", "test"} and sets["test"]["utterances"] == 3
    assert sets["train"]["utterances"] + sets["dev"]["utterances"] == 12
    assert report["split"]["by"] == "speaker" and report["split"]["from"] == "train"
    train = {s.speaker for s in load_manifest(out / "librispeech_supervisions_train.jsonl.gz")}
    dev = {s.speaker for s in load_manifest(out / "librispeech_supervisions_dev.jsonl.gz")}
    assert dev and train and not train & dev


def test_features_of_segments_are_one_cut_per_utterance(tmp_path, cfg):
    """asr.data.features on segmented manifests: one cut per supervision (named after it), with its own length."""
    from asr.data.features import compute_subset

    d, kept, _ = make_kaldi_dir(tmp_path)
    out = tmp_path / "m"
    import_corpus(read_corpus("kaldi", d, out), out, cfg)
    compute_subset(out, tmp_path / "fbank", "train", num_jobs=1, perturb_speed=False)
    cuts = {c.id: c for c in load_manifest(tmp_path / "fbank" / "librispeech_cuts_train.jsonl.gz")}
    assert sorted(cuts) == sorted(kept)
    for uid, (_, dur, text, _) in kept.items():
        c = cuts[uid]
        assert c.duration == pytest.approx(dur, abs=1e-3) and len(c.supervisions) == 1
        assert c.supervisions[0].text == text
        assert abs(c.load_features().shape[0] - dur * 100) <= 2
