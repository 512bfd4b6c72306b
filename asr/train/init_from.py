"""Fine-tuning: a run that starts from another run's weights (trainer.init_from), loads some of its modules
(trainer.init_modules) and freezes some (trainer.freeze_modules).

Weights only. The checkpoint (or the epoch/avg choice of an experiment directory, through
asr.checkpoint.select_weights, the safe loader decoding uses) gives the model's tensors; the optimiser, the
learning-rate schedule, the step count, the sampler and the random generators start afresh, as icefall's
zipformer/finetune.py does with --do-finetune. The running model average starts from the loaded weights.

Resume wins. Once the experiment directory holds a readable checkpoint of its own, the run resumes from it and
init_from is not read again (logged): a fine-tuning run stopped and restarted with the same command continues, it does
not start over from the source weights.

What may differ. The source checkpoint's saved training config (its "config" entry, else its exp dir's config.yaml)
is compared with this model's config before any tensor is copied, for the modules that are loaded:
    encoder                 every field of model.encoder but dropout (the feature dim num_features, d_model,
                            heads, layers, kernel, subsampling, half-rate layers, input normalisation): heads or
                            input_norm change what the same tensors compute, so equal shapes are not enough
    decoder                 vocab_size, blank_id, model.decoder
    joiner                  vocab_size, encoder.d_model, decoder.decoder_dim, model.joiner
    simple_am_proj / _lm_   vocab_size and the width they project from
A difference is refused with every differing key and both values; a new vocabulary is told to load the encoder only
(init_modules=[encoder]). Tensors are then matched by name and shape, and a mismatch names the tensor and both
shapes. The source's BPE model (data.bpe_model) must be the same file as this run's when the decoder or joiner is
loaded with the same vocab_size (else the token ids would mean other pieces).

Freezing. A frozen module's parameters get requires_grad False, so asr.train.optim.build_optimizer (Adam or
ScaledAdam, over the trainable parameters) and the trainer's clipping leave them out, and DDP does not register them
(no find_unused_parameters needed). A frozen module also runs in eval mode (a forward pre-hook): dropout is off and
BatchNorm normalises with, and keeps, its running statistics, so a frozen module computes one fixed function and its
whole state_dict stays as loaded. Freezing applies on resume as well, so the optimiser matches its checkpoint.

Record. exp_dir/init_from.json (rank 0) says where the weights came from: the source file, the selection, the
modules loaded, re-initialised and frozen, and the source's full training config; the checkpoints of the run carry
it as config["init_from"], also after a resume.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

from torch import nn

from asr.checkpoint import SelectedWeights, checkpoints_by_progress, select_weights
from asr.models import ModelConfig
from asr.train.config import TrainerConfig

log = logging.getLogger("asr.train")

RECORD = "init_from.json"
# Encoder fields that change neither its tensors nor what they compute at inference.
FREE_ENCODER_KEYS = frozenset({"encoder.dropout"})
# The model-config keys each top-level module's weights depend on (a key ending in "." stands for all under it).
MODULE_KEYS = {
    "encoder": ("encoder.",),
    "decoder": ("vocab_size", "blank_id", "decoder."),
    "joiner": ("vocab_size", "encoder.d_model", "decoder.decoder_dim", "joiner."),
    "simple_am_proj": ("vocab_size", "encoder.d_model"),
    "simple_lm_proj": ("vocab_size", "decoder.decoder_dim"),
}
_VOCAB_KEYS = frozenset({"vocab_size", "blank_id"})


class InitError(ValueError):
    """trainer.init_from cannot initialise this model (config, tensor names or shapes differ)."""


# ------------------------------------------------------------------------------------------------------ modules
def resolve_modules(model: nn.Module, names: list[str], field: str) -> list[str]:
    """`names` checked against the model's modules (dotted names reach inside); duplicates dropped.

    Raises:
        InitError: a name that is not a module of the model (the error lists the top-level ones).
    """
    known = {name for name, _ in model.named_modules() if name}
    out: list[str] = []
    for name in names:
        name = str(name).strip()
        if name not in known:
            tops = ", ".join(n for n, _ in model.named_children())
            raise InitError(f"trainer.{field}: the model has no module {name!r}; its modules are {tops} (dotted "
                            f"names reach inside, e.g. encoder.layers.0)")  # fmt: skip
        if name not in out:
            out.append(name)
    return out


def _in_modules(key: str, modules: list[str]) -> bool:
    """Whether state_dict / config key `key` belongs to one of `modules` (all when empty)."""
    return not modules or any(key == m or key.startswith(m + ".") for m in modules)


def load_modules(model: nn.Module, state_dict: dict, modules: list[str], source: str) -> list[str]:
    """Copies the tensors of `modules` (the whole model when empty) from `state_dict` into `model`; the others keep
    their values. Returns the keys loaded.

    Raises:
        InitError: a tensor of those modules missing on one side, or of another shape (each named, with both shapes).
    """
    own = model.state_dict()
    wanted = [k for k in own if _in_modules(k, modules)]
    problems = []
    missing = [k for k in wanted if k not in state_dict]
    extra = [k for k in state_dict if _in_modules(k, modules) and k not in own]
    if missing:
        problems.append(f"missing in the source: {', '.join(missing[:8])}" + (" ..." if len(missing) > 8 else ""))
    if extra:
        problems.append(f"not in this model: {', '.join(extra[:8])}" + (" ..." if len(extra) > 8 else ""))
    for k in wanted:
        if k in state_dict and tuple(state_dict[k].shape) != tuple(own[k].shape):
            problems.append(f"{k}: shape {tuple(state_dict[k].shape)} in the source, {tuple(own[k].shape)} here")
    if problems:
        raise InitError(f"trainer.init_from={source}: the tensors do not fit this model:\n  " + "\n  ".join(problems))
    merged = dict(own)
    merged.update({k: state_dict[k] for k in wanted})
    model.load_state_dict(merged, strict=True)
    return wanted


def _keep_eval(module: nn.Module, args: tuple) -> None:
    """Forward pre-hook of each module inside a frozen one: it runs in eval mode whatever the trainer set (on every
    submodule, as a parent may call its children without its own forward)."""
    module.training = False


def freeze(model: nn.Module, names: list[str]) -> list[str]:
    """Freezes the named modules (checked as `resolve_modules`): no gradients, eval mode in every forward.
    Returns the names of the parameters frozen."""
    frozen: list[str] = []
    modules = dict(model.named_modules())
    for name in resolve_modules(model, names, "freeze_modules"):
        module = modules[name]
        module.requires_grad_(False)
        module.eval()
        for sub in module.modules():
            sub.register_forward_pre_hook(_keep_eval)
        frozen += [f"{name}.{p}" for p, _ in module.named_parameters()]
    if frozen:
        total = sum(p.numel() for p in model.parameters())
        fixed = sum(p.numel() for p in model.parameters() if not p.requires_grad)
        log.info("frozen: %s (%d of %d parameters, in eval mode)", ", ".join(names), fixed, total)
    return frozen


# ------------------------------------------------------------------------------------------------ compatibility
def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = list(v) if isinstance(v, (list, tuple)) else v
    return out


def _with_defaults(model_config: dict) -> dict:
    """Flat `model.*` keys of a saved model config, fields it predates filled in with ModelConfig's defaults."""
    return {**_flat(dataclasses.asdict(ModelConfig())), **_flat(model_config)}


