"""asr.decode: greedy, beam and modified beam search of a transducer; loading a model from an experiment directory
(asr.decode.loading); decoding test sets (asr.decode.runner); the `asr-transcribe` command (asr.decode.transcribe).

Kept light on purpose: asr.config imports asr.decode.config, so this package does not import the training code.
"""

from asr.decode.beam_search import beam_search
from asr.decode.config import METHODS, DecodeConfig, SearchConfig
from asr.decode.greedy import greedy_search_batch
from asr.decode.modified_beam_search import modified_beam_search
from asr.decode.search import search

__all__ = [
    "METHODS",
    "DecodeConfig",
    "SearchConfig",
    "beam_search",
    "greedy_search_batch",
    "modified_beam_search",
    "search",
]
