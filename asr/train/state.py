"""The training state: what goes into a checkpoint and what a resumed run takes back out of it.

`TrainingState` is where training stands (epoch, batches, counters, wall time); `Trainables` the objects whose
state_dicts are saved (model, its running average, optimiser, schedule, grad scaler). `checkpoint_state` makes the
dict that asr's checkpoint files hold, `restore_state` puts one back; `save_state` / `load_latest_state` write and
find the files in the experiment directory (only rank 0 writes; every rank reads).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from asr.checkpoint import (
    CheckpointError,
    checkpoints_by_progress,
    UnsafeCheckpointError,
    load_checkpoint,
    remove_old_checkpoints,
    save_checkpoint,
)
from asr.train.distributed import DistInfo, barrier, gather_objects
from asr.train.optim import Schedule
from asr.train.resume import capture_rng, is_lhotse_state, sampler_state_at
from asr.train.save_retry import SaveRetry

log = logging.getLogger("asr.train")


def _no_counts() -> dict[str, int]:
    return {"bad_utterances": 0, "skipped_batches": 0, "nonfinite_grads": 0, "unreadable_cuts": 0,
            "oom_batches": 0}


@dataclass
class TrainingState:
    """Where training stands; all of it is saved in checkpoints."""

    epoch: int = 1  # the epoch in progress, 1-based
    batches_done: int = 0  # batches of `epoch` consumed
    batch_idx_train: int = 0  # batches consumed in all epochs
    batches_per_epoch: int | None = None  # known after the first full epoch
    counters: dict[str, int] = field(default_factory=_no_counts)  # bad utterances, skipped batches, bad gradients
    train_seconds: float = 0.0  # wall time of training in all runs so far (for trainer.max_minutes)
    # The sampler's state_dict at the start of `epoch` (lhotse): with batches_done, where a resume continues.
    epoch_start_sampler: dict | None = None

    def sampler_state(self, epoch_finished: bool) -> dict:
        """The checkpoint's "sampler" entry."""
        lhotse = None
        if is_lhotse_state(self.epoch_start_sampler) and not epoch_finished:
            lhotse = sampler_state_at(self.epoch_start_sampler, self.batches_done)
        return {"epoch": self.epoch, "batches_done": self.batches_done, "epoch_finished": epoch_finished,
                "lhotse": lhotse}  # fmt: skip

    def resume_sampler_state(self, world_size: int) -> dict | None:
        """The lhotse sampler state that continues the epoch in progress after its `batches_done` batches; None at
        an epoch's start or for another sampler. Saved with another number of ranks: the epoch restarts (warned)."""
        if self.batches_done == 0 or not is_lhotse_state(self.epoch_start_sampler):
            return None
        saved_ranks = self.epoch_start_sampler.get("world_size", world_size)
        if saved_ranks != world_size:
            log.warning("checkpoint sampler state is for %d ranks, now %d: epoch %d restarts from its first batch "
                        "(%d batches are seen twice)", saved_ranks, world_size, self.epoch,
                        self.batches_done)  # fmt: skip
            self.batches_done = 0
            return None
        return sampler_state_at(self.epoch_start_sampler, self.batches_done)


@dataclass
class Trainables:
    """The objects of training whose state_dicts a checkpoint holds."""

    model: nn.Module  # not wrapped in DDP
    model_avg: nn.Module | None  # the running average (rank 0 only), or None
    optimizer: torch.optim.Optimizer
    schedule: Schedule
    scaler: torch.amp.GradScaler


def checkpoint_state(
    state: TrainingState, parts: Trainables, dist: DistInfo, epoch_finished: bool, precision: str, config: dict
) -> dict:
    """The dict a checkpoint holds (its keys: asr.train's docstring). Collective: every rank must call it (the RNG
    states of all ranks are gathered).

    Args:
        precision: the resolved amp mode the run trains in: "bf16", "fp16" or "none".
        config: the resolved config as a plain dict.
    """
    rng = gather_objects(capture_rng(), dist)
    return {
        "model": parts.model.state_dict(),
        "model_avg": None if parts.model_avg is None else parts.model_avg.state_dict(),
        "optimizer": parts.optimizer.state_dict(),
        "scheduler": parts.schedule.state_dict(),
        "grad_scaler": parts.scaler.state_dict(),
        "sampler": state.sampler_state(epoch_finished),
        "rng": {"world_size": dist.world_size, "states": rng},
        "epoch": state.epoch,
        "batch_idx_train": state.batch_idx_train,
        "batches_per_epoch": state.batches_per_epoch,
        "counters": dict(state.counters),
        "train_seconds": state.train_seconds,
        "precision": precision,
        "config": config,
    }


