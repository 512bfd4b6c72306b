"""What a corpus reader yields before any audio is opened: utterance entries, audio references and early skips.

Every reader (folder, TSV, Kaldi, lhotse) turns its layout into `RawSet`s; `asr.data.importers.build` then opens
the audio once per recording, applies the text and duration rules and writes the manifests. The skip reasons
are shared by all readers (and, where the meaning is the same, with the LibriSpeech path of asr.data.prepare).
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from lhotse import Recording

from asr.data.prepare import BAD_AUDIO, EMPTY_AUDIO, MAX_WARNINGS, NO_AUDIO, NO_TRANSCRIPT

log = logging.getLogger(__name__)

# Skip reasons (the keys of the skip counts in the report).
NO_AUDIO = NO_AUDIO  # a transcript (file, row, line) whose audio does not exist
NO_TRANSCRIPT = NO_TRANSCRIPT  # audio (file, wav.scp entry, segment) without a transcript
EMPTY_AUDIO = EMPTY_AUDIO
BAD_AUDIO = BAD_AUDIO
EMPTY_TRANSCRIPT = "empty transcript"  # empty, or nothing left after normalisation
BAD_ENCODING = "transcript not UTF-8"
DIGITS = "transcript with digits (numbers=skip)"
TOO_SHORT = "shorter than min_duration"
TOO_LONG = "longer than max_duration"
BAD_SEGMENT = "segment outside its recording"
MALFORMED = "malformed line"
DUPLICATE = "duplicate utterance id"
MULTICHANNEL = "multi-channel audio (multichannel=skip)"


@dataclass(frozen=True)
class AudioRef:
    """Where a recording's audio comes from: a file, a shell command writing audio to stdout, or a lhotse Recording."""

    kind: Literal["file", "command", "recording"]
    value: str | Recording
    where: str = ""  # file:line that named it, for messages


@dataclass
class Entry:
    """One utterance as the corpus lists it; `text` None means the corpus has no transcript for it."""

    id: str
    recording_id: str
    text: str | None
    speaker: str | None = None
    start: float = 0.0
    duration: float | None = None  # None: to the end of the recording
    where: str = ""  # file:line (or file) that listed it


class SkipLog:
    """Skipped items of one set: counts by reason, and the first few items of each reason for the report."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    def skip(self, reason: str, item: object) -> None:
        self.counts[reason] += 1
        if self.counts[reason] <= MAX_WARNINGS:
            self.examples.setdefault(reason, []).append(str(item))
            log.warning("%s: skipped (%s): %s", self.what, reason, item)
        elif self.counts[reason] == MAX_WARNINGS + 1:
            log.warning("%s: more items skipped for %s; only counting from now on", self.what, reason)


@dataclass
class RawSet:
    """One set of a corpus as read: entries, the audio they point at, and what was already skipped."""

    name: str
    entries: list[Entry] = field(default_factory=list)
    audio: dict[str, AudioRef] = field(default_factory=dict)
    skipped: SkipLog | None = None

    def __post_init__(self) -> None:
        if self.skipped is None:
            self.skipped = SkipLog(self.name)


def dedupe(raw: RawSet) -> None:
    """Keep the first entry of each id; later ones are skipped as duplicates (nothing silently overwritten)."""
    seen: set[str] = set()
    kept = []
    for e in raw.entries:
        if e.id in seen:
            raw.skipped.skip(DUPLICATE, f"{e.where} ({e.id})")
        else:
            seen.add(e.id)
            kept.append(e)
    raw.entries = kept


def role_of(name: str) -> str | None:
    """'train', 'dev' or 'test' for a set name (train*, dev*/valid*/val*, test*/eval*), None when it says none."""
    n = name.lower()
    if n.startswith("train"):
        return "train"
    if n.startswith(("dev", "valid", "val")):
        return "dev"
    if n.startswith(("test", "eval")):
        return "test"
    return None
