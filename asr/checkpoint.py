"""Checkpoint files: names, layout, atomic save, safe load, discovery, pruning, averaging and selection.

The one home of checkpoints: training saves and resumes through it, decoding (asr.decode.inference) selects and
averages through it, and so do export and fine-tuning. It imports nothing of asr.train, so decoding does not load
the training code.

Names (in an experiment directory, trainer.exp_dir):
    checkpoint-{step}.pt   every trainer.save_every_n batches (step = batches trained in all); the last
                           trainer.keep_last_k are kept (`remove_old_checkpoints`)
    epoch-{E}.pt           at the end of epoch E (1-based), and where trainer.max_minutes or max_steps ends epoch E
                           (partial: "epoch_finished" false); all kept
    config.yaml            the resolved training config of the latest start (used when a checkpoint holds none)

Layout: each .pt is a dict saved with torch.save:
    "model"              state_dict of the model
    "model_avg"          float64 state_dict of the running average (trainer.average_period), or None
    "optimizer", "scheduler", "grad_scaler"   their state_dicts
    "sampler"            {"epoch", "batches_done", "epoch_finished", "lhotse": sampler state_dict to resume the
                         epoch from, or None}
    "rng"                {"world_size", "states": one dict per rank} (asr.train.resume.capture_rng: Python's state
                         as a tuple of ints, NumPy's and torch's as int64 / uint8 tensors)
    "epoch", "batch_idx_train", "batches_per_epoch"   counters (batch_idx_train: batches trained in all)
    "counters"           bad utterances, skipped batches, non-finite gradients
    "train_seconds"      wall time of training so far (for trainer.max_minutes)
    "precision"          the resolved training precision: "bf16", "fp16" or "none" (absent in older checkpoints)
    "config"             plain dict of the resolved training config (its "model" entry rebuilds the model, its
                         "data" entry names the BPE model)

Writing: to a temporary file in the same directory, flushed to disk and renamed over the final name, so a crash
leaves either the old file or the new one, never half of one.

Loading is safe: `torch.load(..., weights_only=True)`, which builds only tensors and plain containers (dict, list,
tuple, str, numbers) and never calls code named by the file. A file that would need more (a pickle that runs code,
objects of other classes) is refused with `UnsafeCheckpointError`, naming the file and the globals it asks for, and
nothing of it is executed. Checkpoints written before this rule (version 0.1) hold NumPy arrays in their RNG state:
for them, and only them, NumPy's array reconstruction (`_LEGACY_NUMPY_GLOBALS`) is allowed as well. A truncated or
corrupted file raises `CheckpointError`; `checkpoints_by_progress` skips such files with a warning, so that resume
falls back to the previous one, but stops at an unsafe file. This module holds the package's only torch.load of
checkpoints: every loading path (resume, decoding, averaging, asr-transcribe, export, fine-tuning) goes through
`load_checkpoint`.
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

STEP_RE = re.compile(r"^checkpoint-(\d+)\.pt$")
EPOCH_RE = re.compile(r"^epoch-(\d+)\.pt$")
CONFIG_YAML = "config.yaml"


def step_checkpoint_name(step: int) -> str:
    """File name of the checkpoint written after `step` batches in all: checkpoint-{step}.pt."""
    return f"checkpoint-{step}.pt"


def epoch_checkpoint_name(epoch: int) -> str:
    """File name of the checkpoint written at the end of epoch `epoch` (1-based): epoch-{epoch}.pt."""
    return f"epoch-{epoch}.pt"


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (missing, truncated, corrupted, refused or not a checkpoint)."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint refused because loading it would run code or build objects other than tensors and containers."""


