"""Transcript formats (asr.decode.formats): each writer's text read back by its parser gives the words again (to the
millisecond), cues keep their limits and never overlap over random word sequences, and broken files are refused
with the line named."""

import io
import json
import random
import re
from collections import namedtuple

import pytest

from asr.decode.formats import (
    FORMATS,
    Cue,
    FormatError,
    SubtitleConfig,
    Transcript,
    ctm_id,
    cues,
    format_timestamp,
    format_transcripts,
    parse_ctm,
    parse_jsonl,
    parse_srt,
    parse_vtt,
    read_ctm,
    read_jsonl,
    read_srt,
    read_vtt,
    to_srt,
    to_vtt,
    write_transcript,
)

W = namedtuple("W", "word start end confidence")  # duck-typed like asr.decode.words.Word

WORDS = [W("HELLO", 0.12, 0.48, 0.93), W("WORLD", 0.52, 1.0, 0.875), W("AGAIN", 2.6, 3.04, 0.5)]
MS = 0.0005 + 1e-9  # rounding to the millisecond


def random_words(rng: random.Random, n: int) -> list[W]:
    """Words in time order with pauses (sometimes long), shared starts, zero-length and very long words, and
    overlaps of a word's end with the next word's start, as a search may give."""
    out, t = [], rng.uniform(0, 3)
    for _ in range(n):
        kind = rng.random()
        if kind < 0.1 and out:
            start = out[-1].start  # same start as the previous word
        else:
            start = t + (rng.uniform(1.0, 4.0) if kind > 0.9 else rng.uniform(0, 0.3))
        dur = rng.choice([0.0, rng.uniform(0.04, 0.8), rng.uniform(0.04, 0.8), rng.uniform(5, 12)])
        word = rng.choice(["A", "ÉTÉ", "日本語", "x" * rng.randint(1, 50), "naïve", "<b>", "&", "-->"])
        out.append(W(word, round(start, 3), round(start + dur, 3), round(rng.random(), 4)))
        t = start + (dur if rng.random() < 0.8 else dur / 2)  # sometimes the next word starts inside this one
    return out


def _ms(x: float) -> int:
    return round(x * 1000)


def check_cues(cs: list[Cue], words: list[W], cfg: SubtitleConfig) -> None:
    """The cue rules: every word once and in order, starts strictly increasing, no overlap, each cue shown; the
    limits hold except where the words beyond them share the cue's start (where no cue may begin)."""
    assert [c.index for c in cs] == list(range(1, len(cs) + 1))
    assert [x for c in cs for x in c.text.replace("\n", " ").split(" ")] == [w.word for w in words]
    i = 0
    for k, c in enumerate(cs):
        n = len(c.text.replace("\n", " ").split(" "))
        group = words[i:i + n]
        i += n
        assert _ms(c.start) == _ms(group[0].start)
        assert c.end > c.start
        assert all(len(line) <= cfg.max_line_chars or " " not in line for line in c.text.split("\n"))
        if k + 1 < len(cs):
            assert c.end <= cs[k + 1].start, "cues overlap"
            nxt = words[i]
            assert _ms(nxt.start) > _ms(c.start)
        else:
            assert _ms(c.end) == max(_ms(group[0].start) + 1, max(_ms(w.end) for w in group))
        # Limits: a cue may only run over them with words that start where it starts.
        starts_with_cue = [_ms(w.start) == _ms(c.start) for w in group]
        if n > cfg.max_words:
            assert all(starts_with_cue[cfg.max_words:])
        for j in range(1, n):
            if _ms(group[j].end) - _ms(c.start) > _ms(cfg.max_seconds):
                assert starts_with_cue[j]
            if _ms(group[j].start) - max(_ms(w.end) for w in group[:j]) > _ms(cfg.max_gap):
                assert starts_with_cue[j]
    assert i == len(words)


# ---------------------------------------------------------------------------------------------------------- times


@pytest.mark.parametrize("seconds, srt", [(0, "00:00:00,000"), (1.2344, "00:00:01,234"), (1.2346, "00:00:01,235"),
                                          (3599.9996, "01:00:00,000"), (360000.5, "100:00:00,500")])
def test_timestamps(seconds, srt):
    assert format_timestamp(seconds) == srt
    assert format_timestamp(seconds, ".") == srt.replace(",", ".")


def test_negative_time_is_refused():
    with pytest.raises(ValueError, match="negative"):
        format_timestamp(-0.01)


# ---------------------------------------------------------------------------------------------------------- known text


