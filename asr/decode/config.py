"""Structured config of decoding: which weights, which search, which test sets.

`DecodeConfig` is the top-level schema of conf/decode.yaml ("decode_schema" in the ConfigStore); its `decode` field
is the config group conf/decode/{greedy,beam_search,modified_beam_search}.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass, field

METHODS = ("greedy", "beam_search", "modified_beam_search")


@dataclass
class SearchConfig:
    # "greedy", "beam_search" (Graves, one utterance at a time) or "modified_beam_search" (batched).
    method: str = "greedy"
    # Hypotheses kept by the beam searches: 4 is icefall's default and gains most of what wider beams give.
    beam: int = 4
    # Greedy only: most symbols per frame; 1 is what icefall decodes with (a trained model rarely wants more).
    max_sym_per_frame: int = 1
    # modified_beam_search only: an ARPA token n-gram over the model's BPE pieces for shallow fusion (prepare.sh
    # stage 5 writes data/lm_bpe_<N>/tokens_<order>gram.arpa; empty: no LM), and the weight of its log-probs.
    lm: str = ""
    lm_scale: float = 0.3
    # Added per emitted label while fusing, against the deletions an LM's per-label cost causes (0: none).
    lm_bonus: float = 0.0
    # modified_beam_search only: a word list (one word first on each line; prepare.sh stage 5 writes
    # data/lm_bpe_<N>/words.txt from the LM text): hypotheses may only spell these words. Empty: no lexicon.
    lexicon: str = ""
    # modified_beam_search with a lexicon: a word n-gram over its words (data/lm_bpe_<N>/words_<order>gram.arpa),
    # scored as each word completes, and its weight. Empty: none.
    word_lm: str = ""
    word_lm_scale: float = 0.5
    word_lm_bonus: float = 0.0  # added per completed word, against the deletions the word LM's cost causes
    # modified_beam_search only: a hotword file (one phrase per line, optional " :BOOST"; asr.decode.hotwords) whose
    # phrases get a bonus per matched BPE token, taken back when a match fails. Empty: none. Works with the LMs.
    hotwords: str = ""
    # Bonus per token of a hotword without its own boost: sherpa-onnx's default 1.5 lifts a phrase the model finds
    # a few nats less likely than its rival; much more makes the phrase appear where it was not said. With few BPE
    # pieces (the demo's 64) a phrase is many tokens and an unrelated list costs more: 0.5 (RESULTS.md).
    hotword_score: float = 1.5


@dataclass
class DecodeConfig:
    # Experiment directory written by training (epoch-E.pt, checkpoint-N.pt, config.yaml). Results go to
    # <exp_dir>/<method>/.
    exp_dir: str = "exp/demo"
    # Weights: the average of epoch-(epoch-avg+1)..epoch-epoch (icefall's --epoch/--avg); epoch 0 = the last one.
    epoch: int = 0
    avg: int = 1
    # When > 0: average the `avg` newest checkpoint-N.pt with N <= iter instead of epoch checkpoints.
    iter: int = 0
    # Use the running average of the weights kept by training ("model_avg") instead of the raw weights: with
    # avg > 1, the average over the epochs epoch-avg+1..epoch only, derived from two running averages as icefall.
    use_averaged_model: bool = False
    # One checkpoint file to decode, overriding epoch/avg/iter (empty: unused).
    checkpoint: str = ""
    # Test sets by name, cut manifests as the data config names them. Empty, with no test_dirs: the training
    # config's test_sets (test-clean and test-other).
    test_sets: list[str] = field(default_factory=list)
    # LibriSpeech-layout folders (speaker/chapter/*.flac + *.trans.txt), decoded from their audio, named by folder.
    test_dirs: list[str] = field(default_factory=list)
    # Overrides of the training data config where decoding runs elsewhere (empty: as saved in the checkpoint; the
    # saved BPE model is looked up from the current directory, then from exp_dir upwards: asr.decode.inference).
    manifest_dir: str = ""
    bpe_model: str = ""
    # Compute fbank from the audio of the cuts instead of reading precomputed features.
    on_the_fly_feats: bool = False
    # Seconds of audio per batch; icefall decodes with 600 on a GPU.
    max_duration: float = 300.0
    # "auto" (CUDA when available), "cpu", "cuda", "cuda:1"...
    device: str = "auto"
    # Also write each test set's word times and confidences as NIST CTM beside the recogs
    # (<exp_dir>/<method>/ctm-<set>-<method>.ctm; asr.decode.words, asr.decode.formats).
    ctm: bool = False
    decode: SearchConfig = field(default_factory=SearchConfig)


def check_search_settings(method: str, beam: int = 4, max_sym_per_frame: int = 1, fusion: bool = False) -> None:
    """Raises a clear ValueError for an unknown method, a beam or max_sym_per_frame below 1, or shallow fusion (an
    LM, lexicon or hotwords) with another method than modified_beam_search. The one check of search settings:
    `check_search` applies it to a config, asr.decode.search.search to its arguments."""
    if method not in METHODS:
        raise ValueError(f"unknown decoding method {method!r}; choose one of {', '.join(METHODS)}")
    if beam < 1:
        raise ValueError(f"beam must be >= 1, got {beam}")
    if max_sym_per_frame < 1:
        raise ValueError(f"max_sym_per_frame must be >= 1, got {max_sym_per_frame}")
    if fusion and method != "modified_beam_search":
        raise ValueError(f"an LM, lexicon or hotwords (decode.lm, decode.lexicon, decode.word_lm, decode.hotwords) "
                         f"are only used by modified_beam_search, not {method}")


def check_search(cfg: SearchConfig) -> None:
    """`check_search_settings` of a SearchConfig (fusion: any of lm, lexicon, word_lm, hotwords set)."""
    fusion = bool(cfg.lm or cfg.lexicon or cfg.word_lm or cfg.hotwords)
    check_search_settings(cfg.method, cfg.beam, cfg.max_sym_per_frame, fusion)
