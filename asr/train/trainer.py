"""The training loop: DDP, AMP, staged loss, clipping, logging, validation, checkpoints and exact resume.

Training ends after trainer.num_epochs, or trainer.max_steps batches, or trainer.max_minutes of wall time (summed
over resumed runs and measured on rank 0's clock, so every rank stops after the same batch), whichever comes first.
"""

import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from asr.loss.config import LossConfig
from asr.loss.staging import loss_scales
from asr.train.averaging import make_model_average, update_model_average
from asr.checkpoint import (
    CheckpointError,
    checkpoints_by_progress,
    load_checkpoint,
    remove_old_checkpoints,
    save_checkpoint,
)
from asr.train.config import TrainerConfig
from asr.train.distributed import DistInfo, all_reduce_sum, barrier, gather_objects
from asr.train.optim import Schedule
from asr.train.progress import Progress, Scalars, format_duration
from asr.train.resume import capture_rng, is_lhotse_state, restore_rng, sampler_state_at
from asr.train.step import BatchLoss, compute_batch_loss, resolve_amp, zero_loss

log = logging.getLogger("asr.train")

# (x (B, T, F), x_lens (B,), y (B, U) int64, y_lens (B,), cut ids)
ModelInputs = tuple[Tensor, Tensor, Tensor, Tensor, list[str]]


