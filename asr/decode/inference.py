"""The one library entry for inference: a trained model, its tokenizer and the optional LM fusion, from one config.

    from asr.decode.inference import InferenceConfig, load_inference
    inf = load_inference(InferenceConfig(exp_dir="exp/l12", epoch=30, avg=9, device="auto"))
    enc, enc_lens = inf.model.encode(x.to(inf.device), x_lens.to(inf.device))  # x: (B, T, F), x_lens: (B,)
    hyps = search(inf.model, enc, enc_lens, "modified_beam_search", fusion=inf.fusion)  # asr.decode.Hypothesis
    texts = inf.tokenizer.decode([h.tokens for h in hyps])

recipes/librispeech/decode.py (through asr.decode.runner.decode_test_sets) and `asr-transcribe` both load through
`load_inference`. The weights are chosen and averaged by asr.checkpoint.select_weights (epoch/avg, iter/avg,
use_averaged_model, or one checkpoint file), loaded safely (weights only), and the model is rebuilt from the training
config saved with them, so inference needs no model flags.

The BPE model (`find_bpe_model`), one rule for every entry:
    1. `bpe_model` when given (a path as the user wrote it, relative to the current directory);
    2. else the training config's data.bpe_model: as it is when absolute or when it exists from the current
       directory; else looked up from the experiment directory upwards (exp_dir, its parent, ...), since training
       ran in the recipe folder with paths relative to it (recipes/librispeech/exp/l12 -> recipes/librispeech);
    3. else FileNotFoundError naming the places tried.
The tokenizer must have the model's vocabulary size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from asr.checkpoint import CheckpointError, select_weights
from asr.data.tokenizer import Tokenizer
from asr.decode.config import DecodeConfig, SearchConfig
from asr.decode.hotwords import HotwordError, load_hotwords
from asr.device import resolve_device
from asr.lm.fusion import FusionScorer, LexiconFusion, NgramFusion, SumFusion, WordNgramFusion
from asr.lm.token_lm import load_token_lm, load_word_lm
from asr.models import ConformerConfig, ModelConfig, Transducer, build_model

log = logging.getLogger(__name__)


@dataclass
class InferenceConfig:
    """What to load for inference (the fields of conf/decode.yaml that say which model, on what, with which LM)."""

    # Experiment directory written by training (epoch-E.pt, checkpoint-N.pt, config.yaml).
    exp_dir: str = ""
    # Weights: the average of epoch-(epoch-avg+1)..epoch-epoch (icefall's --epoch/--avg); epoch 0 = the last one.
    epoch: int = 0
    avg: int = 1
    # When > 0: average the `avg` newest checkpoint-N.pt with N <= iter instead of epoch checkpoints.
    iter: int = 0
    # Use training's running average "model_avg" instead of the raw weights.
    use_averaged_model: bool = False
    # One checkpoint file, overriding epoch/avg/iter (empty: unused).
    checkpoint: str = ""
    # The BPE model; empty: the training config's, found by the rule of the module docstring.
    bpe_model: str = ""
    # "auto" (CUDA when available), "cpu", "cuda", "cuda:1"...
    device: str = "auto"
    # Shallow fusion (modified_beam_search only; see asr.decode.config.SearchConfig for each field).
    lm: str = ""
    lm_scale: float = SearchConfig.lm_scale
    lm_bonus: float = SearchConfig.lm_bonus
    lexicon: str = ""
    word_lm: str = ""
    word_lm_scale: float = SearchConfig.word_lm_scale
    word_lm_bonus: float = SearchConfig.word_lm_bonus
    hotwords: str = ""
    hotword_score: float = SearchConfig.hotword_score

    @classmethod
    def from_decode_config(cls, cfg: DecodeConfig) -> InferenceConfig:
        """The inference part of a decoding config (conf/decode.yaml)."""
        d = cfg.decode
        return cls(exp_dir=cfg.exp_dir, epoch=cfg.epoch, avg=cfg.avg, iter=cfg.iter,
                   use_averaged_model=cfg.use_averaged_model, checkpoint=cfg.checkpoint, bpe_model=cfg.bpe_model,
                   device=cfg.device, lm=d.lm, lm_scale=d.lm_scale, lm_bonus=d.lm_bonus, lexicon=d.lexicon,
                   word_lm=d.word_lm, word_lm_scale=d.word_lm_scale, word_lm_bonus=d.word_lm_bonus,
                   hotwords=d.hotwords, hotword_score=d.hotword_score)  # fmt: skip


@dataclass
class Inference:
    """A model ready to decode, with what it needs."""

    model: Transducer  # in eval mode, no gradients, on `device`
    tokenizer: Tokenizer
    fusion: FusionScorer | None  # None: no LM, no lexicon
    fusion_name: str  # e.g. "lm_tokens_6gram_scale_0.5_bonus_0.5_lexicon"; "" without fusion
    train_config: dict  # the resolved training config the model was built from
    device: torch.device
    description: str  # the weights: "epoch-30-avg-9", "iter-4000-avg-2-use-averaged", "epoch-3"...
    bpe_model: Path

    @property
    def num_features(self) -> int:
        """Feature bins (F) the model takes."""
        encoder = self.train_config["model"].get("encoder", {})
        return int(encoder.get("num_features", ConformerConfig.num_features))

    def setting(self, search: SearchConfig) -> str:
        """The name of a decoding run for result files: method (and beam), fusion, weights, e.g.
        "modified_beam_search_beam_4_lm_tokens_6gram_scale_0.5_bonus_0_epoch-30-avg-9"."""
        name = search.method if search.method == "greedy" else f"{search.method}_beam_{search.beam}"
        if self.fusion_name:
            name += f"_{self.fusion_name}"
        return f"{name}_{self.description}"


class InferenceError(RuntimeError):
    """What cannot be loaded, in words: "cannot load the model: ..." or "cannot load the LM: ..."."""


def find_bpe_model(override: str | Path, train_config: dict, exp_dir: str | Path) -> Path:
    """The BPE model by the rule of the module docstring. Raises FileNotFoundError."""
    if override:
        path = Path(override)
        if not path.is_file():
            raise FileNotFoundError(f"no BPE model at {path} (bpe_model)")
        return path
    saved = train_config.get("data", {}).get("bpe_model", "")
    if not saved:
        raise FileNotFoundError("the training config names no BPE model (data.bpe_model); give bpe_model")
    rel = Path(saved)
    if rel.is_absolute() or rel.is_file():
        if not rel.is_file():
            raise FileNotFoundError(f"BPE model {rel} of the training config does not exist; give bpe_model")
        return rel
    bases = [Path(exp_dir), *Path(exp_dir).resolve().parents] if str(exp_dir) else []
    for base in bases:
        if (base / rel).is_file():
            return base / rel
    raise FileNotFoundError(f"BPE model {rel} of the training config found neither from the current directory nor "
                            f"from {exp_dir or 'the experiment directory'} upwards; give bpe_model")


def build_from_config(train_config: dict) -> Transducer:
    """The transducer described by the "model" entry of a saved training config."""
    if "model" not in train_config:
        raise CheckpointError("the saved training config has no 'model' entry")
    schema = OmegaConf.structured(ModelConfig)
    return build_model(OmegaConf.to_object(OmegaConf.merge(schema, train_config["model"])))


@dataclass
class LoadedModel:
    model: Transducer
    train_config: dict  # the resolved training config (plain dict) the model was built from
    description: str  # what was loaded, e.g. "epoch-30-avg-9" or "iter-4000-avg-2-use-averaged"


def load_model(
    exp_dir: str | Path,
    epoch: int = 0,
    avg: int = 1,
    iteration: int = 0,
    use_averaged_model: bool = False,
    checkpoint: str | Path = "",
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """The model to decode with, in eval mode on `device` (the weights: asr.checkpoint.select_weights, whose
    arguments these are)."""
    weights = select_weights(exp_dir, epoch, avg, iteration, use_averaged_model, checkpoint)
    model = build_from_config(weights.train_config)
    model.load_state_dict(weights.state_dict, strict=True)
    model.requires_grad_(False)
    model.to(resolve_device(device)).eval()
    return LoadedModel(model=model, train_config=weights.train_config, description=weights.description)


def load_fusion(cfg: InferenceConfig, tokenizer: Tokenizer) -> tuple[FusionScorer | None, str]:
    """The shallow-fusion scorer of `cfg` (token n-gram, lexicon, word n-gram over the lexicon, hotwords) and a
    short name for result files, e.g. "lm_tokens_6gram_scale_0.5_bonus_0.5_lexicon_hotwords_names_score_1.5";
    (None, "") when none is given. A word LM needs the lexicon it is over."""
    scorers: list[FusionScorer] = []
    names: list[str] = []
    if cfg.lm:
        scorers.append(NgramFusion(load_token_lm(cfg.lm, tokenizer), cfg.lm_scale, cfg.lm_bonus))
        names.append(f"lm_{Path(cfg.lm).name.split('.')[0]}_scale_{cfg.lm_scale:g}_bonus_{cfg.lm_bonus:g}")
    if cfg.lexicon:
        path = Path(cfg.lexicon)
        if not path.is_file():
            raise FileNotFoundError(f"no lexicon at {path}: run recipes/librispeech/prepare.sh (stage 5) first")
        words = [line.split()[0] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        pieces = [tokenizer.sp.id_to_piece(i) for i in range(tokenizer.vocab_size)]
        lexicon = LexiconFusion(words, pieces)
        if cfg.word_lm:
            word_lm = load_word_lm(cfg.word_lm, words)
            scorers.append(WordNgramFusion(word_lm, lexicon, range(2, len(words) + 2), cfg.word_lm_scale,
                                           cfg.word_lm_bonus))  # fmt: skip
            names.append(f"lexicon_{Path(cfg.word_lm).name.split('.')[0]}_scale_{cfg.word_lm_scale:g}"
                         f"_bonus_{cfg.word_lm_bonus:g}")  # fmt: skip
        else:
            scorers.append(lexicon)
            names.append("lexicon")
    elif cfg.word_lm:
        raise ValueError("a word LM (decode.word_lm) needs the lexicon it is over (decode.lexicon)")
    if cfg.hotwords:
        scorers.append(load_hotwords(cfg.hotwords, tokenizer, cfg.hotword_score))
        names.append(f"hotwords_{Path(cfg.hotwords).stem}_score_{cfg.hotword_score:g}")
    if not scorers:
        return None, ""
    return (scorers[0] if len(scorers) == 1 else SumFusion(scorers)), "_".join(names)


def load_inference(cfg: InferenceConfig) -> Inference:
    """The model (weights chosen and averaged, loaded safely), its tokenizer and the LM fusion of `cfg`.

    Raises:
        InferenceError: "cannot load the model: ..." (missing or refused checkpoints, no BPE model, a vocabulary
            that does not match), "cannot load the LM: ..." (missing or bad LM / lexicon / hotword files) or
            "cannot load the hotwords: FILE:LINE: ..." (a bad hotword line).
    """
    try:
        device = resolve_device(cfg.device)
        loaded = load_model(cfg.exp_dir, cfg.epoch, cfg.avg, cfg.iter, cfg.use_averaged_model, cfg.checkpoint, device)
        bpe_model = find_bpe_model(cfg.bpe_model, loaded.train_config, cfg.exp_dir)
        tokenizer = Tokenizer(bpe_model)
        if tokenizer.vocab_size != loaded.model.vocab_size:
            raise ValueError(f"{bpe_model} has {tokenizer.vocab_size} tokens, the model {loaded.model.vocab_size}")
    except (OSError, RuntimeError, ValueError) as e:  # CheckpointError is a RuntimeError
        raise InferenceError(f"cannot load the model: {e}") from e
    try:
        fusion, fusion_name = load_fusion(cfg, tokenizer)
    except HotwordError as e:
        raise InferenceError(f"cannot load the hotwords: {e}") from e
    except (OSError, ValueError) as e:
        raise InferenceError(f"cannot load the LM: {e}") from e
    log.info("loaded %s on %s, BPE model %s%s", loaded.description, device, bpe_model,
             f", shallow fusion {fusion_name}" if fusion_name else "")  # fmt: skip
    return Inference(model=loaded.model, tokenizer=tokenizer, fusion=fusion, fusion_name=fusion_name,
                     train_config=loaded.train_config, device=device, description=loaded.description,
                     bpe_model=bpe_model)  # fmt: skip