def _legacy_numpy_globals() -> list:
    """What NumPy arrays in pickles need (the RNG state of version 0.1 checkpoints): the array reconstruction, the
    array and dtype classes, and the uint32 dtype of NumPy's MT19937 key. Under NumPy 1.x the reconstruction was
    named numpy.core.multiarray._reconstruct."""
    reconstruct = np._core.multiarray._reconstruct
    return [
        reconstruct,
        (reconstruct, "numpy.core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
        type(np.dtype(np.uint32)),
    ]


_LEGACY_NUMPY_GLOBALS = _legacy_numpy_globals()


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Writes `state` to `path` atomically (temporary file, fsync, rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    try:  # make the rename itself durable
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _refusal(path: Path, error: Exception) -> CheckpointError:
    """The error for a file that the weights-only unpickler rejected: unsafe when its pickle names globals (classes,
    functions) beyond the allowed ones, found by scanning the opcodes (which runs nothing); else damaged."""
    try:
        wanted = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not even scannable: damaged
        wanted = []
    allowed = {f"{g.__module__}.{g.__qualname__}" for g in _LEGACY_NUMPY_GLOBALS if not isinstance(g, tuple)}
    allowed |= {name for g in _LEGACY_NUMPY_GLOBALS if isinstance(g, tuple) for name in g[1:]}
    unsafe = [g for g in wanted if g not in allowed]
    if unsafe:
        return UnsafeCheckpointError(
            f"refused to load checkpoint {path}: loading it would run code or build objects other than tensors and "
            f"plain containers (it asks for {', '.join(unsafe)}); nothing of it was executed. Load only checkpoints "
            f"from a source you trust, written by this toolkit."
        )
    reason = str(error).strip().splitlines()[-1][:300] if str(error).strip() else type(error).__name__
    return CheckpointError(f"checkpoint {path} is truncated or corrupted ({reason})")


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict:
    """Reads a checkpoint written by `save_checkpoint`, safely (weights only; see the module docstring).

    Args:
        path: the .pt file.
        map_location: where tensors go.
        mmap: map the file instead of reading it (cheap when only the counters are wanted).
    Raises:
        UnsafeCheckpointError: the file would run code or build objects other than tensors and containers.
        CheckpointError: the file is missing, truncated or does not hold a checkpoint dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with torch.serialization.safe_globals(_LEGACY_NUMPY_GLOBALS):
            state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:  # the weights-only unpickler's refusal, or a damaged pickle
        raise _refusal(path, e) from None
    except Exception as e:  # torch raises RuntimeError, EOFError... on damaged files
        raise CheckpointError(f"checkpoint {path} is truncated or corrupted ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a training checkpoint (no 'model' entry)")
    return state


def find_checkpoints(exp_dir: str | Path) -> list[Path]:
    """The checkpoint-{step}.pt and epoch-{E}.pt files of `exp_dir`, by name: steps ascending, then epochs."""
    exp_dir = Path(exp_dir)
    if not exp_dir.is_dir():
        return []
    steps, epochs = [], []
    for p in exp_dir.iterdir():
        if m := STEP_RE.match(p.name):
            steps.append((int(m.group(1)), p))
        elif m := EPOCH_RE.match(p.name):
            epochs.append((int(m.group(1)), p))
    return [p for _, p in sorted(steps)] + [p for _, p in sorted(epochs)]


def numbered_checkpoints(exp_dir: str | Path, pattern: re.Pattern = EPOCH_RE) -> dict[int, Path]:
    """The files of `exp_dir` whose names match `pattern` (EPOCH_RE or STEP_RE), by their number."""
    return {int(m.group(1)): p for p in find_checkpoints(exp_dir) if (m := pattern.match(p.name))}


def _progress_key(state: dict) -> tuple[int, int]:
    """Orders checkpoints by training progress: batches done, then epoch-end after mid-epoch."""
    sampler = state.get("sampler") or {}
    return int(state.get("batch_idx_train", 0)), int(bool(sampler.get("epoch_finished", False)))


def checkpoints_by_progress(exp_dir: str | Path) -> list[Path]:
    """The readable checkpoints of `exp_dir`, the one with the most training done first.

    Unreadable files (truncated, corrupted) are left out with a warning, so callers fall back to the previous one.

    Raises:
        UnsafeCheckpointError: a file would run code: the directory is not trusted, nothing is resumed from it.
    """
    found = []
    for path in find_checkpoints(exp_dir):
        try:
            state = load_checkpoint(path, mmap=True)  # mmap: reads the counters without the tensors
        except UnsafeCheckpointError:
            raise
        except CheckpointError as e:
            warnings.warn(f"skipping unreadable checkpoint: {e}", stacklevel=2)
            log.warning("skipping unreadable checkpoint: %s", e)
            continue
        found.append((_progress_key(state), path))
        del state
    return [p for _, p in sorted(found, key=lambda kp: kp[0], reverse=True)]


def remove_old_checkpoints(exp_dir: str | Path, keep_last_k: int) -> list[Path]:
    """Deletes all but the `keep_last_k` newest checkpoint-{step}.pt files (epoch files are kept); returns them."""
    if keep_last_k <= 0:
        return []
    steps = [p for p in find_checkpoints(exp_dir) if STEP_RE.match(p.name)]
    removed = steps[:-keep_last_k]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


# ------------------------------------------------------------------------------------------------------ averaging
def average_state_dicts(state_dicts: list[dict]) -> dict:
    """Element-wise mean of state dicts with the same keys.

    Floating tensors are averaged in float64 and cast back; integer tensors (e.g. BatchNorm's num_batches_tracked)
    get the mean rounded down, as icefall does.
    """
    if not state_dicts:
        raise ValueError("nothing to average")
    keys = list(state_dicts[0])
    for i, sd in enumerate(state_dicts[1:], 1):
        if list(sd) != keys:
            raise ValueError(f"state dict {i} has different keys from the first")
    n = len(state_dicts)
    out = {}
    for k in keys:
        first = state_dicts[0][k]
        if first.is_floating_point():
            total = sum(sd[k].to(torch.float64) for sd in state_dicts)
            out[k] = (total / n).to(first.dtype)
        else:
            total = sum(sd[k].to(torch.int64) for sd in state_dicts)
            out[k] = torch.div(total, n, rounding_mode="floor").to(first.dtype)
    return out


def average_checkpoints(paths: list[Path], key: str = "model") -> dict:
    """The mean of the `key` state dicts of the checkpoint files `paths` (icefall's --avg)."""
    if not paths:
        raise ValueError("average_checkpoints needs at least one path")
    return average_state_dicts([load_checkpoint(p)[key] for p in paths])


def average_with_model_avg(start: Path, end: Path) -> dict:
    """The average of the model over the batches between checkpoints `start` and `end` (exclusive, inclusive).

    Uses the running averages stored under "model_avg" (icefall's average_checkpoints_with_averaged_model):
    avg(start, end] = (avg_end * n_end - avg_start * n_start) / (n_end - n_start), n = batch_idx_train.
    """
    s, e = load_checkpoint(start), load_checkpoint(end)
    if s.get("model_avg") is None or e.get("model_avg") is None:
        raise CheckpointError("both checkpoints need a running average (trainer.average_period > 0)")
    n_s, n_e = int(s["batch_idx_train"]), int(e["batch_idx_train"])
    if n_e <= n_s:
        raise ValueError(f"{end} ({n_e} batches) must come after {start} ({n_s} batches)")
    out = {}
    for k, v_e in e["model_avg"].items():
        v_s = s["model_avg"][k]
        if v_e.is_floating_point():
            mean = (v_e.to(torch.float64) * n_e - v_s.to(torch.float64) * n_s) / (n_e - n_s)
            out[k] = mean.to(e["model"][k].dtype)
        else:
            out[k] = e["model"][k]
    return out


# ------------------------------------------------------------------------------------------------------ selection
@dataclass
class SelectedWeights:
    """Weights chosen from an experiment directory (`select_weights`)."""

    # The state_dict to load into the model.
    state_dict: dict
    # The newest checkpoint the weights come from.
    source: Path
    # What was chosen, for logs and result headers: "epoch-30-avg-9", "iter-4000-avg-2-use-averaged", "epoch-3".
    description: str
    # The resolved training config (plain dict): the checkpoint's "config", else the exp dir's config.yaml.
    train_config: dict


def _averaged(exp_dir: Path, epoch: int, avg: int, iteration: int, use_averaged_model: bool) -> tuple[dict, Path, str]:
    """The weights of an epoch/avg or iter/avg choice, the newest checkpoint they come from, and a description."""
    if avg < 1:
        raise ValueError(f"avg must be >= 1, got {avg}")
    suffix = "-use-averaged" if use_averaged_model else ""
    if iteration > 0:
        steps = numbered_checkpoints(exp_dir, STEP_RE)
        eligible = sorted((n for n in steps if n <= iteration), reverse=True)
        if not eligible:
            raise FileNotFoundError(f"no checkpoint-N.pt with N <= {iteration} in {exp_dir}")
        chosen = [steps[n] for n in eligible]
        desc = f"iter-{iteration}-avg-{avg}{suffix}"
    else:
        epochs = numbered_checkpoints(exp_dir, EPOCH_RE)
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


def training_config(state: dict, exp_dir: str | Path, source: str | Path) -> dict:
    """The resolved training config of a checkpoint `state` read from `source`: its "config" entry, else
    `exp_dir`/config.yaml. Raises CheckpointError when neither exists."""
    config = state.get("config")
    if config:
        return config
    yaml = Path(exp_dir) / CONFIG_YAML
    if not yaml.is_file():
        raise CheckpointError(f"{source} holds no training config and {yaml} does not exist")
    from omegaconf import OmegaConf  # only for checkpoints without a config: keeps this module light

    return OmegaConf.to_container(OmegaConf.load(yaml), resolve=True)


def select_weights(
    exp_dir: str | Path,
    epoch: int = 0,
    avg: int = 1,
    iteration: int = 0,
    use_averaged_model: bool = False,
    checkpoint: str | Path = "",
) -> SelectedWeights:
    """The weights of a trained model, chosen as icefall's decode.py chooses them.

    Args:
        exp_dir: experiment directory of a training run.
        epoch: last epoch of the average (0: the newest epoch-E.pt).
        avg: checkpoints averaged: epoch-(epoch-avg+1) .. epoch-epoch (icefall's --epoch/--avg).
        iteration: when > 0, average the `avg` newest checkpoint-N.pt with N <= iteration instead.
        use_averaged_model: use the running average "model_avg" kept by training (with avg > 1: over the window
            only, from the running averages at its two ends).
        checkpoint: one checkpoint file, overriding epoch/avg/iteration.
    Raises:
        FileNotFoundError: the directory or the checkpoints the choice needs do not exist.
        CheckpointError: a checkpoint is damaged, refused as unsafe, or lacks what the choice needs.
    """
    exp_dir = Path(exp_dir)
    if checkpoint:
        end = Path(checkpoint)
        state = load_checkpoint(end)
        key = "model_avg" if use_averaged_model else "model"
        if state.get(key) is None:
            raise CheckpointError(f"{end} holds no {key!r}")
        desc = end.stem + ("-use-averaged" if use_averaged_model else "")
        return SelectedWeights(state[key], end, desc, training_config(state, exp_dir, end))
    if not exp_dir.is_dir():
        raise FileNotFoundError(f"experiment directory {exp_dir} does not exist")
    state_dict, end, desc = _averaged(exp_dir, epoch, avg, iteration, use_averaged_model)
    config = training_config(load_checkpoint(end, mmap=True), exp_dir, end)
    return SelectedWeights(state_dict, end, desc, config)
