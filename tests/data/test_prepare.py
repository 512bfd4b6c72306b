"""Manifests, features and speed perturbation on a tiny corpus; bad input is skipped and counted."""

from __future__ import annotations

import gzip
import json
import shutil

import pytest
from lhotse import load_manifest

from asr.data.features import TRAIN_ALL, compute_subset
from asr.data.prepare import (BAD_AUDIO, EMPTY_AUDIO, NO_AUDIO, NO_TRANSCRIPT, NON_ASCII,
                              prepare_librispeech_manifests)

from tests.data.data_fixtures import make_corpus, write_utt


def test_manifests_match_the_corpus(tiny_corpus, prepared):
    _, utts = tiny_corpus
    for subset, expected in utts.items():
        sups = load_manifest(prepared / "manifests" / f"librispeech_supervisions_{subset}.jsonl.gz")
        recs = load_manifest(prepared / "manifests" / f"librispeech_recordings_{subset}.jsonl.gz")
        assert sorted(s.id for s in sups) == sorted(expected)
        for r in recs:
            assert r.sampling_rate == 16000
            assert r.duration == pytest.approx(expected[r.id], abs=1e-6)
        assert all(s.text and s.text == s.text.upper() for s in sups)


def test_features_dim_80_and_speed_perturbation(tiny_corpus, prepared):
    _, utts = tiny_corpus
    train = {c.id: c for c in load_manifest(prepared / "fbank" / "librispeech_cuts_train-clean-100.jsonl.gz")}
    base = utts["train-clean-100"]
    assert len(train) == 3 * len(base)
    for uid, dur in base.items():
        assert train[uid].duration == pytest.approx(dur, abs=1e-3)
        for factor in (0.9, 1.1):
            cut = train[f"{uid}_sp{factor}"]
            assert cut.duration == pytest.approx(dur / factor, abs=2e-3)
            assert cut.supervisions[0].text == train[uid].supervisions[0].text
    for cut in list(train.values())[:4]:
        feats = cut.load_features()
        assert feats.shape[1] == 80
        assert abs(feats.shape[0] - cut.duration * 100) <= 2
    dev = load_manifest(prepared / "fbank" / "librispeech_cuts_dev-clean.jsonl.gz")
    assert sorted(c.id for c in dev) == sorted(utts["dev-clean"])  # no perturbation outside training


def test_train_all_is_a_shuffle_of_the_train_cuts(prepared):
    with gzip.open(prepared / "fbank" / TRAIN_ALL) as f:
        ids = [json.loads(line)["id"] for line in f]
    train = [c.id for c in load_manifest(prepared / "fbank" / "librispeech_cuts_train-clean-100.jsonl.gz")]
    assert sorted(ids) == sorted(train)
    assert ids != train


def test_bad_input_is_skipped_and_counted(tmp_path, caplog):
    root = tmp_path / "corpus"
    make_corpus(root, {"train-clean-100": 3})
    chapter = root / "LibriSpeech" / "train-clean-100" / "100" / "1000"
    (chapter / "100-1000-0100.flac").write_bytes(b"fLaC this is not a flac file" * 10)  # corrupt
    (chapter / "100-1000-0101.flac").write_bytes(b"")  # zero length
    write_utt(chapter / "100-1000-0102.flac", 1.5, 7)  # audio with no transcript line
    write_utt(chapter / "100-1000-0103.flac", 1.5, 8)  # non-ASCII transcript
    with open(chapter / "100-1000.trans.txt", "a", encoding="utf-8") as f:
        f.write("100-1000-0100 CORRUPT FILE\n100-1000-0101 EMPTY FILE\n100-1000-0199 NO AUDIO HERE\n"
                "100-1000-0103 CAF\u00c9 NA\u00cfVE\n")
    report = prepare_librispeech_manifests(root / "LibriSpeech", tmp_path / "manifests")
    counts = report["train-clean-100"]
    assert counts == {BAD_AUDIO: 1, EMPTY_AUDIO: 1, NO_TRANSCRIPT: 1, NO_AUDIO: 1, NON_ASCII: 1}
    sups = load_manifest(tmp_path / "manifests" / "librispeech_supervisions_train-clean-100.jsonl.gz")
    assert sorted(s.id for s in sups) == [f"100-1000-{i:04d}" for i in range(3)]
    assert "skipped" in caplog.text


def test_undecodable_audio_is_skipped_at_feature_time_and_others_kept(tmp_path):
    """A FLAC whose header reads fine but whose data is cut short: its cuts are dropped, the rest computed."""
    root = tmp_path / "corpus"
    make_corpus(root, {"train-clean-100": 3})
    prepare_librispeech_manifests(root / "LibriSpeech", tmp_path / "manifests")
    flac = root / "LibriSpeech" / "train-clean-100" / "100" / "1000" / "100-1000-0001.flac"
    data = flac.read_bytes()
    flac.write_bytes(data[: len(data) // 3])
    counts = compute_subset(tmp_path / "manifests", tmp_path / "fbank", "train-clean-100")
    cuts = load_manifest(tmp_path / "fbank" / "librispeech_cuts_train-clean-100.jsonl.gz")
    ids = {c.id for c in cuts}
    assert {"100-1000-0000", "100-1000-0002", "100-1000-0000_sp0.9", "100-1000-0002_sp1.1"} <= ids
    assert counts.total() == 9 - len(ids) and counts.total() >= 1
    for c in cuts:
        assert c.load_features().shape[1] == 80


def test_feature_chunks_are_resumed(tmp_path):
    """Finished chunks are not recomputed after an interrupted run: their storage files stay untouched."""
    root = tmp_path / "corpus"
    make_corpus(root, {"dev-clean": 4})
    prepare_librispeech_manifests(root / "LibriSpeech", tmp_path / "manifests")
    from asr.data.features import compute_features, subset_cuts

    cuts = subset_cuts(tmp_path / "manifests", "dev-clean", speed_perturb=False)
    compute_features(cuts, tmp_path / "fbank", "x", chunk_size=2)
    chunk0 = tmp_path / "fbank" / "x_feats" / "feats-0.lca"
    mtime = chunk0.stat().st_mtime_ns
    (tmp_path / "fbank" / "x_feats" / "feats-1.json").unlink()  # as if the run died in chunk 1
    out, _ = compute_features(cuts, tmp_path / "fbank", "x", chunk_size=2)
    assert chunk0.stat().st_mtime_ns == mtime
    assert len(out) == 4 and all(c.load_features().shape[1] == 80 for c in out)


def test_no_subset_is_a_clear_error(tmp_path):
    (tmp_path / "LibriSpeech").mkdir()
    with pytest.raises(FileNotFoundError, match="no LibriSpeech subset"):
        prepare_librispeech_manifests(tmp_path / "LibriSpeech", tmp_path / "m")
    shutil.rmtree(tmp_path / "LibriSpeech")
