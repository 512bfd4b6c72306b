"""Optimiser and learning-rate schedules (icefall's Noam and Eden).

Both schedules are pure functions of counters (batches done, epoch), so their state is two integers and resuming
gives the same learning rates. The loop calls `step_batch(batch_idx_train)` after every batch and
`step_epoch(epoch - 1)` at the start of each (1-based) epoch, as icefall does.

Either may end with a linear cool-down to 0 over the last `cooldown_fraction` of training (fixed-budget training,
as the warm-up-stable-decay schedules): the trainer tells the schedule the total number of batches as soon as it is
known (`set_total_batches`: with trainer.max_steps at once, else after the first epoch), and, under a time budget
(trainer.max_minutes), the fraction of the budget spent (`set_time_fraction`); the cool-down follows whichever
of the two ends sooner.
"""

import math

import torch
from torch import nn

from asr.train.config import OptimConfig
from asr.train.scaled_adam import ScaledAdam


def noam_lr(step: int, model_size: int, factor: float, warm_step: int) -> float:
    """Noam's rate for the optimiser step number `step` (1-based): linear warm-up, then 1/sqrt(step)."""
    step = max(step, 1)
    return factor * model_size**-0.5 * min(step**-0.5, step * warm_step**-1.5)


def eden_lr(
    base_lr: float, batch: float, epoch: float, lr_batches: float, lr_epochs: float, warmup_batches: float
) -> float:
    """Eden's rate after `batch` batches in all and `epoch` whole epochs (both 0-based counts)."""
    batch_factor = ((batch**2 + lr_batches**2) / lr_batches**2) ** -0.25
    epoch_factor = ((epoch**2 + lr_epochs**2) / lr_epochs**2) ** -0.25
    warmup = 1.0 if batch >= warmup_batches else 0.5 + 0.5 * batch / warmup_batches
    return base_lr * batch_factor * epoch_factor * warmup


class Schedule:
    """Sets the learning rate of every parameter group from the counters; subclasses give `rate()`."""

    def __init__(self, optimizer: torch.optim.Optimizer, cooldown_fraction: float = 0.0):
        if not 0.0 <= cooldown_fraction <= 1.0:
            raise ValueError(f"optim.cooldown_fraction must be in [0, 1], got {cooldown_fraction}")
        self.optimizer = optimizer
        self.batch = 0  # batches done
        self.epoch = 0  # whole epochs done
        self.cooldown_fraction = cooldown_fraction
        self.total_batches: int | None = None  # batches of the whole training, once known
        self.time_fraction: float | None = None  # fraction of a time budget spent, when training has one
        self._apply()

    def rate(self) -> float:
        raise NotImplementedError

    def cooldown(self) -> float:
        """Factor of the rate: 1, then falling linearly to 0 over the last cooldown_fraction of total_batches or of
        the time budget, whichever ends first."""
        if self.cooldown_fraction <= 0.0:
            return 1.0
        factor = 1.0
        if self.total_batches:
            span = self.cooldown_fraction * self.total_batches
            factor = (self.total_batches - self.batch) / span
        if self.time_fraction is not None:
            factor = min(factor, (1.0 - self.time_fraction) / self.cooldown_fraction)
        return min(1.0, max(0.0, factor))

    def set_total_batches(self, total: int) -> None:
        self.total_batches = int(total)
        self._apply()

    def set_time_fraction(self, fraction: float) -> None:
        """The fraction of the training's time budget spent so far (0 at the start, 1 at its end)."""
        self.time_fraction = float(fraction)
        self._apply()

    def _apply(self) -> None:
        lr = self.rate() * self.cooldown()
        if not math.isfinite(lr) or lr < 0:
            raise ValueError(f"learning-rate schedule gave {lr} at batch {self.batch}, epoch {self.epoch}")
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def step_batch(self, batch: int) -> None:
        """Called after each batch with the number of batches done so far (in all epochs)."""
        self.batch = batch
        self._apply()

    def step_epoch(self, epoch: int) -> None:
        """Called at the start of each epoch with the number of whole epochs done."""
        self.epoch = epoch
        self._apply()

    def get_last_lr(self) -> list[float]:
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict:
        return {"batch": self.batch, "epoch": self.epoch}

    def load_state_dict(self, state: dict) -> None:
        self.batch = int(state["batch"])
        self.epoch = int(state["epoch"])
        self._apply()