class Trainer:
    """Trains `model` over the batches of `make_train_loader`, one optimiser step per batch.

    Args:
        model: the Transducer (not wrapped; DDP is added here when world_size > 1), already on `dist.device`.
        optimizer, schedule: from asr.train.optim.build_optimizer.
        cfg: the loop's settings.
        loss: prune range, smoothing scales and the staging of the simple and pruned losses.
        dist: this process's place in the job.
        make_train_loader: builds the train DataLoader; its argument is a sampler state_dict to resume from or None.
            The loader's `.sampler` must shard by rank and have set_epoch / state_dict / load_state_dict (lhotse).
        to_inputs: a batch of the loader -> (x (B, T, F), x_lens (B,), y (B, U), y_lens (B,), cut ids).
        valid_loader: validation batches (sharded by rank) or None.
        frames_fn: encoder frames from input frames, (B,) -> (B,).
        clip_grad_norm: max global L2 norm of the gradient (0: no clipping).
        config: the resolved config as a plain dict, stored in every checkpoint.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        schedule: Schedule,
        cfg: TrainerConfig,
        loss: LossConfig,
        dist: DistInfo,
        make_train_loader: Callable[[dict | None], Any],
        to_inputs: Callable[[Any], ModelInputs],
        valid_loader: Iterable | None,
        frames_fn: Callable[[Tensor], Tensor],
        clip_grad_norm: float,
        config: dict,
    ):
        self.amp = resolve_amp(cfg.amp, dist.device)  # "auto" resolved for this device
        log.info("mixed precision: %s (trainer.amp=%s)", self.amp, cfg.amp)
        self.raw_model = model
        self.model: nn.Module = model
        if dist.is_distributed:
            self.model = DistributedDataParallel(
                model,
                device_ids=[dist.local_rank] if dist.device.type == "cuda" else None,
                find_unused_parameters=cfg.find_unused_parameters,
            )
        self.optimizer, self.schedule, self.cfg, self.loss_cfg, self.dist = optimizer, schedule, cfg, loss, dist
        self.make_train_loader, self.to_inputs, self.valid_loader = make_train_loader, to_inputs, valid_loader
        self.frames_fn, self.clip_grad_norm, self.config = frames_fn, clip_grad_norm, config
        self.scaler = torch.amp.GradScaler(dist.device.type, enabled=self.amp == "fp16")
        self.exp_dir = Path(cfg.exp_dir)
        self.model_avg = make_model_average(model) if cfg.average_period > 0 and dist.is_main else None
        # Counters (all saved in checkpoints).
        self.epoch = 1  # the epoch in progress, 1-based
        self.batches_done = 0  # batches of self.epoch consumed
        self.batch_idx_train = 0  # batches consumed in all epochs
        self.batches_per_epoch: int | None = None
        self.counters = {"bad_utterances": 0, "skipped_batches": 0, "nonfinite_grads": 0}
        self.train_seconds = 0.0  # wall time of fit() in all runs so far (saved, for trainer.max_minutes)
        self.clock = time.monotonic  # tests replace it
        self._clock_start, self._seconds_before = 0.0, 0.0
        self._epoch_start_sampler: dict | None = None
        self.scalars = Scalars(self.exp_dir / "tensorboard" if cfg.tensorboard and dist.is_main else None)

    # ----------------------------------------------------------------------------------------------- checkpoints
    def _state(self, epoch_finished: bool) -> dict:
        rng = gather_objects(capture_rng(), self.dist)  # collective: every rank calls _state
        lhotse = None
        if is_lhotse_state(self._epoch_start_sampler) and not epoch_finished:
            lhotse = sampler_state_at(self._epoch_start_sampler, self.batches_done)
        return {
            "model": self.raw_model.state_dict(),
            "model_avg": None if self.model_avg is None else self.model_avg.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            "sampler": {
                "epoch": self.epoch,
                "batches_done": self.batches_done,
                "epoch_finished": epoch_finished,
                "lhotse": lhotse,
            },
            "rng": {"world_size": self.dist.world_size, "states": rng},
            "epoch": self.epoch,
            "batch_idx_train": self.batch_idx_train,
            "batches_per_epoch": self.batches_per_epoch,
            "counters": dict(self.counters),
            "train_seconds": self.train_seconds,
            "config": self.config,
        }

    def save(self, name: str, epoch_finished: bool) -> None:
        state = self._state(epoch_finished)
        if self.dist.is_main:
            path = self.exp_dir / name
            save_checkpoint(path, state)
            removed = remove_old_checkpoints(self.exp_dir, self.cfg.keep_last_k)
            log.info("saved %s%s", path, f" (removed {len(removed)} old)" if removed else "")
        barrier(self.dist)

    def resume(self) -> dict | None:
        """Loads the latest readable checkpoint of exp_dir, if any; returns its RNG state for this rank."""
        for stale in self.exp_dir.glob(".*.pt.tmp-*") if self.dist.is_main else []:
            stale.unlink(missing_ok=True)  # left by a run killed while saving
        state, path = None, None
        for path in checkpoints_by_progress(self.exp_dir):  # newest first, unreadable ones skipped with a warning
            try:
                state = load_checkpoint(path, map_location="cpu")
                break
            except CheckpointError as e:  # readable when scanned but not in full: try the previous one
                warnings.warn(f"{e}; trying the previous checkpoint", stacklevel=2)
                log.warning("%s; trying the previous checkpoint", e)
        if state is None:
            return None
        self.raw_model.load_state_dict(state["model"])
        if self.model_avg is not None and state.get("model_avg") is not None:
            self.model_avg.load_state_dict(state["model_avg"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["grad_scaler"])
        sampler = state["sampler"]
        self.epoch = int(sampler["epoch"]) + (1 if sampler["epoch_finished"] else 0)
        self.batches_done = 0 if sampler["epoch_finished"] else int(sampler["batches_done"])
        self._epoch_start_sampler = None if sampler["epoch_finished"] else sampler.get("lhotse")
        self.batch_idx_train = int(state["batch_idx_train"])
        self.batches_per_epoch = state.get("batches_per_epoch")
        self.counters.update(state.get("counters", {}))
        self.train_seconds = float(state.get("train_seconds", 0.0))
        log.info(
            "resumed from %s: epoch %d, %d batches into it, %d batches in all",
            path, self.epoch, self.batches_done, self.batch_idx_train,
        )  # fmt: skip
        rng = state["rng"]
        if rng["world_size"] != self.dist.world_size:
            log.warning("checkpoint was written with %d ranks, now %d: RNG states not restored",
                        rng["world_size"], self.dist.world_size)  # fmt: skip
            return None
        return rng["states"][self.dist.rank]

    # ---------------------------------------------------------------------------------------------- one batch
    def train_step(self, batch: Any) -> tuple[BatchLoss, float, float]:
        """Forward, backward and optimiser step of one batch; returns (loss, grad norm, input frames)."""
        x, x_lens, y, y_lens, cut_ids = self.to_inputs(batch)
        simple_scale, pruned_scale = loss_scales(
            self.batch_idx_train, self.loss_cfg.schedule, self.loss_cfg.warm_step, self.loss_cfg.simple_loss_scale
        )
        self.model.train()
        res = compute_batch_loss(
            self.model, x, x_lens, y, y_lens, cut_ids,
            prune_range=self.loss_cfg.prune_range, am_scale=self.loss_cfg.am_scale, lm_scale=self.loss_cfg.lm_scale,
            simple_scale=simple_scale, pruned_scale=pruned_scale, frames_fn=self.frames_fn,
            device=self.dist.device, amp=self.amp,
        )  # fmt: skip
        if res.bad_cut_ids:
            self.counters["bad_utterances"] += len(res.bad_cut_ids)
            log.warning("batch %d: dropped %d utterance(s) with non-finite features or loss, or more tokens than "
                        "frames: %s", self.batch_idx_train, len(res.bad_cut_ids), res.bad_cut_ids)  # fmt: skip
        input_frames = float(x_lens.sum())
        ranks_with_loss = int(all_reduce_sum(torch.tensor([float(res.loss is not None)]), self.dist)[0])
        if ranks_with_loss == 0:
            self.counters["skipped_batches"] += 1
            log.warning("batch %d skipped: no utterance with a finite loss", self.batch_idx_train)
            self.optimizer.zero_grad(set_to_none=True)
            return res, float("nan"), input_frames
        loss = res.loss
        if loss is None:  # this rank has nothing: a zero loss through DDP keeps the gradient all-reduce in step
            loss = zero_loss(self.model, x.size(2), prune_range=self.loss_cfg.prune_range, frames_fn=self.frames_fn,
                             device=self.dist.device, amp=self.amp)  # fmt: skip
        # DDP averages gradients over ranks; scaling by world_size makes it the gradient of the global batch's
        # summed loss, the same as one process with that batch (and the clipping threshold means the same).
        self.scaler.scale(loss * self.dist.world_size).backward()
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.raw_model.parameters() if p.requires_grad]
        max_norm = self.clip_grad_norm if self.clip_grad_norm > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)  # skips the step itself when the fp16 gradients overflowed
            self.scaler.update()
        elif math.isfinite(grad_norm):
            self.optimizer.step()
        else:
            self.counters["nonfinite_grads"] += 1
            log.warning("batch %d: non-finite gradient norm, optimiser step skipped", self.batch_idx_train)
        self.optimizer.zero_grad(set_to_none=True)
        return res, grad_norm, input_frames

    # -------------------------------------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        """Validation loss per frame; leaves the global RNGs as it found them, so training is the same with any
        validation interval and a run stopped (after a validation) and resumed is the uninterrupted one."""
        if self.valid_loader is None:
            return None
        rng = capture_rng()  # the loader's iterator (and anything random in eval) draws from the global generators
        self.model.eval()
        simple_scale, pruned_scale = loss_scales(
            self.batch_idx_train, self.loss_cfg.schedule, self.loss_cfg.warm_step, self.loss_cfg.simple_loss_scale
        )
        sums = torch.zeros(4, dtype=torch.float64)  # loss, simple, pruned, frames
        for batch in self.valid_loader:
            x, x_lens, y, y_lens, cut_ids = self.to_inputs(batch)
            res = compute_batch_loss(
                self.raw_model, x, x_lens, y, y_lens, cut_ids,
                prune_range=self.loss_cfg.prune_range, am_scale=self.loss_cfg.am_scale,
                lm_scale=self.loss_cfg.lm_scale, simple_scale=simple_scale, pruned_scale=pruned_scale,
                frames_fn=self.frames_fn, device=self.dist.device, amp=self.amp,
            )  # fmt: skip
            if res.loss is not None:
                sums += torch.tensor([float(res.loss), res.simple, res.pruned, res.frames], dtype=torch.float64)
        self.model.train()
        restore_rng(rng)
        sums = all_reduce_sum(sums, self.dist)
        frames = max(float(sums[3]), 1.0)
        out = {"loss": float(sums[0]) / frames, "simple_loss": float(sums[1]) / frames,
               "pruned_loss": float(sums[2]) / frames, "frames": float(sums[3])}  # fmt: skip
        self.scalars.add({f"valid/{k}": v for k, v in out.items() if k != "frames"}, self.batch_idx_train)
        log.info("validation at batch %d: loss %.4f (simple %.4f, pruned %.4f) per frame over %d frames",
                 self.batch_idx_train, out["loss"], out["simple_loss"], out["pruned_loss"], out["frames"])  # fmt: skip
        return out

    # -------------------------------------------------------------------------------------------------- loop
    def _batches_left(self) -> int | None:
        if self.cfg.max_steps > 0:
            return self.cfg.max_steps - self.batch_idx_train
        if self.batches_per_epoch is None:
            return None
        return (self.cfg.num_epochs - self.epoch + 1) * self.batches_per_epoch - self.batches_done

    def _set_total_batches(self) -> None:
        """Tells the schedule (its cool-down) how many batches the whole training has, once that is known."""
        left = self._batches_left()
        if left is not None:
            self.schedule.set_total_batches(self.batch_idx_train + left)

    def _update_time(self) -> None:
        """Adds this run's wall time to the earlier runs' and, under a time budget, tells the schedule its share
        (rank 0's clock on every rank: they must all stop after the same batch)."""
        seconds = self._seconds_before + (self.clock() - self._clock_start)
        if self.cfg.max_minutes > 0:
            if self.dist.is_distributed:
                mine = torch.tensor([seconds if self.dist.is_main else 0.0], dtype=torch.float64)
                seconds = float(all_reduce_sum(mine, self.dist)[0])
            self.schedule.set_time_fraction(min(1.0, seconds / (60.0 * self.cfg.max_minutes)))
        self.train_seconds = seconds

    def _out_of_time(self) -> bool:
        return self.cfg.max_minutes > 0 and self.train_seconds >= 60.0 * self.cfg.max_minutes

    def _done(self) -> bool:
        return (self.cfg.max_steps > 0 and self.batch_idx_train >= self.cfg.max_steps) or self._out_of_time()

    def fit(self) -> dict[str, float]:
        """Trains to the end (resuming from exp_dir when it holds a checkpoint); returns the last interval's stats."""
        rng_state = self.resume()
        positions = gather_objects((self.epoch, self.batches_done, self.batch_idx_train), self.dist)
        if len(set(positions)) > 1:
            raise RuntimeError(
                f"ranks resumed from different places (epoch, batch in epoch, batches in all) {positions}: "
                f"trainer.exp_dir={self.exp_dir} must be on a file system that every node sees"
            )
        sampler_state = None
        if self.batches_done > 0 and is_lhotse_state(self._epoch_start_sampler):
            if self._epoch_start_sampler.get("world_size", self.dist.world_size) != self.dist.world_size:
                log.warning("checkpoint sampler state is for %d ranks, now %d: epoch %d restarts from its first "
                            "batch (%d batches are seen twice)", self._epoch_start_sampler["world_size"],
                            self.dist.world_size, self.epoch, self.batches_done)  # fmt: skip
                self.batches_done = 0
            else:
                sampler_state = sampler_state_at(self._epoch_start_sampler, self.batches_done)
        if self.cfg.max_minutes < 0:
            raise ValueError(f"trainer.max_minutes must be >= 0, got {self.cfg.max_minutes}")
        self._clock_start, self._seconds_before = self.clock(), self.train_seconds
        self._update_time()
        self._set_total_batches()
        epochs = max(self.cfg.num_epochs, 1)
        late = self.schedule.cooldown_fraction > (epochs - 1) / epochs
        # the total is only known after the first epoch (a time budget needs none)
        if self.schedule.total_batches is None and late and self.cfg.max_minutes <= 0:
            log.warning("optim.cooldown_fraction=%g would start within the first epoch, before its length is known: "
                        "the cool-down starts late (with one epoch: never); set trainer.max_steps to fix the total",
                        self.schedule.cooldown_fraction)  # fmt: skip
        loader = self.make_train_loader(sampler_state)
        sampler = getattr(loader, "sampler", None)
        progress = Progress()
        self._last_logged = self.batch_idx_train
        interval = torch.zeros(6, dtype=torch.float64)  # loss, simple, pruned, frames, input frames, grad norm
        last: dict[str, float] = {}
        while self.epoch <= self.cfg.num_epochs and not self._done():
            self.schedule.step_epoch(self.epoch - 1)
            mid_epoch = self.batches_done > 0
            if not mid_epoch:
                if sampler is not None and hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(self.epoch)
                self._epoch_start_sampler = sampler.state_dict() if hasattr(sampler, "state_dict") else None
            if isinstance(loader, torch.utils.data.DataLoader):
                # Workers' seeds from (seed, epoch, rank), not from the global generator: the same after a resume.
                epoch_seed = hash((self.cfg.seed, self.epoch, self.dist.rank))
                loader.generator = torch.Generator().manual_seed(epoch_seed)
                if hasattr(loader.dataset, "set_seed"):  # asr.data.module.SeededBatches: augmentation per batch
                    loader.dataset.set_seed(epoch_seed)
            batches = iter(loader)
            if mid_epoch and sampler_state is None:  # not a lhotse sampler: replay and drop consumed batches
                for _ in range(self.batches_done):
                    next(batches)
            if rng_state is not None:  # after iter(): creating the iterator draws from the global generator
                restore_rng(rng_state)
                rng_state = None
            for batch in batches:
                res, grad_norm, input_frames = self.train_step(batch)
                self.batch_idx_train += 1
                self.batches_done += 1
                self._update_time()
                self.schedule.step_batch(self.batch_idx_train)
                if res.loss is not None:
                    interval[:4] += torch.tensor([float(res.loss.detach()), res.simple, res.pruned, res.frames])
                interval[4] += input_frames
                interval[5] = grad_norm if math.isfinite(grad_norm) else interval[5]
                if self.model_avg is not None and self.batch_idx_train % self.cfg.average_period == 0:
                    update_model_average(self.model_avg, self.raw_model, self.batch_idx_train, self.cfg.average_period)
                if self.batch_idx_train % self.cfg.log_interval == 0 or self._done():
                    last = self._log_interval(interval, progress)
                    interval.zero_()
                if self.cfg.valid_interval > 0 and self.batch_idx_train % self.cfg.valid_interval == 0:
                    self.validate()
                if self.cfg.save_every_n > 0 and self.batch_idx_train % self.cfg.save_every_n == 0:
                    self.save(f"checkpoint-{self.batch_idx_train}.pt", epoch_finished=False)
                if self._done():
                    break
            if self._done():  # the last weights, for decoding and to continue from: this (partial) epoch's
                limit = (f"time budget of {self.cfg.max_minutes:g} min spent" if self._out_of_time()
                         else f"trainer.max_steps={self.cfg.max_steps} reached")  # fmt: skip
                log.info("%s after %d batches (%d of epoch %d): saving it as epoch-%d.pt", limit,
                         self.batch_idx_train, self.batches_done, self.epoch, self.epoch)  # fmt: skip
                self.validate()
                self.save(f"epoch-{self.epoch}.pt", epoch_finished=False)
                break
            self.batches_per_epoch = self.batches_done
            self._set_total_batches()
            self.validate()
            self.save(f"epoch-{self.epoch}.pt", epoch_finished=True)
            self.epoch += 1
            self.batches_done = 0
        self.scalars.close()
        log.info("training done: %d batches in %s; %s", self.batch_idx_train, format_duration(self.train_seconds),
                 self.counters)  # fmt: skip
        return last

    def _log_interval(self, interval: Tensor, progress: Progress) -> dict[str, float]:
        sums = all_reduce_sum(interval[:5], self.dist)
        dt = progress.tick(self.batch_idx_train - self._last_logged)
        self._last_logged = self.batch_idx_train
        frames = max(float(sums[3]), 1.0)
        stats = {
            "loss": float(sums[0]) / frames,
            "simple_loss": float(sums[1]) / frames,
            "pruned_loss": float(sums[2]) / frames,
            "lr": self.schedule.get_last_lr()[0],
            "grad_norm": float(interval[5]),
            "frames_per_s": float(sums[4]) / max(dt, 1e-9),
        }
        self.scalars.add({f"train/{k}": v for k, v in stats.items()}, self.batch_idx_train)
        left = self._batches_left()
        time_left = 60.0 * self.cfg.max_minutes - self.train_seconds if self.cfg.max_minutes > 0 else None
        of = f"/{self.batches_per_epoch}" if self.batches_per_epoch else ""
        log.info(
            "epoch %d batch %d%s (step %d): loss %.4f (simple %.4f, pruned %.4f) per frame, lr %.3g, grad norm %.3g, "
            "%.0f frames/s, elapsed %s, ETA %s, bad utterances %d",
            self.epoch, self.batches_done, of, self.batch_idx_train, stats["loss"], stats["simple_loss"],
            stats["pruned_loss"], stats["lr"], stats["grad_norm"], stats["frames_per_s"],
            format_duration(self.train_seconds), progress.eta(left, time_left), self.counters["bad_utterances"],
        )  # fmt: skip
        return stats
