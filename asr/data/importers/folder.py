"""Readers of the two simplest layouts: a folder of audio files with a transcript beside each, and a TSV/CSV list.

Folder: `a.wav` + `a.txt` (UTF-8; lines joined by spaces), any depth, any of AUDIO_SUFFIXES. The utterance id is
the path below the set's folder without suffix, `/` written `_`. Speaker: the first folder below the set's folder
(`spk1/a.wav` -> spk1; files directly in it have none), or none with speaker_from="none". When every audio file
lies under a top-level folder named train*, dev*/valid*, test*/eval*, those folders are the corpus's sets;
otherwise the corpus is one set, "all", split later.

Table: one `.tsv` (tab) or `.csv` (comma, quoted as csv writes it) file, rows `path<sep>text[<sep>speaker]`, with
or without a header row (recognised when its first field is one of HEADER_PATH; columns are then found by name:
HEADER_TEXT, HEADER_SPEAKER). Relative paths are relative to the table's folder. A folder of tables is one set per
table, named after it (train.tsv, dev.tsv, test.tsv).
"""

from __future__ import annotations

import csv
from pathlib import Path

from asr.data.importers.audio import AUDIO_SUFFIXES
from asr.data.importers.entries import (BAD_ENCODING, MALFORMED, NO_AUDIO, AudioRef, Entry, RawSet, role_of)

HEADER_PATH = ("path", "audio", "audio_path", "audio_filepath", "file", "filename", "wav", "wav_path")
HEADER_TEXT = ("text", "transcript", "transcription", "sentence", "normalized_text")
HEADER_SPEAKER = ("speaker", "speaker_id", "spk", "client_id")
TABLE_SUFFIXES = (".tsv", ".csv")


def _utt_id(rel: Path) -> str:
    return "_".join(rel.with_suffix("").parts)


def _read_text(path: Path, raw: RawSet) -> str | None | bool:
    """The transcript in `path`; False when it cannot be decoded (already counted)."""
    try:
        return " ".join(path.read_bytes().decode("utf-8-sig").split())
    except UnicodeDecodeError:
        raw.skipped.skip(BAD_ENCODING, path)
        return False


def _scan_folder(name: str, root: Path, speaker_from: str) -> RawSet:
    raw = RawSet(name)
    audio = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
    with_audio = set()
    for path in audio:
        rel = path.relative_to(root)
        uid = _utt_id(rel)
        trans = path.with_suffix(".txt")
        with_audio.add(trans)
        text = _read_text(trans, raw) if trans.is_file() else None
        if text is False:
            continue
        speaker = rel.parts[0] if speaker_from == "dir" and len(rel.parts) > 1 else None
        raw.entries.append(Entry(uid, uid, text, speaker, where=str(path)))
        raw.audio.setdefault(uid, AudioRef("file", str(path), str(path)))
    for trans in sorted(root.rglob("*.txt")):
        if trans not in with_audio:
            raw.skipped.skip(NO_AUDIO, trans)
    return raw


def read_folder(corpus: Path, speaker_from: str = "dir") -> list[RawSet]:
    """The sets of a folder of audio files with transcripts beside them (see the module docstring)."""
    if not corpus.is_dir():
        raise FileNotFoundError(f"no folder {corpus}")
    if speaker_from not in ("dir", "none"):
        raise ValueError(f"speaker_from={speaker_from!r}, expected dir or none")
    subdirs = sorted(p for p in corpus.iterdir() if p.is_dir())
    named = [p for p in subdirs if role_of(p.name)]
    loose = [p for p in corpus.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES
             and not any(p.is_relative_to(d) for d in named)]
    if named and not loose:
        return [_scan_folder(p.name, p, speaker_from) for p in named]
    return [_scan_folder("all", corpus, speaker_from)]


def _columns(header: list[str], where: str) -> tuple[int, int, int | None]:
    names = [h.strip().lower() for h in header]

    def find(options: tuple[str, ...]) -> int | None:
        return next((i for i, n in enumerate(names) if n in options), None)

    path, text, speaker = find(HEADER_PATH), find(HEADER_TEXT), find(HEADER_SPEAKER)
    if path is None or text is None:
        raise ValueError(f"{where}: header {header!r} names no text column (one of {', '.join(HEADER_TEXT)})")
    return path, text, speaker


def _read_table(name: str, table: Path) -> RawSet:
    raw = RawSet(name)
    delimiter = "\t" if table.suffix.lower() == ".tsv" else ","
    try:
        lines = table.read_bytes().decode("utf-8-sig").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{table}: not UTF-8 ({e})") from e
    rows = list(csv.reader(lines, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t"
                           else csv.QUOTE_MINIMAL))
    cols: tuple[int, int, int | None] = (0, 1, 2)
    start = 0
    if rows and rows[0] and rows[0][0].strip().lower() in HEADER_PATH:
        cols = _columns(rows[0], f"{table}:1")
        start = 1
    p_col, t_col, s_col = cols
    for line_no, row in enumerate(rows[start:], start + 1):
        where = f"{table}:{line_no}"
        if not row or not any(f.strip() for f in row):
            continue
        if len(row) <= p_col or not row[p_col].strip():
            raw.skipped.skip(MALFORMED, f"{where}: {row!r}")
            continue
        path = Path(row[p_col].strip())
        if not path.is_absolute():
            path = table.parent / path
        text = row[t_col].strip() if t_col < len(row) else None  # no text column: no transcript
        speaker = (row[s_col].strip() or None) if s_col is not None and s_col < len(row) else None
        try:
            rel = path.relative_to(table.parent)
        except ValueError:
            rel = Path(*path.parts[1:])
        uid = _utt_id(rel)
        if not path.is_file():
            raw.skipped.skip(NO_AUDIO, f"{where} ({path})")
            continue
        raw.entries.append(Entry(uid, uid, text, speaker, where=where))
        raw.audio.setdefault(uid, AudioRef("file", str(path), where))
    return raw


def read_table(corpus: Path) -> list[RawSet]:
    """The sets of one TSV/CSV file ("all") or of a folder of them (one per file, named after it)."""
    if corpus.is_file():
        if corpus.suffix.lower() not in TABLE_SUFFIXES:
            raise ValueError(f"{corpus}: expected a .tsv or .csv file")
        return [_read_table("all", corpus)]
    if not corpus.is_dir():
        raise FileNotFoundError(f"no file or folder {corpus}")
    tables = sorted(p for p in corpus.iterdir() if p.suffix.lower() in TABLE_SUFFIXES and p.is_file())
    if not tables:
        raise FileNotFoundError(f"no .tsv or .csv file in {corpus}")
    return [_read_table(p.stem, p) for p in tables]
