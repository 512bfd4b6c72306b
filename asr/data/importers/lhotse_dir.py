"""Reader of existing lhotse data: recording + supervision manifests, cut manifests, or a Shar directory.

A folder of manifests: each `*recordings*.jsonl[.gz]` with the `*supervisions*` file of the same name is one set,
named by what follows `recordings_` (`librispeech_recordings_train-clean-100.jsonl.gz` -> train-clean-100; a bare
`recordings.jsonl.gz` -> all); each `*cuts*.jsonl[.gz]` likewise (its cuts' recordings and supervisions). The
audio of every recording is checked (files exist, the first samples decode) like any other corpus.

A Shar directory (`cuts.000000.jsonl.gz` + `recording.000000.tar`, as `CutSet.to_shar` writes): the audio lives
in the tar files, so each cut's audio is written as a FLAC under <out>/audio/shar/ and the manifests point at it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import soundfile as sf
from lhotse import CutSet, load_manifest_lazy

from asr.data.importers.entries import BAD_AUDIO, MALFORMED, NO_AUDIO, AudioRef, Entry, RawSet

_NAME = re.compile(r"(?:^|_)(recordings|cuts)(?:_(?P<name>.+))?$")


def _set_name(path: Path) -> tuple[str, str] | None:
    """(kind, set name) of a manifest file name, or None when it is not a recordings/cuts manifest."""
    stem = path.name.split(".jsonl")[0]
    m = _NAME.search(stem)
    return (m.group(1), m.group("name") or "all") if m else None


def _entry(sup, where: str, offset: float = 0.0) -> Entry:
    return Entry(sup.id, sup.recording_id, sup.text, sup.speaker, sup.start + offset, sup.duration, where)


def _from_recordings(name: str, rec_path: Path) -> RawSet:
    raw = RawSet(name)
    sup_path = rec_path.with_name(rec_path.name.replace("recordings", "supervisions"))
    if not sup_path.is_file():
        raise FileNotFoundError(f"{rec_path}: no supervision manifest {sup_path.name} beside it")
    recs = {}
    for r in load_manifest_lazy(rec_path):
        if r.id in recs:
            raw.skipped.skip(MALFORMED, f"{rec_path}: repeated recording id {r.id!r}")
        else:
            recs[r.id] = r
    raw.audio = {rid: AudioRef("recording", r, str(rec_path)) for rid, r in recs.items()}
    for sup in load_manifest_lazy(sup_path):
        if sup.recording_id not in recs:
            raw.skipped.skip(NO_AUDIO, f"{sup_path}: {sup.id} (recording {sup.recording_id!r} not in {rec_path.name})")
            continue
        raw.entries.append(_entry(sup, str(sup_path)))
    return raw


def _from_cuts(name: str, cuts_path: Path) -> RawSet:
    raw = RawSet(name)
    for cut in load_manifest_lazy(cuts_path):
        rec = getattr(cut, "recording", None)
        if rec is None:
            raw.skipped.skip(NO_AUDIO, f"{cuts_path}: cut {cut.id} has no recording")
            continue
        raw.audio.setdefault(rec.id, AudioRef("recording", rec, str(cuts_path)))
        for sup in cut.supervisions:  # times relative to the cut: back to the recording's
            raw.entries.append(_entry(sup, f"{cuts_path}: cut {cut.id}", offset=cut.start))
    return raw


def read_manifests(corpus: Path) -> list[RawSet]:
    files = sorted(p for p in corpus.iterdir() if ".jsonl" in p.name and _set_name(p))
    if not files:
        raise FileNotFoundError(f"no *recordings*.jsonl[.gz] or *cuts*.jsonl[.gz] manifest in {corpus}")
    sets, names = [], set()
    for path in files:
        kind, name = _set_name(path)
        if name in names:
            raise ValueError(f"{corpus}: two manifests of set {name!r} ({path.name} and another): keep one")
        names.add(name)
        sets.append(_from_recordings(name, path) if kind == "recordings" else _from_cuts(name, path))
    return sets


def is_shar(corpus: Path) -> bool:
    return corpus.is_dir() and any(corpus.glob("cuts.*.jsonl*"))


def read_shar(corpus: Path, audio_dir: Path) -> list[RawSet]:
    """One set ("all") from a Shar directory; the audio is written to FLAC files in `audio_dir`."""
    raw = RawSet("all")
    audio_dir.mkdir(parents=True, exist_ok=True)
    cuts = CutSet.from_shar(in_dir=corpus)
    for cut in cuts:
        where = f"{corpus}: cut {cut.id}"
        if not cut.has_recording:
            raw.skipped.skip(NO_AUDIO, where)
            continue
        try:
            samples = cut.load_audio()  # (C, N)
        except Exception as e:
            raw.skipped.skip(BAD_AUDIO, f"{where}: {type(e).__name__}")
            continue
        path = audio_dir / f"{cut.id.replace('/', '_')}.flac"
        sf.write(path, np.clip(samples.T, -1.0, 1.0), cut.sampling_rate, subtype="PCM_16")
        rec_id = cut.id
        raw.audio[rec_id] = AudioRef("file", str(path), where)
        for sup in cut.supervisions:
            raw.entries.append(Entry(sup.id, rec_id, sup.text, sup.speaker, sup.start, sup.duration, where))
    return [raw]


