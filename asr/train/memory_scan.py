"""Batches that fit: forward and backward on the most demanding batches before training, and the largest
data.max_duration that fits (icefall's scan_pessimistic_batches_for_oom, plus a bisection).

The batches tried are those of the training sampler itself (lhotse's DynamicBucketingSampler at the max_duration
tried, one pass over an epoch's cut lists, no features loaded), the worst of the epoch by each criterion:

    most_padded    the most padded frames, utterances x longest cut: what the encoder and the joiner's memory grows with
    longest_cut    the longest cut (and the most tokens per utterance: the simple loss's (B, T, U) lattice)
    most_cuts      the most utterances

lhotse's max_duration bounds utterances x longest cut, except that the cut which closes a batch may be longer than
the others; the worst batch of one epoch is therefore close to, not exactly, the worst of every epoch: the finder
suggests a safety margin below the largest value that fits.

What "peak memory" measures: on CUDA, torch.cuda.max_memory_allocated over the batch (tensors allocated by torch,
the model and its gradients included; not the allocator's cache nor the CUDA context, about 0.5 GiB more). On CPU,
the process's peak resident set size over the batch (VmHWM, reset through /proc/self/clear_refs; malloc_trim first
so memory freed by earlier batches is not counted), i.e. everything the process holds. Either way the optimiser's
state, allocated at the first step, is added when it does not exist yet: 2 x the parameters' bytes (Adam's and
ScaledAdam's two moments).

A batch fits when its forward and backward ran without an out-of-memory error and, when a memory limit is given,
its peak stayed under the limit (how the finder tests a CPU, or a GPU shared with others).
"""

from __future__ import annotations

import ctypes
import logging
import resource
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from asr.data.batch import Batch
from asr.loss.config import LossConfig
from asr.train.oom import batch_sizes, free_memory, is_out_of_memory
from asr.train.resume import capture_rng, restore_rng
from asr.train.staging import loss_scales
from asr.train.step import compute_batch_loss

log = logging.getLogger("asr.train")

GIB = 2**30
# The margin below the largest max_duration that fits which the finder suggests: batches of a real epoch are not all
# the scan's, the allocator fragments over hours, and cuDNN/NCCL may take a little more later.
SAFETY_MARGIN = 0.9


# ----------------------------------------------------------------------------------------------- the batches
def _padded(batch) -> float:
    return len(batch) * max(c.duration for c in batch)


# criterion -> the key a batch is ranked by (ties: the later key parts)
CRITERIA = {
    "most_padded": lambda b: (_padded(b), max(c.duration for c in b)),
    "longest_cut": lambda b: (max(c.duration for c in b), _padded(b)),
    "most_cuts": lambda b: (len(b), _padded(b)),
}


def pessimistic_batches(batches: Iterable[Sequence]) -> dict[str, list]:
    """The most demanding of `batches` (each a sequence of cuts: objects with .id and .duration, as the sampler
    yields them) by each of CRITERIA; a criterion whose batch is an earlier one's is left out."""
    best: dict[str, tuple] = {}
    for batch in batches:
        batch = list(batch)
        if not batch:
            continue
        for name, key in CRITERIA.items():
            k = key(batch)
            if name not in best or k > best[name][0]:
                best[name] = (k, batch)
    out: dict[str, list] = {}
    for name, (_, batch) in best.items():
        ids = {c.id for c in batch}
        if all(ids != {c.id for c in seen} for seen in out.values()):
            out[name] = batch
    return out


