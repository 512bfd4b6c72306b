"""Transcript text in LibriSpeech's form: upper case letters, apostrophe and single spaces."""

from __future__ import annotations

import re

_ABBREVIATIONS = {"Mr.": "Mister", "Mrs.": "Missus", "Dr.": "Doctor", "St.": "Saint", "Messrs.": "Messieurs"}
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "`": "'", "\u201c": '"', "\u201d": '"'})


def expand_abbreviations(text: str) -> str:
    """Spell out the few abbreviations a TTS engine and a transcript would otherwise disagree on."""
    for short, long in _ABBREVIATIONS.items():
        text = text.replace(short, long)
    return text


def normalize_transcript(text: str) -> str | None:
    """LibriSpeech-style transcript of `text`, or None when it cannot be written that way.

    Upper case; hyphens and dashes become spaces; apostrophes are kept only inside words; other punctuation
    is dropped. Text with digits or non-ASCII letters gives None (the spoken form would be a guess).
    """
    text = expand_abbreviations(text.translate(_QUOTES))
    if re.search(r"[0-9]", text) or re.search(r"[^\x00-\x7f]", text):
        return None
    text = re.sub(r"[-_/]+", " ", text).upper()
    text = re.sub(r"[^A-Z' ]", " ", text)
    text = re.sub(r"(?<![A-Z])'|'(?![A-Z])", " ", text)  # quotes, not apostrophes
    text = " ".join(text.split())
    return text or None


def spoken_form(text: str) -> str:
    """The text handed to a TTS engine: abbreviations spelled out, quotes and odd symbols removed."""
    text = expand_abbreviations(text.translate(_QUOTES))
    text = re.sub(r"[-_/]+", " ", text)
    text = re.sub(r"[^A-Za-z',.;:?! ]", " ", text)
    return " ".join(text.split())
