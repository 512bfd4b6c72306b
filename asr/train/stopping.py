"""When training stops: trainer.num_epochs, trainer.max_steps (batches) or trainer.max_minutes (wall time summed over
resumed runs and measured on rank 0's clock, so every rank stops after the same batch), whichever comes first; and
what the learning-rate schedule's cool-down needs to know of it (the total batches, or the share of time spent).
"""

from __future__ import annotations

import time

import torch

from asr.train.config import TrainerConfig
from asr.train.distributed import DistInfo, all_reduce_sum
from asr.train.optim import Schedule
from asr.train.state import TrainingState


class StoppingRules:
    """The limits of trainer.num_epochs / max_steps / max_minutes applied to a TrainingState.

    `clock` (seconds, monotonic) is replaceable for tests. Call `start` when a run (first or resumed) begins and
    `update_time` after every batch.
    """

    def __init__(self, cfg: TrainerConfig, schedule: Schedule, dist: DistInfo) -> None:
        if cfg.max_minutes < 0:
            raise ValueError(f"trainer.max_minutes must be >= 0, got {cfg.max_minutes}")
        self.num_epochs, self.max_steps, self.max_minutes = cfg.num_epochs, cfg.max_steps, cfg.max_minutes
        self.schedule, self.dist = schedule, dist
        self.clock = time.monotonic
        self._clock_start, self._seconds_before = 0.0, 0.0

    def start(self, state: TrainingState) -> None:
        """Starts this run's clock (after a resume: on top of the saved wall time) and tells the schedule what is
        known of the whole training's length."""
        self._clock_start, self._seconds_before = self.clock(), state.train_seconds
        self.update_time(state)
        self.set_total_batches(state)

    def batches_left(self, state: TrainingState) -> int | None:
        """Batches left under max_steps, or under num_epochs once an epoch's length is known; else None."""
        if self.max_steps > 0:
            return self.max_steps - state.batch_idx_train
        if state.batches_per_epoch is None:
            return None
        return (self.num_epochs - state.epoch + 1) * state.batches_per_epoch - state.batches_done

    def set_total_batches(self, state: TrainingState) -> None:
        """Tells the schedule (its cool-down) how many batches the whole training has, once that is known."""
        left = self.batches_left(state)
        if left is not None:
            self.schedule.set_total_batches(state.batch_idx_train + left)

    def update_time(self, state: TrainingState) -> None:
        """Adds this run's wall time to the earlier runs' and, under a time budget, tells the schedule its share
        (rank 0's clock on every rank: they must all stop after the same batch)."""
        seconds = self._seconds_before + (self.clock() - self._clock_start)
        if self.max_minutes > 0:
            if self.dist.is_distributed:
                mine = torch.tensor([seconds if self.dist.is_main else 0.0], dtype=torch.float64)
                seconds = float(all_reduce_sum(mine, self.dist)[0])
            self.schedule.set_time_fraction(min(1.0, seconds / (60.0 * self.max_minutes)))
        state.train_seconds = seconds

    def seconds_left(self, state: TrainingState) -> float | None:
        return 60.0 * self.max_minutes - state.train_seconds if self.max_minutes > 0 else None

    def out_of_time(self, state: TrainingState) -> bool:
        return self.max_minutes > 0 and state.train_seconds >= 60.0 * self.max_minutes

    def done(self, state: TrainingState) -> bool:
        """max_steps reached or the time budget spent (the end of num_epochs is the loop's own)."""
        return (self.max_steps > 0 and state.batch_idx_train >= self.max_steps) or self.out_of_time(state)

    def reason(self, state: TrainingState) -> str:
        """Why `done` holds, for the log."""
        if self.out_of_time(state):
            return f"time budget of {self.max_minutes:g} min spent"
        return f"trainer.max_steps={self.max_steps} reached"

    def warn_late_cooldown(self) -> str | None:
        """A warning when the cool-down would start inside the first epoch, whose length is unknown then (with
        neither max_steps nor a time budget to fix the total); None otherwise."""
        epochs = max(self.num_epochs, 1)
        late = self.schedule.cooldown_fraction > (epochs - 1) / epochs
        if self.schedule.total_batches is None and late and self.max_minutes <= 0:
            return (f"optim.cooldown_fraction={self.schedule.cooldown_fraction:g} would start within the first "
                    "epoch, before its length is known: the cool-down starts late (with one epoch: never); set "
                    "trainer.max_steps to fix the total")  # fmt: skip
        return None
