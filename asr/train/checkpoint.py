"""Checkpoint files: atomic writes, integrity on load, discovery, pruning and averaging.

A checkpoint is a dict (see asr/train/__init__.py for its keys) saved with torch.save. It is written to a
temporary file in the same directory, flushed to disk and renamed over the final name, so a crash leaves either the
old file or the new one, never half of one. A file truncated some other way (a full disk, a copy cut short) fails to
load with `CheckpointError`, and `latest_checkpoint` then falls back to the previous file with a warning.
"""

import logging
import os
import re
import warnings
from pathlib import Path

import torch

log = logging.getLogger(__name__)

_STEP_RE = re.compile(r"^checkpoint-(\d+)\.pt$")
_EPOCH_RE = re.compile(r"^epoch-(\d+)\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be read (truncated, corrupted or not a checkpoint)."""


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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict:
    """Reads a checkpoint written by `save_checkpoint`.

    Raises:
        CheckpointError: the file is missing, truncated or does not hold a checkpoint dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False, mmap=mmap)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError... on damaged files
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
        if m := _STEP_RE.match(p.name):
            steps.append((int(m.group(1)), p))
        elif m := _EPOCH_RE.match(p.name):
            epochs.append((int(m.group(1)), p))
    return [p for _, p in sorted(steps)] + [p for _, p in sorted(epochs)]


def _progress_key(state: dict) -> tuple[int, int]:
    """Orders checkpoints by training progress: batches done, then epoch-end after mid-epoch."""
    sampler = state.get("sampler") or {}
    return int(state.get("batch_idx_train", 0)), int(bool(sampler.get("epoch_finished", False)))


def checkpoints_by_progress(exp_dir: str | Path) -> list[Path]:
    """The readable checkpoints of `exp_dir`, the one with the most training done first.

    Unreadable files (truncated, corrupted) are left out with a warning, so callers fall back to the previous one.
    """
    found = []
    for path in find_checkpoints(exp_dir):
        try:
            state = load_checkpoint(path, mmap=True)  # mmap: reads the counters without the tensors
        except CheckpointError as e:
            warnings.warn(f"skipping unreadable checkpoint: {e}", stacklevel=2)
            log.warning("skipping unreadable checkpoint: %s", e)
            continue
        found.append((_progress_key(state), path))
        del state
    return [p for _, p in sorted(found, key=lambda kp: kp[0], reverse=True)]


def latest_checkpoint(exp_dir: str | Path) -> Path | None:
    """The readable checkpoint of `exp_dir` with the most training done, or None (see checkpoints_by_progress)."""
    found = checkpoints_by_progress(exp_dir)
    return found[0] if found else None


def remove_old_checkpoints(exp_dir: str | Path, keep_last_k: int) -> list[Path]:
    """Deletes all but the `keep_last_k` newest checkpoint-{step}.pt files (epoch files are kept); returns them."""
    if keep_last_k <= 0:
        return []
    steps = [p for p in find_checkpoints(exp_dir) if _STEP_RE.match(p.name)]
    removed = steps[:-keep_last_k]
    for p in removed:
        p.unlink(missing_ok=True)
    return removed


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
