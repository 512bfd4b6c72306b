"""Token-level n-gram language models for shallow fusion in modified beam search."""

from asr.lm.kneser_ney import KneserNeyTables, train_kneser_ney
from asr.lm.ngram import NgramLm, read_arpa, write_arpa

__all__ = ["KneserNeyTables", "NgramLm", "read_arpa", "train_kneser_ney", "write_arpa"]