def restore_state(saved: dict, state: TrainingState, parts: Trainables, dist: DistInfo) -> dict[str, Any] | None:
    """Loads a checkpoint's dict into `parts` and `state`; returns this rank's RNG state, or None when the
    checkpoint was written by another number of ranks (warned)."""
    parts.model.load_state_dict(saved["model"])
    if parts.model_avg is not None and saved.get("model_avg") is not None:
        parts.model_avg.load_state_dict(saved["model_avg"])
    parts.optimizer.load_state_dict(saved["optimizer"])
    parts.schedule.load_state_dict(saved["scheduler"])
    parts.scaler.load_state_dict(saved["grad_scaler"])
    sampler = saved["sampler"]
    state.epoch = int(sampler["epoch"]) + (1 if sampler["epoch_finished"] else 0)
    state.batches_done = 0 if sampler["epoch_finished"] else int(sampler["batches_done"])
    state.epoch_start_sampler = None if sampler["epoch_finished"] else sampler.get("lhotse")
    state.batch_idx_train = int(saved["batch_idx_train"])
    state.batches_per_epoch = saved.get("batches_per_epoch")
    state.counters.update(saved.get("counters", {}))
    state.train_seconds = float(saved.get("train_seconds", 0.0))
    rng = saved["rng"]
    if rng["world_size"] != dist.world_size:
        log.warning("checkpoint was written with %d ranks, now %d: RNG states not restored",
                    rng["world_size"], dist.world_size)  # fmt: skip
        return None
    return rng["states"][dist.rank]


def save_state(exp_dir: Path, name: str, saved: dict, keep_last_k: int, dist: DistInfo,
               retry: SaveRetry | None = None) -> bool:
    """Rank 0 writes `saved` as exp_dir/name (atomically) and prunes old step checkpoints; every rank waits.

    With `retry`, an OSError of the write (a full disk, an I/O error) is logged and counted instead of raised, the
    older checkpoints are kept, and every rank raises CheckpointWriteError once trainer.max_save_failures writes
    in a row failed. Returns whether the file was written (the same on every rank).
    """
    written = True
    if dist.is_main:
        path = exp_dir / name
        if retry is None:
            save_checkpoint(path, saved)
        else:
            written = retry.attempt(lambda: save_checkpoint(path, saved), str(path))
        if written:
            removed = remove_old_checkpoints(exp_dir, keep_last_k)
            log.info("saved %s%s", path, f" (removed {len(removed)} old)" if removed else "")
    if retry is None:
        barrier(dist)
        return written
    written, stop = retry.outcome(written, dist)  # a collective, so also the barrier: every rank decides alike
    if stop:
        raise retry.error()
    return written


def load_latest_state(exp_dir: Path, dist: DistInfo) -> tuple[dict, Path] | None:
    """The readable checkpoint of exp_dir with the most batches trained, and its path; None when there is none.
    A file readable when scanned but not in full is skipped with a warning (the previous one is tried)."""
    for stale in exp_dir.glob(".*.pt.tmp-*") if dist.is_main else []:
        stale.unlink(missing_ok=True)  # left by a run killed while saving
    for path in checkpoints_by_progress(exp_dir):  # newest first, unreadable ones skipped with a warning
        try:
            return load_checkpoint(path, map_location="cpu"), path
        except UnsafeCheckpointError:
            raise  # a file that would run code is not a damaged one: never fall back past it
        except CheckpointError as e:
            warnings.warn(f"{e}; trying the previous checkpoint", stacklevel=2)
            log.warning("%s; trying the previous checkpoint", e)
    return None