def test_srt_and_vtt_known_text():
    cfg = SubtitleConfig(max_words=2)
    assert to_srt(WORDS, cfg) == (
        "1\n00:00:00,120 --> 00:00:01,000\nHELLO WORLD\n\n"
        "2\n00:00:02,600 --> 00:00:03,040\nAGAIN\n\n"
    )
    assert to_vtt(WORDS, cfg) == (
        "WEBVTT\n\n"
        "1\n00:00:00.120 --> 00:00:01.000\nHELLO WORLD\n\n"
        "2\n00:00:02.600 --> 00:00:03.040\nAGAIN\n\n"
    )


def test_long_pause_starts_a_cue():
    # 1.6 s between WORLD and AGAIN: over max_gap (1 s) though the words and seconds would fit
    assert [c.text for c in cues(WORDS)] == ["HELLO WORLD", "AGAIN"]
    assert [c.text for c in cues(WORDS, SubtitleConfig(max_gap=2.0))] == ["HELLO WORLD AGAIN"]


def test_ctm_known_text():
    text = format_transcripts("ctm", [("utt-2", "AGAIN", WORDS[2:]), ("utt-1", "HELLO WORLD", WORDS[:2])])
    assert text == (
        "utt-1 A 0.120 0.360 HELLO 0.9300\n"
        "utt-1 A 0.520 0.480 WORLD 0.8750\n"
        "utt-2 A 2.600 0.440 AGAIN 0.5000\n"
    )  # sorted by file id, as sclite wants


def test_json_known_text():
    line = format_transcripts("json", [("a/b.wav", "HELLO WORLD", WORDS[:2])])
    assert json.loads(line) == {"path": "a/b.wav", "text": "HELLO WORLD", "words": [
        {"word": "HELLO", "start": 0.12, "end": 0.48, "confidence": 0.93},
        {"word": "WORLD", "start": 0.52, "end": 1.0, "confidence": 0.875}]}
    assert line.endswith("}\n") and line.count("\n") == 1


def test_text_format():
    assert format_transcripts("text", [("a.wav", "HELLO  WORLD", WORDS)]) == "a.wav\tHELLO WORLD\n"


# ---------------------------------------------------------------------------------------------------------- round trips


