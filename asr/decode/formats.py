"""Transcripts with word times, written and read back: JSON Lines, SRT and WebVTT subtitles, NIST CTM.

The writers take any word objects with `.word .start .end .confidence` (seconds; confidence in [0, 1]), such as
asr.decode.words.Word. One transcript is `Transcript(id, text, words)`: `id` is the audio file's path
(`asr-transcribe`) or the utterance id (recipes' decode.py), `text` the recognized text.

    json  JSON Lines, one object per transcript: {"path": id, "text": ..., "words": [{"word", "start", "end",
          "confidence"}]}, times rounded to the millisecond, confidence to 4 decimals, UTF-8 (non-ASCII kept).
    srt   SubRip: numbered cues 1, 2, ... `HH:MM:SS,mmm --> HH:MM:SS,mmm`, the text, a blank line after each.
    vtt   WebVTT: a `WEBVTT` line, then cues as SRT's (numbered too) with `HH:MM:SS.mmm` times and `& < >`
          escaped as the WebVTT spec asks.
    ctm   NIST sclite's time-marked conversation: `<file> <channel> <begin> <duration> <word> <confidence>` a
          line, seconds with 3 decimals, channel `A`; records sorted by file, channel, begin time as sclite wants.
    text  `id<TAB>text` a line (what asr-transcribe printed before word times existed).

Subtitle cues (`cues`): words in time order are grouped greedily; a new cue starts before a word that would make the
cue hold more than `max_words` words, or last longer than `max_seconds` (from the cue's first word's start to this
word's end), or that follows a pause longer than `max_gap` seconds. A word longer than `max_seconds` gets a cue of its
own. A cue never starts at the millisecond the previous one starts (words sharing that start stay in one cue, which
is the only way a cue exceeds the limits), and each cue ends at the latest at the next cue's start: times strictly
increase and cues never overlap. The defaults follow the usual subtitle style guides (see SubtitleConfig).

The parsers (`parse_*` over a string, `read_*` over a file) check each format's rules - well-formed times, start
<= end, starts in order, SRT cue numbers 1, 2, ..., WebVTT's header, CTM's fields - and raise FormatError naming the
file and line.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol, TextIO

from asr.decode.words import Word


FORMATS = ("text", "json", "srt", "vtt", "ctm")


class WordLike(Protocol):
    word: str
    start: float  # seconds
    end: float  # seconds
    confidence: float  # in [0, 1]


class Transcript(NamedTuple):
    """One audio file's (or utterance's) result; a plain (id, text, words) tuple works as well."""

    id: str  # the audio file's path or the utterance id; "path" in JSON Lines, the file field in CTM
    text: str
    words: Sequence[WordLike]


@dataclass
class SubtitleConfig:
    # Most words a cue holds: 12 words of English (about 5.5 characters each with the space) fill the two lines of
    # 42 characters that subtitle style guides (Netflix's, the BBC's) allow.
    max_words: int = 12
    # Longest a cue lasts, in seconds: the style guides' limit of 7 s a subtitle.
    max_seconds: float = 7.0
    # A pause (seconds between a word's end and the next word's start) longer than this starts a new cue, so that a
    # cue is not shown over silence; whisper's writer breaks at 3 s, a sentence pause is well under 1 s.
    max_gap: float = 1.0
    # Cue text is wrapped at word boundaries into lines of at most this many characters (a longer word alone).
    max_line_chars: int = 42


class Cue(NamedTuple):
    """One subtitle cue as written or read: times in seconds, text lines joined by newlines."""

    index: int  # 1, 2, ... (SRT's cue number, WebVTT's identifier)
    start: float
    end: float
    text: str


class CtmRecord(NamedTuple):
    """One line of a CTM file."""

    file: str
    channel: str
    start: float
    duration: float
    word: str
    confidence: float | None  # the optional sixth field
    line: int  # 1-based line number in the file


class FormatError(ValueError):
    """A file that breaks its format's rules; the message names the file and line."""

    def __init__(self, source: str, line: int, what: str):
        super().__init__(f"{source}:{line}: {what}")
        self.source, self.line = source, line


# ---------------------------------------------------------------------------------------------------------- times


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def format_timestamp(seconds: float, decimal_marker: str = ",") -> str:
    """`HH:MM:SS,mmm` (SRT) or, with decimal_marker ".", `HH:MM:SS.mmm` (WebVTT); hours grow past 99."""
    ms = _ms(seconds)
    if ms < 0:
        raise ValueError(f"negative time {seconds}")
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{decimal_marker}{ms:03d}"