def _depends(key: str, modules: list[str]) -> bool:
    """Whether the weights of the loaded `modules` depend on model-config `key`."""
    if key in FREE_ENCODER_KEYS:
        return False
    tops = {m.split(".")[0] for m in modules} if modules else set(MODULE_KEYS)
    for top in tops:
        deps = MODULE_KEYS.get(top)
        if deps is None or any(key == d or (d.endswith(".") and key.startswith(d)) for d in deps):
            return True  # a module we know nothing about: every key counts
    return False


def check_compatible(source_model: dict, model: dict, modules: list[str], source: str) -> None:
    """Refuses a source whose model config differs from this one where the loaded `modules` depend on it.

    Args:
        source_model: the source run's `model` config (plain dict).
        model: this run's `model` config (plain dict).
        modules: the modules loaded (empty: all).
    Raises:
        InitError: naming each differing key with both values.
    """
    src, new = _with_defaults(source_model), _with_defaults(model)
    diff = [k for k in sorted(set(src) | set(new)) if _depends(k, modules) and src.get(k) != new.get(k)]
    if not diff:
        return
    lines = [f"model.{k}: {src.get(k)!r} in the source, {new.get(k)!r} here" for k in diff]
    what = f"the modules {modules}" if modules else "the whole model"
    hint = (" The encoder (feature dim, width, heads, layers, kernel, subsampling, input normalisation) cannot "
            "change under loaded weights: train with the source's model.encoder settings.")  # fmt: skip
    if set(diff) & _VOCAB_KEYS:
        hint += (" A new vocabulary cannot reuse the decoder, joiner or simple-loss projections: load the encoder "
                 "only with trainer.init_modules=[encoder] (the rest then starts from fresh weights).")  # fmt: skip
    raise InitError(f"trainer.init_from={source} cannot initialise {what} of this model:\n  " + "\n  ".join(lines)
                    + "\n" + hint.strip())  # fmt: skip


