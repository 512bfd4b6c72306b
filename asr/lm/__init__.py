"""N-gram language models over BPE pieces or words, and the scorers that fuse them into modified beam search."""

from asr.lm.fusion import FusionScorer, LexiconFusion, NgramFusion, SumFusion, WordNgramFusion
from asr.lm.kneser_ney import KneserNeyTables, train_kneser_ney
from asr.lm.ngram import NgramLm, read_arpa, write_arpa

__all__ = [
    "FusionScorer",
    "KneserNeyTables",
    "LexiconFusion",
    "NgramFusion",
    "NgramLm",
    "SumFusion",
    "WordNgramFusion",
    "read_arpa",
    "train_kneser_ney",
    "write_arpa",
]
