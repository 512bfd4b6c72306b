"""Transcript normalisation of imported corpora, explicit and configurable (TextNormConfig)."""

from __future__ import annotations

import re
import unicodedata

from asr.data.importers.config import TextNormConfig

_DIGIT = re.compile(r"\d")
# An apostrophe (straight or typographic) between two letters: kept when punctuation is removed.
_INNER_APOSTROPHE = re.compile(r"(?<=\w)['\u2019](?=\w)")
_APOSTROPHE_MARK = "\uf8ff"  # a private-use character standing in for kept apostrophes while punctuation goes


class TextNormalizer:
    """Applies a TextNormConfig; `__call__` gives the normalised text, or None when the utterance is to be skipped.

    The order: NFKC, then the number policy, then punctuation, then case, then whitespace collapsed to single
    spaces. Nothing else is changed (no spelling-out, no abbreviations, no character filtering).
    """

    def __init__(self, cfg: TextNormConfig | None = None) -> None:
        self.cfg = cfg or TextNormConfig()

    def has_digits(self, text: str) -> bool:
        return bool(_DIGIT.search(text))

    def __call__(self, text: str) -> str:
        cfg = self.cfg
        if cfg.unicode_nfkc:
            text = unicodedata.normalize("NFKC", text)
        if cfg.punctuation == "remove":
            if cfg.keep_apostrophes:
                text = _INNER_APOSTROPHE.sub(_APOSTROPHE_MARK, text)
            text = "".join(" " if unicodedata.category(ch).startswith("P") and ch not in cfg.keep_chars else ch
                           for ch in text)
            text = text.replace(_APOSTROPHE_MARK, "'")
        if cfg.case == "upper":
            text = text.upper()
        elif cfg.case == "lower":
            text = text.lower()
        return " ".join(text.split())
