"""Reader of Kaldi data directories: wav.scp (files or `cmd |` pipes), text, optional segments and utt2spk.

    <dir>/wav.scp    <recording-id> <path>            or   <recording-id> <command writing audio> |
    <dir>/text       <utterance-id> <transcript>      (a line with only the id: empty transcript)
    <dir>/segments   <utterance-id> <recording-id> <start> <end>   (optional; end -1: to the end)
    <dir>/utt2spk    <utterance-id> <speaker-id>      (optional)

Without `segments` each recording is one utterance with the recording's id. A folder holding wav.scp is one set,
"all"; a folder whose subfolders hold wav.scp files (data/train, data/dev, data/test) is one set per subfolder.
Relative paths and pipes are taken from the recipe folder, as Kaldi recipes write them: the folder holding
`data/` for a data dir `.../data/<name>`, else the data dir's parent.
Lines that cannot be parsed are skipped as malformed, with file and line in the report.
"""

from __future__ import annotations

from pathlib import Path

from asr.data.importers.entries import (BAD_ENCODING, MALFORMED, NO_AUDIO, NO_TRANSCRIPT, AudioRef, Entry, RawSet)


def _lines(path: Path, raw: RawSet):
    """(line number, stripped line) of a Kaldi table, skipping blank lines; undecodable lines are counted."""
    for no, b in enumerate(path.read_bytes().splitlines(), 1):
        try:
            line = b.decode("utf-8").strip()
        except UnicodeDecodeError:
            raw.skipped.skip(BAD_ENCODING, f"{path}:{no}")
            continue
        if line:
            yield no, line


def _table(path: Path, raw: RawSet, min_fields: int = 2) -> dict[str, tuple[str, str]]:
    """id -> (rest of the line, file:line) of a Kaldi table; the first of repeated ids wins (later ones skipped)."""
    out: dict[str, tuple[str, str]] = {}
    for no, line in _lines(path, raw):
        parts = line.split(maxsplit=1)
        where = f"{path}:{no}"
        if len(parts) < min_fields:
            raw.skipped.skip(MALFORMED, f"{where}: {line[:80]!r}")
        elif parts[0] in out:
            raw.skipped.skip(MALFORMED, f"{where}: repeated id {parts[0]!r}")
        else:
            out[parts[0]] = (parts[1] if len(parts) > 1 else "", where)
    return out


def _wav_ref(value: str, where: str, cwd: Path) -> AudioRef:
    value = value.strip()
    if value.endswith("|"):
        return AudioRef("command", f"cd {_quote(cwd)} && {value[:-1].strip()}", where)
    path = Path(value)
    return AudioRef("file", str(path if path.is_absolute() else cwd / path), where)


def _quote(path: Path) -> str:
    import shlex

    return shlex.quote(str(path))


def read_data_dir(name: str, data_dir: Path) -> RawSet:
    raw = RawSet(name)
    for required in ("wav.scp", "text"):
        if not (data_dir / required).is_file():
            raise FileNotFoundError(f"{data_dir}: no {required} (a Kaldi data directory needs wav.scp and text)")
    d = data_dir.resolve()
    cwd = d.parent.parent if d.parent.name == "data" else d.parent
    wavs = _table(data_dir / "wav.scp", raw)
    texts = _table(data_dir / "text", raw, min_fields=1)
    spk = _table(data_dir / "utt2spk", raw) if (data_dir / "utt2spk").is_file() else {}
    raw.audio = {rid: _wav_ref(v, where, cwd) for rid, (v, where) in wavs.items()}
    listed: dict[str, tuple[str, float, float | None, str]] = {}  # utt -> (recording, start, duration, where)
    dropped: set[str] = set()  # utterances whose segment line was skipped: their text line is not counted again
    mentioned: set[str] = set()  # recordings named by a segment line, usable or not
    if (data_dir / "segments").is_file():
        for uid, (rest, where) in _table(data_dir / "segments", raw).items():
            f = rest.split()
            mentioned.update(f[:1])
            try:
                start, end = float(f[1]), float(f[2])
            except (IndexError, ValueError):
                raw.skipped.skip(MALFORMED, f"{where}: {uid} {rest[:80]!r}")
                dropped.add(uid)
                continue
            if len(f) != 3 or (end != -1 and end <= start) or start < 0:
                raw.skipped.skip(MALFORMED, f"{where}: {uid} {rest[:80]!r}")
                dropped.add(uid)
                continue
            if f[0] not in wavs:
                raw.skipped.skip(NO_AUDIO, f"{where}: recording {f[0]!r} not in wav.scp")
                dropped.add(uid)
                continue
            listed[uid] = (f[0], start, None if end == -1 else end - start, where)
        for rid, (_, where) in wavs.items():
            if rid not in mentioned:
                raw.skipped.skip(NO_TRANSCRIPT, f"{where}: recording {rid!r} has no segment")
    else:
        listed = {rid: (rid, 0.0, None, where) for rid, (_, where) in wavs.items()}
    for uid, (rid, start, duration, where) in listed.items():
        text = texts[uid][0] if uid in texts else None
        speaker = spk[uid][0].strip() if uid in spk else None
        raw.entries.append(Entry(uid, rid, text, speaker, start, duration,
                                 where=texts[uid][1] if uid in texts else where))
    for uid, (_, where) in texts.items():
        if uid not in listed and uid not in dropped:
            raw.skipped.skip(NO_AUDIO, f"{where}: utterance {uid!r} in neither wav.scp nor segments")
    return raw


def read_kaldi(corpus: Path) -> list[RawSet]:
    """One set ("all") for a data directory, or one per subfolder holding a wav.scp."""
    if (corpus / "wav.scp").is_file():
        return [read_data_dir("all", corpus)]
    subdirs = sorted(p.parent for p in corpus.glob("*/wav.scp")) if corpus.is_dir() else []
    if not subdirs:
        raise FileNotFoundError(f"no Kaldi data directory (wav.scp) in {corpus} or its subfolders")
    return [read_data_dir(p.name, p) for p in subdirs]