# ----------------------------------------------------------------------------------------------- memory
def _libc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class PeakMemory:
    """The peak memory of a stretch of work on `device` (module docstring: what is measured)."""

    def __init__(self, device: torch.device):
        self.device = device
        self._status = Path("/proc/self/status")

    def reset(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        _libc_trim()
        try:
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        except OSError:
            pass

    def peak(self) -> int:
        """Bytes at the peak since `reset`."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return int(torch.cuda.max_memory_allocated(self.device))
        try:
            for line in self._status.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # the lifetime peak: an upper bound

    def total(self) -> int | None:
        """The device's memory in bytes (CUDA), None on CPU."""
        return torch.cuda.get_device_properties(self.device).total_memory if self.device.type == "cuda" else None


# ----------------------------------------------------------------------------------------------- the scan
@dataclass
class BatchReport:
    criterion: str
    cut_ids: list[str]
    seconds: float  # audio in the batch
    longest: float  # its longest cut, seconds
    sizes: str  # asr.train.oom.batch_sizes
    peak_bytes: int  # 0 when it ran out of memory
    error: str | None = None  # the out-of-memory error, or the limit exceeded

    @property
    def fits(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        ids = self.cut_ids if len(self.cut_ids) <= 6 else [*self.cut_ids[:6], f"... {len(self.cut_ids) - 6} more"]
        return (f"the {self.criterion} batch ({self.sizes}; {self.seconds:.1f} s of audio, longest cut "
                f"{self.longest:.2f} s; cut ids {ids})")  # fmt: skip


def forward_backward(model: nn.Module, batch: Batch, loss: LossConfig, device: torch.device, amp: str) -> None:
    """One training forward and backward of `batch` on `model` (the unwrapped model), its gradients then dropped.
    The loss weights are those after warm-up (both losses are computed at every step anyway)."""
    simple_scale, pruned_scale = loss_scales(loss.warm_step, loss.schedule, loss.warm_step, loss.simple_loss_scale)
    model.train()
    res = compute_batch_loss(model, batch, prune_range=loss.prune_range, am_scale=loss.am_scale,
                             lm_scale=loss.lm_scale, simple_scale=simple_scale, pruned_scale=pruned_scale,
                             delay_penalty=loss.delay_penalty, frames_fn=model.encoder.output_lengths,
                             device=device, amp=amp)  # fmt: skip
    if res.loss is not None:
        res.loss.backward()
    del res
    model.zero_grad(set_to_none=True)


class MemoryScan:
    """Tries the pessimistic batches of a max_duration: forward + backward once each, peak memory of each.

    Args:
        sample: max_duration -> the sampler's batches of one epoch at that max_duration (lists of cuts, objects
            with .id and .duration), from which `pessimistic_batches` picks.
        make_batch: cuts -> the Batch the training loader makes of them (features, augmentation, tokens).
        step: runs forward and backward of a Batch (`forward_backward` with the run's model and loss).
        device: where `step` runs.
        memory_limit_bytes: a batch whose peak exceeds it does not fit (None: only an out-of-memory error counts).
        extra_bytes: added to each peak: the optimiser's state when it is not allocated yet.
        model: the model `step` trains: its buffers (BatchNorm statistics) and the random generators are put back
            after each scan, so training starts as if no scan had run.
    """

    def __init__(self, sample: Callable[[float], Iterable[Sequence]], make_batch: Callable[[list], Batch],
                 step: Callable[[Batch], None], device: torch.device, memory_limit_bytes: int | None = None,
                 extra_bytes: int = 0, model: nn.Module | None = None):
        self.sample, self.make_batch, self.step, self.model = sample, make_batch, step, model
        self.device, self.memory_limit_bytes, self.extra_bytes = device, memory_limit_bytes, extra_bytes
        self.memory = PeakMemory(device)
        self.longest_cut = 0.0  # seconds: the longest cut seen by the last run

    def run(self, max_duration: float, stop_at_failure: bool = True) -> list[BatchReport]:
        """The reports of the batches of `max_duration`, in CRITERIA order; stops after the first that does not
        fit unless told otherwise."""
        reports = []
        rng = capture_rng()
        buffers = [(b, b.detach().clone()) for b in self.model.buffers()] if self.model is not None else []
        try:
            batches = pessimistic_batches(self.sample(max_duration))
            if not batches:
                raise ValueError(f"the training sampler yields no batch at max_duration={max_duration:g}")
            for criterion, cuts in batches.items():
                self.longest_cut = max(self.longest_cut, max(c.duration for c in cuts))
                report = self._try(criterion, cuts)
                reports.append(report)
                log.info("memory scan at max_duration=%g: %s %s", max_duration, report.describe(),
                         f"peak {self.gib(report.peak_bytes)}" if report.fits else f"does not fit: {report.error}")
                if not report.fits and stop_at_failure:
                    break
        finally:
            restore_rng(rng)
            with torch.no_grad():
                for b, saved in buffers:
                    b.copy_(saved)
        return reports

    def fits(self, max_duration: float) -> bool:
        return all(r.fits for r in self.run(max_duration))

    def gib(self, n: int) -> str:
        total = self.memory.total()
        return f"{n / GIB:.2f} GiB" + (f" of {total / GIB:.1f} GiB" if total else "")

    def _try(self, criterion: str, cuts: list) -> BatchReport:
        batch = self.make_batch(cuts)
        report = BatchReport(criterion, [c.id for c in cuts], sum(c.duration for c in cuts),
                             max(c.duration for c in cuts), batch_sizes(batch), 0)  # fmt: skip
        free_memory(None, self.device)
        self.memory.reset()
        error = None
        try:
            self.step(batch)
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            error = f"{type(e).__name__}: {str(e).splitlines()[0]}"  # the traceback's tensors are let go
        del batch
        if error is not None:
            free_memory(None, self.device)
            report.error = error
            return report
        report.peak_bytes = self.memory.peak() + self.extra_bytes
        if self.memory_limit_bytes is not None and report.peak_bytes > self.memory_limit_bytes:
            report.error = f"peak {self.gib(report.peak_bytes)} over the limit of {self.gib(self.memory_limit_bytes)}"
        return report


def bisect_max_duration(fits: Callable[[float], bool], low: float, high: float, tolerance: float) -> float | None:
    """The largest max_duration in [low, high], to within `tolerance` seconds, for which `fits` holds, assuming
    memory grows with max_duration (fits(a) and b < a imply fits(b)); None when even `low` does not fit."""
    if tolerance <= 0 or low > high:
        raise ValueError(f"bisect_max_duration: need 0 < tolerance and low <= high, got {tolerance}, [{low}, {high}]")
    if fits(high):
        return high
    if not fits(low):
        return None
    while high - low > tolerance:  # fits(low) and not fits(high)
        mid = (low + high) / 2
        if fits(mid):
            low = mid
        else:
            high = mid
    return low


def seconds(x: float) -> str:
    """A max_duration as printed: whole seconds from 100 s, else 3 significant digits."""
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


class BatchesDoNotFit(RuntimeError):
    """The scan before training found a batch that runs out of memory."""


def optimizer_state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer | None) -> int:
    """The optimiser state still to be allocated: 2 x the trainable parameters' bytes when it has none yet."""
    if optimizer is not None and len(optimizer.state) > 0:
        return 0
    return 2 * sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)