def _check_words(words: Sequence[WordLike], where: str) -> list[tuple[str, int, int]]:
    """(word, start ms, end ms) of each word; ValueError naming the transcript and word for a word that is empty or
    holds whitespace, a time that is negative, not finite or ends before it starts, or a start before the previous
    word's start."""
    out = []
    prev = 0
    for i, w in enumerate(words):
        text, start, end = w.word, w.start, w.end
        at = f"{where}: word {i} ({text!r}, {start}-{end} s)"
        if not isinstance(text, str) or not text or any(c.isspace() for c in text):
            raise ValueError(f"{at}: a word must be a non-empty string without whitespace")
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start:
            raise ValueError(f"{at}: times must be finite, >= 0 and end >= start")
        s, e = _ms(start), _ms(end)
        if s < prev:
            raise ValueError(f"{at}: starts before the previous word (words must be in time order)")
        out.append((text, s, e))
        prev = s
    return out


# ---------------------------------------------------------------------------------------------------------- cues


def cues(words: Sequence[WordLike], cfg: SubtitleConfig | None = None, where: str = "transcript") -> list[Cue]:
    """Groups words into subtitle cues (the rules are in the module's docstring).

    Args:
        words: in time order (non-decreasing starts).
        cfg: the limits (default SubtitleConfig()).
        where: names the transcript in errors.
    Returns:
        Cues numbered from 1, starts strictly increasing, each end > its start and <= the next cue's start, times
        whole milliseconds.
    Raises:
        ValueError: a bad word or time, words out of order, a limit below 1 word / 0 s.
    """
    cfg = cfg or SubtitleConfig()
    if cfg.max_words < 1 or cfg.max_seconds <= 0 or cfg.max_gap < 0 or cfg.max_line_chars < 1:
        raise ValueError(f"subtitle limits must be positive: {cfg}")
    max_ms, gap_ms = _ms(cfg.max_seconds), _ms(cfg.max_gap)
    groups: list[list[tuple[str, int, int]]] = []
    for w in _check_words(words, where):
        _, s, e = w
        if groups:
            cur = groups[-1]
            cue_start, prev_end = cur[0][1], max(x[2] for x in cur)
            full = len(cur) >= cfg.max_words or e - cue_start > max_ms or s - prev_end > gap_ms
            if full and s > cue_start:  # a cue may not start when the previous one starts
                groups.append([w])
            else:
                cur.append(w)
        else:
            groups.append([w])
    out = []
    for i, g in enumerate(groups):
        start = g[0][1]
        end = max(start + 1, max(x[2] for x in g))  # at least 1 ms shown
        if i + 1 < len(groups):
            end = min(end, groups[i + 1][0][1])  # never past the next cue's start (> start)
        text = _wrap([x[0] for x in g], cfg.max_line_chars)
        out.append(Cue(i + 1, start / 1000, end / 1000, text))
    return out


def _wrap(words: list[str], width: int) -> str:
    lines: list[str] = []
    for w in words:
        if lines and len(lines[-1]) + 1 + len(w) <= width:
            lines[-1] += " " + w
        else:
            lines.append(w)
    return "\n".join(lines)


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _vtt_unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&nbsp;", "\u00a0").replace("&amp;", "&")


def to_srt(words: Sequence[WordLike], cfg: SubtitleConfig | None = None, where: str = "transcript") -> str:
    """SubRip subtitles of one transcript's words ("" for no words)."""
    return "".join(f"{c.index}\n{format_timestamp(c.start)} --> {format_timestamp(c.end)}\n{c.text}\n\n"
                   for c in cues(words, cfg, where))


def to_vtt(words: Sequence[WordLike], cfg: SubtitleConfig | None = None, where: str = "transcript") -> str:
    """WebVTT subtitles of one transcript's words (the header alone for no words)."""
    body = "".join(f"{c.index}\n{format_timestamp(c.start, '.')} --> {format_timestamp(c.end, '.')}\n"
                   f"{_vtt_escape(c.text)}\n\n" for c in cues(words, cfg, where))
    return "WEBVTT\n\n" + body


# ---------------------------------------------------------------------------------------------------------- CTM, JSON


