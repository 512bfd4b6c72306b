"""Loading a model for decoding from an experiment directory: which checkpoints, averaged how, built from what.

Shared by recipes/librispeech/decode.py and `asr-transcribe`. The model is rebuilt from the config saved in the
checkpoint (its "config" entry, else the exp dir's config.yaml), so decoding needs no model flags.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from asr.models import ModelConfig, Transducer, build_model
from asr.train.checkpoint import (
    CheckpointError,
    average_checkpoints,
    average_with_model_avg,
    find_checkpoints,
    load_checkpoint,
)

log = logging.getLogger(__name__)

_EPOCH_RE = re.compile(r"^epoch-(\d+)\.pt$")
_STEP_RE = re.compile(r"^checkpoint-(\d+)\.pt$")


@dataclass
class LoadedModel:
    model: Transducer
    # The resolved training config (plain dict) the model was built from: its "data" entry gives the BPE model.
    train_config: dict
    # What was loaded, for logs and result headers, e.g. "epoch-30-avg-9" or "iter-4000-avg-2-use-averaged".
    description: str


def resolve_device(device: str) -> torch.device:
    """"auto" -> CUDA when available, else CPU; anything else as torch.device reads it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _numbered(exp_dir: Path, pattern: re.Pattern) -> dict[int, Path]:
    return {int(m.group(1)): p for p in find_checkpoints(exp_dir) if (m := pattern.match(p.name))}


def _state_dict_and_end(
    exp_dir: Path, epoch: int, avg: int, iteration: int, use_averaged_model: bool
) -> tuple[dict, Path, str]:
    """The weights to decode with, the newest checkpoint they come from, and a description."""
    if avg < 1:
        raise ValueError(f"avg must be >= 1, got {avg}")
    suffix = "-use-averaged" if use_averaged_model else ""
    if iteration > 0:
        steps = _numbered(exp_dir, _STEP_RE)
        eligible = sorted((n for n in steps if n <= iteration), reverse=True)
        if not eligible:
            raise FileNotFoundError(f"no checkpoint-N.pt with N <= {iteration} in {exp_dir}")
        chosen = [steps[n] for n in eligible]
        desc = f"iter-{iteration}-avg-{avg}{suffix}"
    else:
        epochs = _numbered(exp_dir, _EPOCH_RE)
        if not epochs:
            raise FileNotFoundError(f"no epoch-E.pt checkpoint in {exp_dir}")
        epoch = epoch if epoch > 0 else max(epochs)
        wanted = list(range(epoch, epoch - avg - 1, -1))  # epoch .. epoch-avg (the last only as a start point)
        missing = [e for e in wanted[:avg] if e not in epochs]
        if missing:
            raise FileNotFoundError(
                f"epoch {epoch} with avg {avg} needs epoch-{{{','.join(map(str, missing))}}}.pt, missing in {exp_dir} "
                f"(found epochs {sorted(epochs)})"
            )
        chosen = [epochs[e] for e in wanted if e in epochs]
        desc = f"epoch-{epoch}-avg-{avg}{suffix}"

    end = chosen[0]
    if not use_averaged_model:
        if len(chosen) < avg:
            raise FileNotFoundError(f"{desc} needs {avg} checkpoints, found {len(chosen)} in {exp_dir}")
        paths = chosen[:avg]
        log.info("averaging %s", ", ".join(p.name for p in paths))
        return average_checkpoints(paths, key="model"), end, desc
    # The running average covers training from its start: the window of `avg` checkpoints is the difference of the
    # running averages at its two ends; with no checkpoint before the window, the running average itself.
    if len(chosen) > avg:
        log.info("model_avg between %s and %s", chosen[avg].name, end.name)
        return average_with_model_avg(chosen[avg], end), end, desc
    state = load_checkpoint(end)
    if state.get("model_avg") is None:
        raise CheckpointError(f"{end} holds no running average (model_avg); decode with use_averaged_model=false")
    log.info("model_avg of %s (the average since the start of training)", end.name)
    return state["model_avg"], end, desc


def build_from_config(train_config: dict) -> Transducer:
    """The transducer described by the "model" entry of a saved training config."""
    if "model" not in train_config:
        raise CheckpointError("the saved training config has no 'model' entry")
    schema = OmegaConf.structured(ModelConfig)
    cfg = OmegaConf.to_object(OmegaConf.merge(schema, train_config["model"]))
    return build_model(cfg)


def load_model(
    exp_dir: str | Path,
    epoch: int = 0,
    avg: int = 1,
    iteration: int = 0,
    use_averaged_model: bool = False,
    checkpoint: str | Path = "",
    device: str | torch.device = "cpu",
) -> LoadedModel:
    """The model to decode with, in eval mode on `device`.

    Args:
        exp_dir: experiment directory of a training run.
        epoch: last epoch of the average (0: the newest epoch-E.pt).
        avg: checkpoints averaged: epoch-(epoch-avg+1) .. epoch-epoch (icefall's --epoch/--avg).
        iteration: when > 0, average the `avg` newest checkpoint-N.pt with N <= iteration instead.
        use_averaged_model: use the running average "model_avg" kept by training.
        checkpoint: one checkpoint file, overriding epoch/avg/iteration.
        device: where the model goes.
    """
    exp_dir = Path(exp_dir)
    if checkpoint:
        state = load_checkpoint(checkpoint)
        key = "model_avg" if use_averaged_model else "model"
        if state.get(key) is None:
            raise CheckpointError(f"{checkpoint} holds no {key!r}")
        state_dict, end = state[key], Path(checkpoint)
        desc = end.stem + ("-use-averaged" if use_averaged_model else "")
        train_config = state.get("config")
    else:
        if not exp_dir.is_dir():
            raise FileNotFoundError(f"experiment directory {exp_dir} does not exist")
        state_dict, end, desc = _state_dict_and_end(exp_dir, epoch, avg, iteration, use_averaged_model)
        train_config = load_checkpoint(end, mmap=True).get("config")
    if not train_config:
        yaml = exp_dir / "config.yaml"
        if not yaml.is_file():
            raise CheckpointError(f"{end} holds no training config and {yaml} does not exist")
        train_config = OmegaConf.to_container(OmegaConf.load(yaml), resolve=True)
    model = build_from_config(train_config)
    model.load_state_dict(state_dict, strict=True)
    model.requires_grad_(False)
    model.to(resolve_device(device) if isinstance(device, str) else device).eval()
    return LoadedModel(model=model, train_config=train_config, description=desc)