class NoamSchedule(Schedule):
    """icefall's Noam: the batch after `batch` batches done is optimiser step `batch + 1`."""

    def __init__(self, optimizer: torch.optim.Optimizer, model_size: int, factor: float, warm_step: int,
                 cooldown_fraction: float = 0.0):
        if model_size <= 0 or warm_step <= 0:
            raise ValueError(f"Noam needs model_size > 0 and warm_step > 0, got {model_size}, {warm_step}")
        self.model_size, self.factor, self.warm_step = model_size, factor, warm_step
        super().__init__(optimizer, cooldown_fraction)

    def rate(self) -> float:
        return noam_lr(self.batch + 1, self.model_size, self.factor, self.warm_step)


class EdenSchedule(Schedule):
    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        base_lr: float,
        lr_batches: float,
        lr_epochs: float,
        warmup_batches: float,
        cooldown_fraction: float = 0.0,
    ):
        if lr_batches <= 0 or lr_epochs <= 0:
            raise ValueError(f"Eden needs lr_batches > 0 and lr_epochs > 0, got {lr_batches}, {lr_epochs}")
        self.base_lr, self.lr_batches, self.lr_epochs = base_lr, lr_batches, lr_epochs
        self.warmup_batches = warmup_batches
        super().__init__(optimizer, cooldown_fraction)

    def rate(self) -> float:
        return eden_lr(self.base_lr, self.batch, self.epoch, self.lr_batches, self.lr_epochs, self.warmup_batches)


_FUSED_ADAM_DEVICES = ("cpu", "cuda")


def _fused_adam_ok(params: list[torch.Tensor]) -> bool:
    """torch's fused Adam (one kernel over all of a tensor's moments and weights, the same update to float rounding)
    where every parameter is a floating-point tensor on a device it supports. On CPU torch's default is the
    per-tensor loop, about ten passes over each weight: fused takes a fraction of its time (the for-loop step was
    about a tenth of conformer_l12's training step: bench/RESULTS_train_step.md)."""
    return bool(params) and all(p.device.type in _FUSED_ADAM_DEVICES and p.is_floating_point() for p in params)


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> tuple[torch.optim.Optimizer, Schedule]:
    """Adam or ScaledAdam over the model's trainable parameters and the schedule that sets its learning rate."""
    if len(cfg.betas) != 2:
        raise ValueError(f"optim.betas needs two values, got {cfg.betas}")
    params = [p for p in model.parameters() if p.requires_grad]
    betas = (float(cfg.betas[0]), float(cfg.betas[1]))
    if cfg.optimizer == "adam":
        fused = _fused_adam_ok(params) if cfg.fused_adam is None else bool(cfg.fused_adam)
        optimizer: torch.optim.Optimizer = torch.optim.Adam(
            params, lr=0.0, betas=betas, eps=cfg.eps, weight_decay=cfg.weight_decay, fused=fused
        )
    elif cfg.optimizer == "scaled_adam":
        if cfg.clip_grad_norm > 0:
            raise ValueError("optim.optimizer=scaled_adam clips its own gradients (optim.clipping_scale): set "
                             f"optim.clip_grad_norm=0 (it is {cfg.clip_grad_norm}), as "
                             "conf/optim/scaled_adam.yaml does")
        if cfg.weight_decay:
            raise ValueError("optim.weight_decay is not supported with scaled_adam (its scales are learnt)")
        optimizer = ScaledAdam(
            params, lr=0.0, betas=betas, eps=cfg.eps, clipping_scale=cfg.clipping_scale,
            clipping_update_period=cfg.clipping_update_period, scalar_lr_scale=cfg.scalar_lr_scale,
            scalar_max=cfg.scalar_max, param_min_rms=cfg.param_min_rms, param_max_rms=cfg.param_max_rms,
            size_update_period=cfg.size_update_period,
        )  # fmt: skip
    else:
        raise ValueError(f"optim.optimizer must be adam or scaled_adam, got {cfg.optimizer!r}")
    if cfg.schedule == "noam":
        schedule: Schedule = NoamSchedule(optimizer, cfg.model_size, cfg.lr_factor, cfg.warm_step,
                                          cfg.cooldown_fraction)
    elif cfg.schedule == "eden":
        schedule = EdenSchedule(optimizer, cfg.base_lr, cfg.lr_batches, cfg.lr_epochs, cfg.warmup_batches,
                                cfg.cooldown_fraction)
    else:
        raise ValueError(f"optim.schedule must be noam or eden, got {cfg.schedule!r}")
    return optimizer, schedule
