"""The training loop: DDP, AMP, staged loss, clipping, logging, validation and checkpoints.

The loop's neighbours: asr.train.state (what a checkpoint holds, resume), asr.train.stopping (epochs, max_steps, the
time budget), asr.train.step (one batch's loss, bad utterances dropped), asr.train.staging (the loss weights).
"""

import logging
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from asr.checkpoint import epoch_checkpoint_name, step_checkpoint_name
from asr.data.batch import Batch
from asr.loss.config import LossConfig
from asr.train.averaging import make_model_average, update_model_average
from asr.train.config import TrainerConfig
from asr.train.distributed import DistInfo, all_reduce_sum, gather_objects
from asr.train.fp16_guard import GradScaleCollapsed, GradScaleGuard
from asr.train.oom import (OomSkips, batch_error, broadcast_module, is_out_of_memory,
                           reduce_gradients)
from asr.train.optim import Schedule
from asr.train.preemption import PreemptionHandler
from asr.train.progress import Progress, Scalars, format_duration
from asr.train.resume import capture_rng, restore_rng
from asr.train.save_retry import SaveRetry
from asr.train.staging import loss_scales
from asr.train.state import (
    Trainables,
    TrainingState,
    checkpoint_state,
    load_latest_state,
    restore_state,
    save_state,
)
from asr.train.step import BatchLoss, compute_batch_loss, resolve_amp, zero_loss
from asr.train.stopping import StoppingRules

log = logging.getLogger("asr.train")