def _assert_words_equal(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.word == w.word
        assert abs(g.start - w.start) <= MS and abs(g.end - w.end) <= MS
        assert abs(g.confidence - w.confidence) <= 0.00005 + 1e-12


@pytest.mark.parametrize("seed", range(40))
def test_round_trips_of_random_words(seed, tmp_path):
    rng = random.Random(seed)
    words = random_words(rng, rng.choice([0, 1, 2, 5, 30, 120]))
    cfg = SubtitleConfig(max_words=rng.randint(1, 15), max_seconds=rng.choice([0.5, 3.0, 7.0]),
                         max_gap=rng.choice([0.0, 0.3, 1.0]), max_line_chars=rng.choice([1, 20, 42]))
    made = cues(words, cfg)
    check_cues(made, words, cfg)

    # SRT / VTT: the cues come back (times to the ms, text, numbering)
    for fmt, parse, read in (("srt", parse_srt, read_srt), ("vtt", parse_vtt, read_vtt)):
        path = tmp_path / f"x.{fmt}"
        write_transcript(fmt, path, [("x.wav", "", words)], subtitles=cfg)
        assert parse(path.read_text(encoding="utf-8")) == read(path) == made

    # CTM: every word, its start, duration, confidence
    path = tmp_path / "x.ctm"
    write_transcript("ctm", path, [("x", "", words)], channel="1")
    records = read_ctm(path)
    assert {(r.file, r.channel) for r in records} <= {("x", "1")}
    back = [W(r.word, r.start, r.start + r.duration, r.confidence) for r in records]
    _assert_words_equal(back, words)

    # JSON Lines: the transcript, words as asr.decode.words.Word
    path = tmp_path / "x.jsonl"
    text = " ".join(w.word for w in words)
    write_transcript("json", path, [Transcript("dir/x.wav", text, words), ("y.wav", "", [])])
    (t, empty) = read_jsonl(path)
    assert (t.id, t.text) == ("dir/x.wav", text) and (empty.id, empty.text, list(empty.words)) == ("y.wav", "", [])
    _assert_words_equal(t.words, words)


# ---------------------------------------------------------------------------------------------------------- edge cases


def test_no_words():
    assert cues([]) == []
    assert format_transcripts("srt", [("a", "", [])]) == ""
    assert format_transcripts("vtt", [("a", "", [])]) == "WEBVTT\n\n"
    assert format_transcripts("ctm", [("a", "", [])]) == ""
    assert parse_srt("") == [] and parse_vtt("WEBVTT\n") == [] and parse_ctm("") == []
    assert parse_jsonl(format_transcripts("json", [("a", "", [])])) == [Transcript("a", "", [])]


def test_a_word_longer_than_max_seconds_has_its_own_cue():
    words = [W("A", 0.0, 0.2, 1.0), W("LOOONG", 0.3, 9.3, 1.0), W("B", 9.4, 9.5, 1.0)]
    cs = cues(words, SubtitleConfig(max_seconds=2.0))
    assert [(c.start, c.end, c.text) for c in cs] == [(0.0, 0.2, "A"), (0.3, 9.3, "LOOONG"), (9.4, 9.5, "B")]


def test_words_with_the_same_start_stay_in_one_cue():
    words = [W("A", 1.0, 1.0, 1.0), W("B", 1.0, 1.2, 1.0), W("C", 1.0, 1.2, 1.0), W("D", 1.2, 1.4, 1.0)]
    cs = cues(words, SubtitleConfig(max_words=1))
    assert [(c.start, c.end, c.text) for c in cs] == [(1.0, 1.2, "A B C"), (1.2, 1.4, "D")]
    zero = cues([W("A", 2.0, 2.0, 1.0)])
    assert (zero[0].start, zero[0].end) == (2.0, 2.001)  # a cue is shown for at least a millisecond


def test_overlapping_words_give_cues_that_do_not_overlap():
    words = [W("A", 0.0, 1.5, 1.0), W("B", 1.0, 1.2, 1.0)]
    assert [(c.start, c.end) for c in cues(words, SubtitleConfig(max_words=1))] == [(0.0, 1.0), (1.0, 1.2)]


def test_non_ascii_words_round_trip(tmp_path):
    words = [W("日本語", 0.0, 0.4, 0.5), W("ÉTÉ", 0.5, 0.9, 0.25), W("a&b<c>", 1.0, 1.2, 1.0)]
    vtt = format_transcripts("vtt", [("x", "", words)])
    assert "a&amp;b&lt;c&gt;" in vtt  # WebVTT escapes
    assert parse_vtt(vtt)[0].text == "日本語 ÉTÉ a&b<c>"
    path = tmp_path / "x.jsonl"
    write_transcript("json", path, [("ü.wav", "日本語 ÉTÉ", words)])
    assert "日本語" in path.read_text(encoding="utf-8")  # UTF-8, not \u escapes
    assert [w.word for w in read_jsonl(path)[0].words] == ["日本語", "ÉTÉ", "a&b<c>"]


def test_long_cues_are_wrapped_at_words():
    text = "the quick brown fox jumps over the lazy dog"
    words = [W(w, i * 0.3, i * 0.3 + 0.2, 1.0) for i, w in enumerate(text.split())]
    (c,) = cues(words, SubtitleConfig(max_line_chars=20))
    assert c.text == "the quick brown fox\njumps over the lazy\ndog"
    assert parse_srt(to_srt(words, SubtitleConfig(max_line_chars=20)))[0].text == c.text


def test_stream_destination_and_ctm_id():
    out = io.StringIO()
    write_transcript("text", out, [("a.wav", "HI", [])])
    assert out.getvalue() == "a.wav\tHI\n"
    assert ctm_id("/data/my file.flac") == "my_file"
    assert set(FORMATS) == {"text", "json", "srt", "vtt", "ctm"}


# ---------------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("words, match", [
    ([W("A", 1.0, 1.2, 1.0), W("B", 0.5, 0.7, 1.0)], "word 1 .*time order"),
    ([W("A", 1.0, 0.9, 1.0)], "word 0 .*end >= start"),
    ([W("A", -1.0, 0.9, 1.0)], "word 0 .*>= 0"),
    ([W("A", float("nan"), 0.9, 1.0)], "word 0 .*finite"),
    ([W("TWO WORDS", 0.0, 0.9, 1.0)], "word 0 .*whitespace"),
    ([W("", 0.0, 0.9, 1.0)], "word 0 .*non-empty"),
])
def test_bad_words_are_refused_naming_the_transcript_and_word(words, match):
    for fmt in ("srt", "vtt", "ctm", "json"):
        with pytest.raises(ValueError, match=f"utt-7: {match}"):
            format_transcripts(fmt, [("utt-7", "", words)])


def test_bad_confidence_and_formats_are_refused(tmp_path):
    with pytest.raises(ValueError, match="confidence 1.5"):
        format_transcripts("ctm", [("u", "", [W("A", 0, 1, 1.5)])])
    with pytest.raises(ValueError, match="unknown transcript format 'xml'"):
        write_transcript("xml", tmp_path / "x", [])
    with pytest.raises(ValueError, match="one audio file, got 2"):
        format_transcripts("srt", [("a", "", []), ("b", "", [])])
    with pytest.raises(ValueError, match="whitespace"):
        format_transcripts("ctm", [("my file", "", WORDS)])
    assert not (tmp_path / "x").exists()