def to_ctm(file_id: str, words: Sequence[WordLike], channel: str = "A") -> str:
    """CTM lines of one file's words: `<file_id> <channel> <begin> <duration> <word> <confidence>`.

    NIST expects the waveform's name without path or extension as file_id (see ctm_id); it and the channel may hold
    no whitespace. Raises ValueError for such an id or a bad word.
    """
    for name, v in (("file id", file_id), ("channel", channel)):
        if not v or any(c.isspace() for c in v):
            raise ValueError(f"CTM {name} {v!r} must be non-empty without whitespace")
    words = list(words)
    lines = []
    for (text, s, e), w in zip(_check_words(words, file_id), words):
        lines.append(f"{file_id} {channel} {s / 1000:.3f} {(e - s) / 1000:.3f} {text} {_confidence(w, file_id):.4f}\n")
    return "".join(lines)


def ctm_id(path: str | Path) -> str:
    """The CTM file field of an audio path: its name without folders and extension, whitespace made `_`."""
    return re.sub(r"\s", "_", Path(path).stem) or "_"


def _confidence(w: WordLike, where: str) -> float:
    c = w.confidence
    if not (0.0 <= c <= 1.0):
        raise ValueError(f"{where}: word {w.word!r} has confidence {c}, not in [0, 1]")
    return c


def to_json(t: Transcript | tuple) -> str:
    """One JSON Lines line (with its newline) of a transcript."""
    tid, text, words = t[0], t[1], list(t[2])
    checked = _check_words(words, str(tid))
    items = [{"word": x, "start": s / 1000, "end": e / 1000, "confidence": round(_confidence(w, str(tid)), 4)}
             for (x, s, e), w in zip(checked, words)]
    return json.dumps({"path": str(tid), "text": text, "words": items}, ensure_ascii=False) + "\n"


# ---------------------------------------------------------------------------------------------------------- writing


