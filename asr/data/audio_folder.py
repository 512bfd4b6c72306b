"""Decoding inputs from a folder of audio files: one cut per file, with a LibriSpeech transcript where there is one."""

from __future__ import annotations

import logging
from pathlib import Path

from lhotse import CutSet

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".flac", ".wav", ".mp3", ".ogg", ".opus")


def librispeech_transcripts(folder: Path) -> dict[str, str]:
    """Utterance id -> text of every LibriSpeech `.trans.txt` under `folder` (recursively)."""
    texts = {}
    for trans in folder.rglob("*.trans.txt"):
        for line in trans.read_text(errors="replace").splitlines():
            parts = line.strip().split(maxsplit=1)
            if parts:
                texts[parts[0]] = parts[1] if len(parts) > 1 else ""
    return texts


def audio_folder_cuts(folder: Path) -> CutSet:
    """One cut per audio file under `folder` (recursively), with the text of a LibriSpeech `.trans.txt` if any."""
    from lhotse import Recording, SupervisionSegment
    from lhotse.cut import MonoCut

    texts = librispeech_transcripts(folder)
    cuts = []
    for audio in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        try:
            rec = Recording.from_file(audio)
        except Exception as e:
            log.warning("skipping unreadable audio %s: %s", audio, e)
            continue
        sup = SupervisionSegment(id=rec.id, recording_id=rec.id, start=0.0, duration=rec.duration,
                                 text=texts.get(rec.id, ""))
        cuts.append(MonoCut(id=rec.id, start=0.0, duration=rec.duration, channel=0, recording=rec,
                            supervisions=[sup]))
    if not cuts:
        raise FileNotFoundError(f"no readable audio file ({', '.join(AUDIO_SUFFIXES)}) under {folder}")
    return CutSet.from_cuts(cuts)