def check_batches_fit(scan: MemoryScan, max_duration: float, tolerance: float | None = None) -> list[BatchReport]:
    """The scan before training: the reports when every batch of `max_duration` fits; otherwise bisects for the
    largest max_duration that does and raises BatchesDoNotFit naming the failing batch and that value."""
    reports = scan.run(max_duration)
    failed = next((r for r in reports if not r.fits), None)
    if failed is None:
        peak = max(r.peak_bytes for r in reports)
        log.info("memory scan: the most demanding batches at data.max_duration=%g fit, peak %s", max_duration,
                 scan.gib(peak))  # fmt: skip
        return reports
    tolerance = tolerance or max(1.0, 0.02 * max_duration)
    low = min(scan.longest_cut, max_duration)
    best = bisect_max_duration(scan.fits, low, max_duration, tolerance) if low < max_duration else None
    if best is None:
        advice = (f"even a batch of the longest cut alone ({scan.longest_cut:.1f} s) does not fit: lower "
                  f"data.max_cut_duration, or use a smaller model or trainer.amp")  # fmt: skip
    else:
        advice = (f"the largest data.max_duration that fits is about {seconds(best)} s; with a margin for "
                  f"batches the scan did not try, use data.max_duration={seconds(SAFETY_MARGIN * best)}")  # fmt: skip
    raise BatchesDoNotFit(
        f"at data.max_duration={max_duration:g} {failed.describe()} does not fit on {scan.device}: "
        f"{failed.error}. {advice} (python -m asr.train.find_batch_size finds it for a model and device; "
        f"trainer.scan_oom=false skips this scan)"
    )


def scan_of_data(model: nn.Module, data, loss: LossConfig, device: torch.device, amp: str, *,
                 optimizer: torch.optim.Optimizer | None = None, memory_limit_bytes: int | None = None) -> MemoryScan:
    """The MemoryScan of a run: the training sampler and dataset of `data` (an asr.data.loaders.AsrDataModule) at
    each max_duration tried (rank 0 of 1: the batches of one rank), `forward_backward` of `model` (unwrapped, on
    `device`)."""
    from dataclasses import replace

    from lhotse import CutSet

    from asr.data.loaders import AsrDataModule

    dataset = data.train_dataloader().dataset

    def sample(max_duration: float):
        # drop_last off: a corpus smaller than one batch still has one (the worst batches are full ones anyway)
        at = AsrDataModule(replace(data.cfg, max_duration=max_duration, drop_last=False), data.tokenizer,
                           data.frames_fn)  # fmt: skip
        return at.train_dataloader().sampler  # iterating it yields CutSets: cut lists only, no features

    def make_batch(cuts: list) -> Batch:
        return dataset[CutSet.from_cuts(cuts)]

    return MemoryScan(sample, make_batch, lambda batch: forward_backward(model, batch, loss, device, amp), device,
                      memory_limit_bytes, optimizer_state_bytes(model, optimizer), model)  # fmt: skip


def scan_wanted(scan_oom: bool | None, device: torch.device) -> bool:
    """trainer.scan_oom for `device`: null means on CUDA only (TrainerConfig.scan_oom)."""
    return device.type == "cuda" if scan_oom is None else bool(scan_oom)