def format_transcripts(fmt: str, items: Iterable[Transcript | tuple], *, subtitles: SubtitleConfig | None = None,
                       channel: str = "A") -> str:
    """The text of `write_transcript` (same arguments, no destination)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown transcript format {fmt!r}; choose one of {', '.join(FORMATS)}")
    items = [Transcript(str(t[0]), t[1], list(t[2])) for t in items]
    if fmt in ("srt", "vtt"):
        if len(items) != 1:
            raise ValueError(f"a {fmt} file holds the subtitles of one audio file, got {len(items)} transcripts: "
                             f"write each to its own file")
        t = items[0]
        return (to_srt if fmt == "srt" else to_vtt)(t.words, subtitles, t.id)
    if fmt == "ctm":  # sclite wants the records sorted by file (ASCII), channel, begin time
        return "".join(to_ctm(t.id, t.words, channel) for t in sorted(items, key=lambda t: t.id.encode()))
    if fmt == "json":
        return "".join(to_json(t) for t in items)
    for t in items:
        if "\n" in t.id or "\t" in t.id:
            raise ValueError(f"text format: id {t.id!r} holds a tab or newline")
    return "".join(f"{t.id}\t{' '.join(t.text.split())}\n" for t in items)


def write_transcript(fmt: str, dest: str | Path | TextIO, items: Iterable[Transcript | tuple], *,
                     subtitles: SubtitleConfig | None = None, channel: str = "A") -> None:
    """Writes transcripts in one of FORMATS to a file (UTF-8, created or replaced) or an open text stream.

    Args:
        fmt: "text", "json", "srt", "vtt" or "ctm".
        dest: a path, or a stream such as sys.stdout (written, flushed, not closed).
        items: Transcript or (id, text, words) tuples; srt and vtt take exactly one (a subtitle file belongs to one
            audio file); ctm sorts them by id, as sclite requires (call once with all of a test set's).
        subtitles: the cue limits of srt/vtt (default SubtitleConfig()).
        channel: CTM's channel field ("A"; "1" is common too).
    Raises:
        ValueError: unknown format, several transcripts for srt/vtt, a bad word (the message names the transcript
            and word). Nothing is written then.
    """
    text = format_transcripts(fmt, items, subtitles=subtitles, channel=channel)
    if isinstance(dest, (str, Path)):
        Path(dest).write_text(text, encoding="utf-8")
    else:
        dest.write(text)
        dest.flush()


# ---------------------------------------------------------------------------------------------------------- parsing

_SRT_TIME = r"(\d{2,}):([0-5]\d):([0-5]\d),(\d{3})"
_VTT_TIME = r"(?:(\d{2,}):)?([0-5]\d):([0-5]\d)\.(\d{3})"
_SRT_TIMING = re.compile(rf"{_SRT_TIME} --> {_SRT_TIME}")
_VTT_TIMING = re.compile(rf"{_VTT_TIME}[ \t]+-->[ \t]+{_VTT_TIME}(?:[ \t].*)?")


def _seconds(h: str | None, m: str, s: str, ms: str) -> float:
    return ((int(h or 0) * 3600 + int(m) * 60 + int(s)) * 1000 + int(ms)) / 1000  # as the writers' ms / 1000


def _blocks(text: str) -> list[tuple[int, list[str]]]:
    """Blocks of non-blank lines with the 1-based line number of their first line."""
    blocks: list[tuple[int, list[str]]] = []
    cur: list[str] = []
    first = 0
    for n, line in enumerate(text.splitlines(), 1):
        if line.strip():
            if not cur:
                first = n
            cur.append(line.rstrip("\r"))
        elif cur:
            blocks.append((first, cur))
            cur = []
    if cur:
        blocks.append((first, cur))
    return blocks


def _check_cue_times(source: str, line: int, start: float, end: float, prev: Cue | None) -> None:
    if end < start:
        raise FormatError(source, line, f"cue ends ({end:.3f} s) before it starts ({start:.3f} s)")
    if prev is not None and start < prev.start:
        raise FormatError(source, line, f"cue starts ({start:.3f} s) before the previous cue ({prev.start:.3f} s)")


def parse_srt(text: str, source: str = "<srt>") -> list[Cue]:
    """Cues of SubRip text. Raises FormatError (file:line) for a cue number that is not the previous + 1 (from 1),
    a malformed timing line, an end before the start, a start before the previous cue's."""
    text = text.removeprefix("\ufeff")
    out: list[Cue] = []
    for first, lines in _blocks(text):
        expected = len(out) + 1
        if not lines[0].strip().isdigit() or int(lines[0]) != expected:
            raise FormatError(source, first, f"expected cue number {expected}, got {lines[0]!r}")
        if len(lines) < 2 or not (m := _SRT_TIMING.fullmatch(lines[1].strip())):
            got = lines[1] if len(lines) > 1 else "nothing"
            raise FormatError(source, first + 1, f"expected 'HH:MM:SS,mmm --> HH:MM:SS,mmm', got {got!r}")
        start, end = _seconds(*m.groups()[:4]), _seconds(*m.groups()[4:])
        _check_cue_times(source, first + 1, start, end, out[-1] if out else None)
        out.append(Cue(expected, start, end, "\n".join(lines[2:])))
    return out


def parse_vtt(text: str, source: str = "<vtt>") -> list[Cue]:
    """Cues of WebVTT text (NOTE, STYLE and REGION blocks skipped, identifiers optional, hours optional, cue settings
    ignored, `&amp; &lt; &gt;` unescaped). Cues are numbered 1, 2, ... in file order whatever their identifiers.
    Raises FormatError (file:line) for a missing `WEBVTT` header, a block without a timing line, an end before the
    start, a start before the previous cue's."""
    text = text.removeprefix("\ufeff")
    blocks = _blocks(text)
    head = text.splitlines()[0] if text else ""
    if not re.fullmatch(r"WEBVTT(?:[ \t].*)?", head):
        raise FormatError(source, 1, f"a WebVTT file starts with a 'WEBVTT' line, got {head[:40]!r}")
    out: list[Cue] = []
    for first, lines in blocks[1:]:  # the first block is the header (and its metadata lines)
        if re.match(r"(NOTE|STYLE|REGION)(\s|$)", lines[0]):
            continue
        t = 0 if "-->" in lines[0] else 1
        if t >= len(lines) or not (m := _VTT_TIMING.fullmatch(lines[t].strip())):
            got = lines[t] if t < len(lines) else "nothing"
            raise FormatError(source, first + t, f"expected 'HH:MM:SS.mmm --> HH:MM:SS.mmm', got {got!r}")
        start, end = _seconds(*m.groups()[:4]), _seconds(*m.groups()[4:])
        _check_cue_times(source, first + t, start, end, out[-1] if out else None)
        out.append(Cue(len(out) + 1, start, end, _vtt_unescape("\n".join(lines[t + 1:]))))
    return out


def parse_ctm(text: str, source: str = "<ctm>") -> list[CtmRecord]:
    """Records of CTM text (`;;` comment lines and blank lines skipped). Raises FormatError (file:line) for a line
    without 5 or 6 fields, a time that is not a number >= 0, a confidence outside [0, 1], a begin time before the
    previous record's of the same file and channel, or a file and channel whose records are not contiguous."""
    out: list[CtmRecord] = []
    seen: set[tuple[str, str]] = set()
    for n, line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        fields = line.split()
        if not fields or line.startswith(";;"):
            continue
        if len(fields) not in (5, 6):
            raise FormatError(source, n, f"expected '<file> <channel> <begin> <duration> <word> [<confidence>]', "
                                         f"got {len(fields)} fields")
        file, channel, bt, dur, word = fields[:5]
        try:
            start, duration = float(bt), float(dur)
            conf = float(fields[5]) if len(fields) == 6 else None
        except ValueError:
            raise FormatError(source, n, f"begin, duration and confidence must be numbers: {line!r}") from None
        if not (math.isfinite(start) and math.isfinite(duration)) or start < 0 or duration < 0:
            raise FormatError(source, n, f"begin {bt} and duration {dur} must be finite and >= 0")
        if conf is not None and not 0.0 <= conf <= 1.0:
            raise FormatError(source, n, f"confidence {fields[5]} is not in [0, 1]")
        key = (file, channel)
        prev = out[-1] if out else None
        if prev is not None and (prev.file, prev.channel) == key:
            if start < prev.start:
                raise FormatError(source, n, f"begin {bt} is before the previous word's ({prev.start:.3f}) of "
                                             f"{file} {channel}: records must be sorted by begin time")
        elif key in seen:
            raise FormatError(source, n, f"records of {file} {channel} resume after other files' (sort the file)")
        seen.add(key)
        out.append(CtmRecord(file, channel, start, duration, word, conf, n))
    return out


def parse_jsonl(text: str, source: str = "<jsonl>") -> list[Transcript]:
    """Transcripts of JSON Lines text (blank lines skipped), words as Word. Raises FormatError (file:line, key) for
    a line that is not a JSON object with `path` and `text` strings and a `words` list of {word, start, end,
    confidence}, or words that break `to_json`'s rules (times >= 0, end >= start, starts in order, confidence in
    [0, 1])."""
    out = []
    for n, line in enumerate(text.removeprefix("\ufeff").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise FormatError(source, n, f"not JSON: {e.msg} at column {e.colno}") from None
        if not isinstance(obj, dict):
            raise FormatError(source, n, f"expected a JSON object, got {type(obj).__name__}")
        for key, kind in (("path", str), ("text", str), ("words", list)):
            if not isinstance(obj.get(key), kind):
                raise FormatError(source, n, f"key {key!r} must be a {kind.__name__}, got {obj.get(key)!r:.40}")
        words = []
        for i, w in enumerate(obj["words"]):
            keys = ("word", "start", "end", "confidence")
            if not isinstance(w, dict) or not isinstance(w.get("word"), str) or not all(
                    isinstance(w.get(k), (int, float)) and not isinstance(w.get(k), bool) for k in keys[1:]):
                raise FormatError(source, n, f"words[{i}] must be {{'word': str, 'start', 'end', 'confidence': "
                                             f"numbers}}, got {w!r:.80}")
            words.append(Word(w["word"], float(w["start"]), float(w["end"]), float(w["confidence"])))
        try:
            _check_words(words, "words")
            for w in words:
                _confidence(w, "words")
        except ValueError as e:
            raise FormatError(source, n, str(e)) from None
        out.append(Transcript(obj["path"], obj["text"], words))
    return out


def _read(path: str | Path) -> str:
    return Path(path).read_text(encoding="utf-8")


def read_srt(path: str | Path) -> list[Cue]:
    """parse_srt of a UTF-8 file."""
    return parse_srt(_read(path), str(path))


def read_vtt(path: str | Path) -> list[Cue]:
    """parse_vtt of a UTF-8 file."""
    return parse_vtt(_read(path), str(path))


def read_ctm(path: str | Path) -> list[CtmRecord]:
    """parse_ctm of a UTF-8 file."""
    return parse_ctm(_read(path), str(path))


def read_jsonl(path: str | Path) -> list[Transcript]:
    """parse_jsonl of a UTF-8 file."""
    return parse_jsonl(_read(path), str(path))
