"""asr.decode: greedy, beam and modified beam search of a transducer, and the ways into decoding.

Modules:
    config                DecodeConfig (conf/decode.yaml), SearchConfig (conf/decode/*.yaml), check_search
    search                one entry to the three searches, by name
    hypothesis            Hypothesis, what every search returns: tokens, the frame and log-probability of each, score
    words                 Word, words_of: words with start/end times and confidences from a hypothesis's pieces
    align                 align: forced alignment (Viterbi over the full RNN-T lattice) of known tokens
    greedy, beam_search, modified_beam_search   the searches
    search_common         what the searches share: input checks, length order, decoder output of contexts
    hotwords              hotword files, their Aho-Corasick context graph and its scorer for modified beam search
    inference             the one library entry for inference: InferenceConfig -> load_inference -> model,
                          tokenizer (one rule for the BPE model), LM fusion, description
    runner                decoding test sets (decode_batches, decode_test_sets, wer_table): recipes' decode.py
    transcribe            the `asr-transcribe` command
    formats               transcripts with word times written and read back: JSON Lines, SRT, WebVTT, NIST CTM

Checkpoints are chosen, averaged and loaded (weights only) by asr.checkpoint. Kept light on purpose: asr.config
imports asr.decode.config, and neither this package nor asr.decode.inference imports the training code (asr.train).
"""

from asr.decode.align import align
from asr.decode.beam_search import beam_search
from asr.decode.config import METHODS, DecodeConfig, SearchConfig
from asr.decode.greedy import greedy_search_batch
from asr.decode.hypothesis import Hypothesis
from asr.decode.modified_beam_search import modified_beam_search
from asr.decode.search import search
from asr.decode.words import Word, words_of

__all__ = [
    "METHODS",
    "Word",
    "align",
    "DecodeConfig",
    "Hypothesis",
    "SearchConfig",
    "beam_search",
    "greedy_search_batch",
    "modified_beam_search",
    "search",
    "words_of",
]