def _check_bpe(source_config: dict, bpe_model: str, modules: list[str], source: str) -> None:
    """With the decoder or joiner loaded, the two runs' BPE models must be the same file (when both can be read)."""
    if modules and not ({m.split(".")[0] for m in modules} - {"encoder"}):
        return
    theirs = str((source_config.get("data") or {}).get("bpe_model", ""))
    if not theirs or not bpe_model or Path(theirs).resolve() == Path(bpe_model).resolve():
        return
    a, b = Path(theirs), Path(bpe_model)
    if a.is_file() and b.is_file():
        if a.read_bytes() != b.read_bytes():
            raise InitError(f"trainer.init_from={source} was trained with the BPE model {a}, this run uses {b}, "
                            f"another one: its decoder and joiner would read other pieces. Use the same BPE model, "
                            f"or load the encoder only (trainer.init_modules=[encoder])")  # fmt: skip
    else:
        log.warning("trainer.init_from=%s was trained with the BPE model %s, this run uses %s: they must be the same "
                    "when the decoder or joiner is loaded", source, theirs, bpe_model)  # fmt: skip


# ------------------------------------------------------------------------------------------------------ the entry
def select_source(cfg: TrainerConfig) -> SelectedWeights:
    """The weights trainer.init_from names: a checkpoint file, or an epoch/avg (iter/avg) choice of a directory.
    Raises FileNotFoundError, asr.checkpoint.CheckpointError or UnsafeCheckpointError (never loads unsafely)."""
    path = Path(cfg.init_from)
    if path.is_file():
        return select_weights(path.parent, use_averaged_model=cfg.init_use_averaged_model, checkpoint=path)
    if not path.is_dir():
        raise FileNotFoundError(f"trainer.init_from={cfg.init_from}: no such checkpoint file or experiment directory")
    return select_weights(path, cfg.init_epoch, cfg.init_avg, cfg.init_iter, cfg.init_use_averaged_model)


