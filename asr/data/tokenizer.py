"""The sentencepiece BPE model as the recipes use it: text <-> token ids, with the blank at id 0."""

from __future__ import annotations

from pathlib import Path

import sentencepiece as spm

BLANK = "<blk>"
WORD_BOUNDARY = "\u2581"  # sentencepiece's "▁"


class Tokenizer:
    """Wraps a sentencepiece model made by `asr.data.bpe.train_bpe` (`<blk>` = 0, `<sos/eos>` = 1, `<unk>` = 2)."""

    def __init__(self, model_path: str | Path) -> None:
        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"no BPE model at {path}: run recipes/librispeech/prepare.sh (stage 4) first")
        self.sp = spm.SentencePieceProcessor(model_file=str(path))
        self.blank_id: int = self.sp.piece_to_id(BLANK)
        if self.blank_id != 0:
            raise ValueError(f"{path}: {BLANK} has id {self.blank_id}, the transducer needs it at 0")
        self.unk_id: int = self.sp.unk_id()
        self.vocab_size: int = self.sp.get_piece_size()
        chars = set()
        for i in range(self.vocab_size):
            if not (self.sp.is_control(i) or self.sp.is_unknown(i) or self.sp.is_unused(i)):
                piece = self.sp.id_to_piece(i)
                if not (piece.startswith("<") and piece.endswith(">")):
                    chars.update(piece.replace(WORD_BOUNDARY, " "))
        chars.add(" ")
        #: Characters the model can spell without `<unk>`.
        self.alphabet: frozenset[str] = frozenset(chars)

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text."""
        return self.sp.encode(list(texts), out_type=int)

    def decode(self, ids: list[list[int]]) -> list[str]:
        """Text of each id sequence (blank ids are dropped)."""
        return self.sp.decode([[int(i) for i in seq if int(i) != self.blank_id] for seq in ids])