GOOD_SRT = "1\n00:00:00,120 --> 00:00:01,000\nHELLO\n\n2\n00:00:02,600 --> 00:00:03,040\nAGAIN\n"


@pytest.mark.parametrize("text, line, match", [
    (GOOD_SRT.replace("2\n", "3\n", 1), 5, "expected cue number 2, got '3'"),
    (GOOD_SRT.replace("1\n", "0\n", 1), 1, "expected cue number 1"),
    (GOOD_SRT.replace("00:00:01,000", "00:00:01.000"), 2, "HH:MM:SS,mmm"),
    (GOOD_SRT.replace("00:00:03,040", "00:00:61,040"), 6, "HH:MM:SS,mmm"),
    (GOOD_SRT.replace("00:00:01,000", "00:00:00,100"), 2, "ends .* before it starts"),
    (GOOD_SRT.replace("00:00:02,600", "00:00:00,000"), 6, "before the previous cue"),
    ("1\n", 2, "got 'nothing'"),
])
def test_broken_srt_names_the_line(text, line, match, tmp_path):
    path = tmp_path / "bad.srt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(FormatError, match=rf"^{re.escape(str(path))}:{line}: .*{match}"):
        read_srt(path)


def test_vtt_rules():
    good = ("WEBVTT - made by us\n\nNOTE a comment\n\n00:01.000 --> 00:02.000 align:start\nHI\n\n"
            "id\n00:00:02.500 --> 00:00:03.000\nTHERE\n")
    assert parse_vtt(good) == [Cue(1, 1.0, 2.0, "HI"), Cue(2, 2.5, 3.0, "THERE")]
    with pytest.raises(FormatError, match=r"^<vtt>:1: .*'WEBVTT'"):
        parse_vtt("1\n00:00:00.000 --> 00:00:01.000\nHI\n")
    with pytest.raises(FormatError, match=r"^<vtt>:4: expected 'HH:MM:SS.mmm"):
        parse_vtt("WEBVTT\n\n1\n00:00:00,000 --> 00:00:01,000\nHI\n")
    with pytest.raises(FormatError, match=r"^<vtt>:6: cue starts"):
        parse_vtt("WEBVTT\n\n00:00:05.000 --> 00:00:06.000\nA\n\n00:00:01.000 --> 00:00:02.000\nB\n")


@pytest.mark.parametrize("text, line, match", [
    ("a A 0.1 0.2\n", 1, "got 4 fields"),
    ("a A 0.1 x W 0.5\n", 1, "must be numbers"),
    ("a A -0.1 0.2 W\n", 1, ">= 0"),
    ("a A 0.1 0.2 W 1.5\n", 1, r"confidence 1.5 is not in \[0, 1\]"),
    (";; comment\na A 0.5 0.2 W\na A 0.1 0.2 V\n", 3, "before the previous word"),
    ("a A 0.1 0.2 W\nb A 0.1 0.2 W\na A 0.5 0.2 W\n", 3, "resume after"),
])
def test_broken_ctm_names_the_line(text, line, match):
    with pytest.raises(FormatError, match=rf"^<ctm>:{line}: .*{match}"):
        parse_ctm(text)


def test_ctm_comments_and_optional_confidence():
    (r,) = parse_ctm(";; sclite comment\n\nutt 1 0.50 0.25 HI\n")
    assert r == ("utt", "1", 0.5, 0.25, "HI", None, 3)  # file, channel, start, duration, word, confidence, line


@pytest.mark.parametrize("line, match", [
    ("not json", "not JSON"),
    ("[1, 2]", "a JSON object, got list"),
    ('{"text": "", "words": []}', "key 'path' must be a str"),
    ('{"path": "a", "text": "", "words": [{"word": "A", "start": "0", "end": 1, "confidence": 1}]}', r"words\[0\]"),
    ('{"path": "a", "text": "", "words": [{"word": "A", "start": 2, "end": 1, "confidence": 1}]}', "end >= start"),
    ('{"path": "a", "text": "", "words": [{"word": "A", "start": 0, "end": 1, "confidence": 2}]}', "confidence 2"),
])
def test_broken_jsonl_names_the_line(line, match):
    good = format_transcripts("json", [("ok.wav", "HELLO", WORDS[:1])])
    with pytest.raises(FormatError, match=rf"^<jsonl>:3: .*{match}"):
        parse_jsonl(good + "\n" + line + "\n")