def initialise(model: nn.Module, cfg: TrainerConfig, model_config: dict, bpe_model: str = "") -> dict:
    """Loads trainer.init_from's weights (its init_modules, all when empty) into `model`; returns the record.

    Args:
        model: the freshly built model; modules not loaded keep their values.
        cfg: the trainer config (init_from, init_epoch, init_avg, init_iter, init_use_averaged_model, init_modules).
        model_config: this run's `model` config as a plain dict.
        bpe_model: this run's data.bpe_model, compared with the source's when decoder or joiner are loaded.
    Raises:
        InitError: the source's config or tensors do not fit (every difference named).
        FileNotFoundError, asr.checkpoint.CheckpointError, UnsafeCheckpointError: the source cannot be read safely.
    """
    modules = resolve_modules(model, list(cfg.init_modules), "init_modules")
    weights = select_source(cfg)
    source = f"{cfg.init_from} ({weights.description})"
    check_compatible(weights.train_config.get("model") or {}, model_config, modules, source)
    _check_bpe(weights.train_config, bpe_model, modules, source)
    loaded = load_modules(model, weights.state_dict, modules, source)
    fresh = [t for t, _ in model.named_children() if not any(k.startswith(t + ".") for k in loaded)]
    log.info("initialised %s from %s (%s): %d tensors; fresh weights in %s", ", ".join(modules) or "the whole model",
             weights.source, weights.description, len(loaded), ", ".join(fresh) or "nothing")  # fmt: skip
    return {
        "init_from": str(cfg.init_from),
        "source": str(weights.source.resolve()),
        "selection": weights.description,
        "epoch": cfg.init_epoch, "avg": cfg.init_avg, "iter": cfg.init_iter,
        "use_averaged_model": cfg.init_use_averaged_model,
        "modules": modules or ["(all)"],
        "reinitialised": fresh,
        "tensors_loaded": len(loaded),
        "source_config": weights.train_config,
    }  # fmt: skip


def prepare_model(model: nn.Module, cfg: TrainerConfig, model_config: dict, bpe_model: str = "",
                  is_main: bool = True) -> dict | None:
    """The trainer's fine-tuning step, before the optimiser is built: loads trainer.init_from unless exp_dir holds a
    checkpoint (resume wins), then freezes trainer.freeze_modules. Rank 0 writes exp_dir/init_from.json.

    Returns:
        The record of where the weights came from (this start's, or the one a resumed run started with), for the
        checkpoints' config["init_from"]; None when the run does not start from another's weights.
    """
    if cfg.init_modules and not cfg.init_from:
        raise InitError(f"trainer.init_modules={list(cfg.init_modules)} needs trainer.init_from (a checkpoint or an "
                        f"experiment directory)")  # fmt: skip
    resolve_modules(model, list(cfg.freeze_modules), "freeze_modules")  # a typo fails before anything is loaded
    exp_dir = Path(cfg.exp_dir)
    record_path = exp_dir / RECORD
    record = None
    resuming = bool(checkpoints_by_progress(exp_dir))
    if cfg.init_from and resuming:
        log.info("trainer.init_from=%s ignored: %s holds a checkpoint, the run resumes from it", cfg.init_from,
                 exp_dir)  # fmt: skip
    if resuming and record_path.is_file():
        record = json.loads(record_path.read_text())
    elif cfg.init_from and not resuming:
        record = initialise(model, cfg, model_config, bpe_model)
    if cfg.freeze_modules:
        if record is None and not resuming:
            log.warning("trainer.freeze_modules=%s without trainer.init_from: frozen at their random initial values",
                        list(cfg.freeze_modules))  # fmt: skip
        freeze(model, list(cfg.freeze_modules))
        if record is not None:
            record["frozen"] = list(cfg.freeze_modules)
    if is_main and not resuming:
        if record is not None:
            exp_dir.mkdir(parents=True, exist_ok=True)
            tmp = record_path.with_name(f".{RECORD}.tmp")
            tmp.write_text(json.dumps(record, indent=1, default=str) + "\n")
            tmp.replace(record_path)
        elif record_path.is_file():  # left by an earlier start whose checkpoints are gone: not this run's source
            record_path.unlink()
    return record