class Trainer:
    """Trains `model` over the batches of `make_train_loader`, one optimiser step per batch.

    Args:
        model: the Transducer (not wrapped; with world_size > 1 DDP is added here, or with trainer.skip_oom_batches
            the gradients are all-reduced by asr.train.oom), already on `dist.device`. Its
            encoder's output_lengths counts the frames of the loss.
        optimizer, schedule: from asr.train.optim.build_optimizer.
        cfg: the loop's settings.
        loss: prune range, smoothing scales, delay penalty and the staging of the simple and pruned losses.
        dist: this process's place in the job.
        make_train_loader: builds the train loader of `Batch`es; its argument is a sampler state_dict to resume from
            or None. A DataLoader's `.sampler` must shard by rank and have set_epoch / state_dict / load_state_dict
            (lhotse); any other iterable of batches is replayed to resume mid-epoch.
        valid_loader: validation `Batch`es (sharded by rank) or None.
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
        make_train_loader: Callable[[dict | None], Iterable[Batch]],
        valid_loader: Iterable[Batch] | None,
        clip_grad_norm: float,
        config: dict,
    ):
        self.amp = resolve_amp(cfg.amp, dist.device)  # "auto" resolved for this device
        log.info("mixed precision: %s (trainer.amp=%s)", self.amp, cfg.amp)
        self.raw_model = model
        self.model: nn.Module = model
        if dist.is_distributed and not cfg.skip_oom_batches:
            self.model = DistributedDataParallel(
                model,
                device_ids=[dist.local_rank] if dist.device.type == "cuda" else None,
                find_unused_parameters=cfg.find_unused_parameters,
            )
        elif dist.is_distributed:  # asr.train.oom all-reduces the gradients itself: no DDP (nor its buckets' memory)
            broadcast_module(model, dist)  # rank 0's weights everywhere, as DDP's constructor does
        self.optimizer, self.schedule, self.cfg, self.loss_cfg, self.dist = optimizer, schedule, cfg, loss, dist
        self.make_train_loader, self.valid_loader = make_train_loader, valid_loader
        self.frames_fn = model.encoder.output_lengths  # encoder frames of (B,) input frames
        self.clip_grad_norm, self.config = clip_grad_norm, config
        self.scaler = torch.amp.GradScaler(dist.device.type, enabled=self.amp == "fp16")
        self.exp_dir = Path(cfg.exp_dir)
        self.model_avg = make_model_average(model) if cfg.average_period > 0 and dist.is_main else None
        self.state = TrainingState()
        self.stopping = StoppingRules(cfg, schedule, dist)
        self.scalars = Scalars(self.exp_dir / "tensorboard" if cfg.tensorboard and dist.is_main else None)
        # Reliability (asr.train.preemption, save_retry, fp16_guard, rank_failure)
        self.preemption = PreemptionHandler() if cfg.graceful_signals else None
        self.stopped_by: str | None = None  # the signal that stopped training: the caller exits with EXIT_PREEMPTED
        self.save_retry = SaveRetry(cfg.max_save_failures)
        self.fp16_guard = GradScaleGuard(model, cfg.fp16_warn_scale, cfg.fp16_stop_scale, cfg.fp16_grow_period,
                                         cfg.fp16_grow_below)  # fmt: skip
        self._in_progress = ""  # the batch being trained, for where()
        self.oom_skips = OomSkips(self.state, cfg.max_oom_skips) if cfg.skip_oom_batches else None
        self._saved_at = -1  # batch_idx_train of the last checkpoint written

    # ----------------------------------------------------------------------------------------------- checkpoints
    def _trainables(self) -> Trainables:
        return Trainables(self.raw_model, self.model_avg, self.optimizer, self.schedule, self.scaler)

    def save(self, name: str, epoch_finished: bool) -> bool:
        """Writes exp_dir/name (rank 0); collective: every rank calls it. A failed write (OSError) is logged and
        retried at the next save point; trainer.max_save_failures of them in a row raise CheckpointWriteError."""
        saved = checkpoint_state(self.state, self._trainables(), self.dist, epoch_finished, self.amp, self.config)
        written = save_state(self.exp_dir, name, saved, self.cfg.keep_last_k, self.dist, self.save_retry)
        if written:
            self._saved_at = self.state.batch_idx_train
        return written

    def where(self) -> str:
        """The batch in progress, for the log of a failure (asr.train.rank_failure)."""
        st = self.state
        return self._in_progress or (f"after batch {st.batch_idx_train} (epoch {st.epoch}, batch {st.batches_done} "
                                     f"of it), outside a batch")  # fmt: skip

    def resume(self) -> dict | None:
        """Loads the latest readable checkpoint of exp_dir, if any; returns its RNG state for this rank."""
        found = load_latest_state(self.exp_dir, self.dist)
        if found is None:
            return None
        saved, path = found
        rng = restore_state(saved, self.state, self._trainables(), self.dist)
        log.info("resumed from %s: epoch %d, %d batches into it, %d batches in all",
                 path, self.state.epoch, self.state.batches_done, self.state.batch_idx_train)  # fmt: skip
        return rng

    # ---------------------------------------------------------------------------------------------- one batch
    def batch_loss(self, model: nn.Module, batch: Batch) -> BatchLoss:
        """The staged loss of one batch (training: the DDP model; validation: the raw one), bad utterances dropped."""
        cfg = self.loss_cfg
        simple_scale, pruned_scale = loss_scales(self.state.batch_idx_train, cfg.schedule, cfg.warm_step,
                                                 cfg.simple_loss_scale)  # fmt: skip
        return compute_batch_loss(
            model, batch, prune_range=cfg.prune_range, am_scale=cfg.am_scale, lm_scale=cfg.lm_scale,
            simple_scale=simple_scale, pruned_scale=pruned_scale, delay_penalty=cfg.delay_penalty,
            frames_fn=self.frames_fn, device=self.dist.device, amp=self.amp,
        )  # fmt: skip

    def train_step(self, batch: Batch) -> tuple[BatchLoss, float, float]:
        """Forward, backward and optimiser step of one batch; returns (loss, grad norm, input frames).

        With trainer.skip_oom_batches, forward and backward run on the unwrapped model with no collective, the
        ranks then agree on the batch and the gradients are all-reduced afterwards (asr.train.oom); without it,
        DDP all-reduces them during backward."""
        counters = self.state.counters
        self.model.train()
        input_frames = float(batch.feature_lens.sum())
        local = self.oom_skips is not None  # forward and backward with no collective inside
        at = f"at batch {self.state.batch_idx_train + 1} (epoch {self.state.epoch})"
        oom_error = None
        try:
            res = self.batch_loss(self.raw_model if local else self.model, batch)
            if res.bad_cut_ids:
                counters["bad_utterances"] += len(res.bad_cut_ids)
                log.warning("batch %d: dropped %d utterance(s) with non-finite features or loss, or more tokens "
                            "than frames: %s", self.state.batch_idx_train, len(res.bad_cut_ids),
                            res.bad_cut_ids)  # fmt: skip
            if local and res.loss is not None:
                self._backward(res.loss)
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            if not local:
                raise batch_error(e, batch, at) from e
            oom_error, res = str(e), BatchLoss(loss=None)  # the traceback (and the tensors its frames hold) is let go
        flags = all_reduce_sum(torch.tensor([float(res.loss is not None), float(oom_error is not None)]), self.dist)
        ranks_with_loss, ranks_oom = int(flags[0]), int(flags[1])
        if ranks_oom:
            self.oom_skips.skip(batch, at, ranks_oom, oom_error, self.dist, self.optimizer)
            return BatchLoss(loss=None), float("nan"), input_frames
        if ranks_with_loss == 0:
            counters["skipped_batches"] += 1
            log.warning("batch %d skipped: no utterance with a finite loss", self.state.batch_idx_train)
            self.optimizer.zero_grad(set_to_none=True)
            return res, float("nan"), input_frames
        params = [p for p in self.raw_model.parameters() if p.requires_grad]
        if local:
            reduce_gradients(params, self.dist)
            broadcast_module(self.raw_model, self.dist, parameters=False)  # BatchNorm statistics, as DDP does
        else:
            loss = res.loss
            if loss is None:  # this rank has nothing: a zero loss through DDP keeps the gradient all-reduce in step
                loss = zero_loss(self.model, batch.features.size(2), prune_range=self.loss_cfg.prune_range,
                                 frames_fn=self.frames_fn, device=self.dist.device, amp=self.amp)  # fmt: skip
            self._backward(loss)
        self.scaler.unscale_(self.optimizer)
        max_norm = self.clip_grad_norm if self.clip_grad_norm > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)  # skips the step itself when the fp16 gradients overflowed
            self.scaler.update()
        elif math.isfinite(grad_norm):
            self.optimizer.step()
        else:
            counters["nonfinite_grads"] += 1
            log.warning("batch %d: non-finite gradient norm, optimiser step skipped", self.state.batch_idx_train)
        self.optimizer.zero_grad(set_to_none=True)
        return res, grad_norm, input_frames

    def _backward(self, loss: Tensor) -> None:
        # Gradients are averaged over ranks (by DDP, or reduce_gradients); scaling by world_size makes them the
        # gradient of the global batch's summed loss, the same as one process with that batch (and the clipping
        # threshold means the same).
        self.scaler.scale(loss * self.dist.world_size).backward()

    # -------------------------------------------------------------------------------------------- validation
    @torch.no_grad()
    def validate(self) -> dict[str, float] | None:
        """Validation loss per frame; leaves the global RNGs as it found them, so training is the same with any
        validation interval and a run stopped (after a validation) and resumed is the uninterrupted one."""
        if self.valid_loader is None:
            return None
        rng = capture_rng()  # the loader's iterator (and anything random in eval) draws from the global generators
        self.model.eval()
        sums = torch.zeros(4, dtype=torch.float64)  # loss, simple, pruned, frames
        for batch in self.valid_loader:
            res = self.batch_loss(self.raw_model, batch)
            if res.loss is not None:
                sums += torch.tensor([float(res.loss), res.simple, res.pruned, res.frames], dtype=torch.float64)
        self.model.train()
        restore_rng(rng)
        sums = all_reduce_sum(sums, self.dist)
        frames = max(float(sums[3]), 1.0)
        out = {"loss": float(sums[0]) / frames, "simple_loss": float(sums[1]) / frames,
               "pruned_loss": float(sums[2]) / frames, "frames": float(sums[3])}  # fmt: skip
        step = self.state.batch_idx_train
        self.scalars.add({f"valid/{k}": v for k, v in out.items() if k != "frames"}, step)
        log.info("validation at batch %d: loss %.4f (simple %.4f, pruned %.4f) per frame over %d frames",
                 step, out["loss"], out["simple_loss"], out["pruned_loss"], out["frames"])  # fmt: skip
        return out

    # -------------------------------------------------------------------------------------------------- loop
    def _start(self) -> tuple[dict | None, dict | None]:
        """Resumes (when exp_dir holds a checkpoint) and checks that every rank did alike; returns this rank's RNG
        state to restore and the sampler state that continues the epoch (None: none)."""
        rng_state = self.resume()
        st = self.state
        positions = gather_objects((st.epoch, st.batches_done, st.batch_idx_train), self.dist)
        if len(set(positions)) > 1:
            raise RuntimeError(
                f"ranks resumed from different places (epoch, batch in epoch, batches in all) {positions}: "
                f"trainer.exp_dir={self.exp_dir} must be on a file system that every node sees"
            )
        sampler_state = st.resume_sampler_state(self.dist.world_size)
        self.stopping.start(st)
        late = self.stopping.warn_late_cooldown()  # the total is only known after the first epoch
        if late:
            log.warning("%s", late)
        return rng_state, sampler_state

    def _epoch_batches(self, loader: Any, sampler: Any, sampler_state: dict | None):
        """An iterator over the batches of the epoch in progress, from where it stands."""
        st = self.state
        mid_epoch = st.batches_done > 0
        if not mid_epoch:
            if sampler is not None and hasattr(sampler, "set_epoch"):
                sampler.set_epoch(st.epoch)
            st.epoch_start_sampler = sampler.state_dict() if hasattr(sampler, "state_dict") else None
        if isinstance(loader, torch.utils.data.DataLoader):
            # Workers' seeds from (seed, epoch, rank), not from the global generator: the same after a resume.
            epoch_seed = hash((self.cfg.seed, st.epoch, self.dist.rank))
            loader.generator = torch.Generator().manual_seed(epoch_seed)
            if hasattr(loader.dataset, "set_seed"):  # asr.data.seeding.SeededBatches: augmentation per batch
                loader.dataset.set_seed(epoch_seed)
        batches = iter(loader)
        if mid_epoch and sampler_state is None:  # not a lhotse sampler: replay and drop consumed batches
            for _ in range(st.batches_done):
                next(batches)
        return batches

    def _after_batch(self, res: BatchLoss, grad_norm: float, input_frames: float, interval: Tensor,
                     progress: Progress) -> dict[str, float] | None:
        """Counters, schedule, model average, logging, validation and step checkpoints after one batch; returns the
        interval's stats when it logged them."""
        st, cfg = self.state, self.cfg
        st.batch_idx_train += 1
        st.batches_done += 1
        self.stopping.update_time(st)
        self.schedule.step_batch(st.batch_idx_train)
        if res.loss is not None:
            interval[:4] += torch.tensor([float(res.loss.detach()), res.simple, res.pruned, res.frames])
        interval[4] += input_frames
        interval[5] = grad_norm if math.isfinite(grad_norm) else interval[5]
        self._check_grad_scale()
        if self.model_avg is not None and st.batch_idx_train % cfg.average_period == 0:
            update_model_average(self.model_avg, self.raw_model, st.batch_idx_train, cfg.average_period)
        stats = None
        if st.batch_idx_train % cfg.log_interval == 0 or self.stopping.done(st):
            stats = self._log_interval(interval, progress)
            interval.zero_()
        if cfg.valid_interval > 0 and st.batch_idx_train % cfg.valid_interval == 0:
            self.validate()
        if cfg.save_every_n > 0 and st.batch_idx_train % cfg.save_every_n == 0:  # a failed write retries next time
            self.save(step_checkpoint_name(st.batch_idx_train), epoch_finished=False)
        return stats

    def _check_grad_scale(self) -> None:
        """The fp16 guard after a batch: a diagnostic checkpoint once the scale runs low, a stop once it collapsed
        (the scale is the same on every rank, so they all decide alike)."""
        verdict = self.fp16_guard.check(self.scaler, self.state.batch_idx_train)
        if verdict.save_diagnostic:  # not a name resume or averaging picks up
            self.save(f"bad-model-{self.state.batch_idx_train}.pt", epoch_finished=False)
        if verdict.stop:
            raise GradScaleCollapsed(verdict.message)

    def _note_unreadable(self, batch: Batch) -> None:
        """Counts and logs the cuts the loader left out because their features could not be read."""
        ids = getattr(batch, "unreadable_cut_ids", None)
        if ids:
            self.state.counters["unreadable_cuts"] = self.state.counters.get("unreadable_cuts", 0) + len(ids)
            log.warning("batch %d: %d cut(s) skipped, their features cannot be loaded: %s",
                        self.state.batch_idx_train + 1, len(ids), ids)  # fmt: skip

    def _preempted(self) -> bool:
        """At a batch boundary: whether a rank caught SIGTERM/SIGUSR1/SIGINT (a collective); if so, writes the
        checkpoint to continue from (unless this batch's was just written) and records the signal."""
        if self.preemption is None or not self.preemption.requested(self.dist):
            return False
        st = self.state
        log.warning("%s: stopping after batch %d (%d of epoch %d) with a checkpoint; re-run the same command to "
                    "continue", self.preemption.describe(), st.batch_idx_train, st.batches_done, st.epoch)  # fmt: skip
        if self._saved_at != st.batch_idx_train and not self.save(step_checkpoint_name(st.batch_idx_train), False):
            log.error("the checkpoint of batch %d could not be written: a re-run continues from the previous one",
                      st.batch_idx_train)  # fmt: skip
        self.stopped_by = self.preemption.describe()  # with the signals that came during the save
        return True

    def fit(self) -> dict[str, float]:
        """Trains to the end (resuming from exp_dir when it holds a checkpoint); returns the last interval's stats.

        With trainer.graceful_signals, SIGTERM, SIGUSR1 and SIGINT end it early after a checkpoint: `stopped_by`
        then names the signal (the entry point exits with asr.train.preemption.EXIT_PREEMPTED).
        """
        if self.preemption is not None:
            self.preemption.install()
        try:
            return self._fit()
        finally:
            if self.preemption is not None:
                self.preemption.close()
            self.fp16_guard.close()

    def _fit(self) -> dict[str, float]:
        rng_state, sampler_state = self._start()
        st, stopping = self.state, self.stopping
        loader = self.make_train_loader(sampler_state)
        sampler = getattr(loader, "sampler", None)
        progress = Progress()
        self._last_logged = st.batch_idx_train
        interval = torch.zeros(6, dtype=torch.float64)  # loss, simple, pruned, frames, input frames, grad norm
        last: dict[str, float] = {}
        while st.epoch <= self.cfg.num_epochs and not stopping.done(st):
            self.schedule.step_epoch(st.epoch - 1)
            batches = self._epoch_batches(loader, sampler, sampler_state)
            if rng_state is not None:  # after iter(): creating the iterator draws from the global generator
                restore_rng(rng_state)
                rng_state = None
            for batch in batches:
                self._in_progress = (f"at batch {st.batch_idx_train + 1} (epoch {st.epoch}, batch {st.batches_done + 1}"
                                     f" of it), cut ids {list(batch.cut_ids)}")  # fmt: skip
                self._note_unreadable(batch)
                stats = self._after_batch(*self.train_step(batch), interval, progress)
                self._in_progress = ""
                last = stats if stats is not None else last
                if stopping.done(st) or self._preempted():  # done first: its stop writes epoch-E.pt
                    break
            if self.stopped_by is not None:
                break
            if stopping.done(st):  # the last weights, for decoding and to continue from: this (partial) epoch's
                log.info("%s after %d batches (%d of epoch %d): saving it as epoch-%d.pt", stopping.reason(st),
                         st.batch_idx_train, st.batches_done, st.epoch, st.epoch)  # fmt: skip
                self.validate()
                self.save(epoch_checkpoint_name(st.epoch), epoch_finished=False)
                break
            st.batches_per_epoch = st.batches_done
            stopping.set_total_batches(st)
            self.validate()
            self.save(epoch_checkpoint_name(st.epoch), epoch_finished=True)
            st.epoch += 1
            st.batches_done = 0
        self.scalars.close()
        log.info("training %s: %d batches in %s; %s", f"stopped by {self.stopped_by}" if self.stopped_by else "done",
                 st.batch_idx_train, format_duration(st.train_seconds), st.counters)  # fmt: skip
        return last

    def _log_interval(self, interval: Tensor, progress: Progress) -> dict[str, float]:
        st = self.state
        sums = all_reduce_sum(interval[:5], self.dist)
        dt = progress.tick(st.batch_idx_train - self._last_logged)
        self._last_logged = st.batch_idx_train
        frames = max(float(sums[3]), 1.0)
        stats = {
            "loss": float(sums[0]) / frames,
            "simple_loss": float(sums[1]) / frames,
            "pruned_loss": float(sums[2]) / frames,
            "lr": self.schedule.get_last_lr()[0],
            "grad_norm": float(interval[5]),
            "frames_per_s": float(sums[4]) / max(dt, 1e-9),
        }
        self.scalars.add({f"train/{k}": v for k, v in stats.items()}, st.batch_idx_train)
        left, time_left = self.stopping.batches_left(st), self.stopping.seconds_left(st)
        of = f"/{st.batches_per_epoch}" if st.batches_per_epoch else ""
        log.info(
            "epoch %d batch %d%s (step %d): loss %.4f (simple %.4f, pruned %.4f) per frame, lr %.3g, grad norm %.3g, "
            "%.0f frames/s, elapsed %s, ETA %s, bad utterances %d, out-of-memory skips %d",
            st.epoch, st.batches_done, of, st.batch_idx_train, stats["loss"], stats["simple_loss"],
            stats["pruned_loss"], stats["lr"], stats["grad_norm"], stats["frames_per_s"],
            format_duration(st.train_seconds), progress.eta(left, time_left), st.counters["bad_utterances"],
            st.counters.get("oom_batches", 0),
        )  # fmt: skip
        return stats
