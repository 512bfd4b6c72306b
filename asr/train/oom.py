"""Out-of-memory batches during training: detection, freeing, the log of the batch, and agreement between ranks.

With trainer.skip_oom_batches an out-of-memory error in the forward or backward of one batch does not end the run:
the batch is dropped on every rank, its cut ids and sizes are logged, memory is freed, the count
(`counters["oom_batches"]`, saved in checkpoints) grows, and training goes on with the next batch. After
trainer.max_oom_skips of them the run stops with OomSkipsExceeded: the batches are too large for the device
(`python -m asr.train.find_batch_size` finds a data.max_duration that fits).

The scheme under DDP, and its cost
----------------------------------
DDP all-reduces gradients from inside backward(), bucket by bucket. A rank that fails in forward never enters
those collectives and one that fails half-way through backward has launched only some of them: its peers then wait
for buckets that never come (a hang until the collective timeout), or worse, pair the next collective of the
failed rank with the wrong one. Catching the error on one rank cannot be repaired from there (pytorch/pytorch#44353).
So, when skipping is on, the trainer

1. runs forward and backward on the unwrapped model: no collective at all, whatever fails where;
2. all-reduces one small tensor [has a loss, ran out of memory] (the exchange the loop needs anyway for batches
   whose every utterance was bad); if any rank ran out of memory, every rank drops the batch (`OomSkips.skip`);
3. otherwise all-reduces the gradients itself (`reduce_gradients`: summed, divided by the world size as DDP does,
   in buckets of `bucket_mb`) and broadcasts rank 0's buffers (`broadcast_module`, as DDP's broadcast_buffers
   does before each forward), then clips and steps as usual.

The model is then not wrapped in DDP at all (its constructor's broadcast of rank 0's weights is done by
`broadcast_module`), which also saves DDP's gradient buckets: memory the size of the gradients.

Every rank thus runs the same collectives in the same order on every batch. The cost is DDP's overlap of the
gradient all-reduce with backward: the all-reduce (the size of the gradients, e.g. 320 MB in float32 for 80 M
parameters: about 5 ms over NVLink, 30 ms over PCIe, far more between nodes) now follows backward instead of
hiding behind it; a single process pays nothing. trainer.skip_oom_batches=false keeps DDP's overlapped path, and an
out-of-memory error then ends the job (asr.train.rank_failure) with the batch's cut ids in the message, as in
icefall. An error in the optimiser step itself (its state allocated at the first step) is not skipped: the
parameters may be half updated by then.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterable

import torch
import torch.distributed
from torch import nn

from asr.data.batch import Batch
from asr.train.distributed import DistInfo

log = logging.getLogger("asr.train")

# The frame shift of the features (lhotse's Fbank default, 10 ms): turns frames into seconds in the log.
FRAME_SHIFT_S = 0.01

_MESSAGES = (
    "CUDA out of memory",  # torch.OutOfMemoryError's text, also in older torch's plain RuntimeError
    "DefaultCPUAllocator: can't allocate memory",  # the CPU allocator's RuntimeError
    "can't allocate memory",
    "out of memory",
)


def is_out_of_memory(error: BaseException) -> bool:
    """True for an allocation failure: torch.OutOfMemoryError (CUDA, also torch.cuda.OutOfMemoryError), Python's
    MemoryError, or a RuntimeError of the CPU (DefaultCPUAllocator) or CUDA allocator."""
    if isinstance(error, (torch.OutOfMemoryError, MemoryError)):
        return True
    return isinstance(error, RuntimeError) and any(m in str(error) for m in _MESSAGES)


def batch_sizes(batch: Batch) -> str:
    """The sizes that decide a batch's memory: utterances, padded and total frames, seconds, tokens."""
    B, T = batch.features.size(0), batch.features.size(1)
    frames = int(batch.feature_lens.sum())
    return (f"{B} utterances x {T} frames padded, {frames} frames ({frames * FRAME_SHIFT_S:.1f} s) in all, "
            f"{int(batch.token_lens.sum())} tokens (longest {int(batch.token_lens.max()) if B else 0})")  # fmt: skip


def free_memory(optimizer: torch.optim.Optimizer | None, device: torch.device) -> None:
    """Drops what a failed forward or backward left: the gradients (set to None), unreachable tensors, and CUDA's
    cached blocks (so the next batch, and other processes, see the memory free)."""
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


class BatchOutOfMemoryError(torch.OutOfMemoryError):
    """An out-of-memory error that names its batch (trainer.skip_oom_batches=false, or too many skipped)."""


def batch_error(error: BaseException, batch: Batch, where: str) -> BatchOutOfMemoryError:
    """The error to raise for `batch`: its cut ids and sizes, and what to do."""
    return BatchOutOfMemoryError(
        f"out of memory {where}: cut ids {list(batch.cut_ids)}; {batch_sizes(batch)}. Lower data.max_duration "
        f"(python -m asr.train.find_batch_size finds one that fits) or set trainer.skip_oom_batches=true. "
        f"The error: {error}"
    )


class OomSkipsExceeded(RuntimeError):
    """More batches ran out of memory than trainer.max_oom_skips allows."""


class OomSkips:
    """Counts and logs the batches dropped for lack of memory; the same decisions on every rank.

    Args:
        state: the training state; its counters["oom_batches"] is the count (saved in checkpoints, resumed).
        max_skips: the run stops once more batches than this were dropped (0: no limit).
    """

    KEY = "oom_batches"

    def __init__(self, state, max_skips: int):
        self.state, self.max_skips = state, max_skips

    @property
    def count(self) -> int:
        return self.state.counters.get(self.KEY, 0)

    def skip(self, batch: Batch, where: str, ranks_failed: int, error: str | None, dist: DistInfo,
             optimizer: torch.optim.Optimizer) -> None:
        """Frees memory, counts and logs the dropped batch; raises OomSkipsExceeded past max_skips.

        Args:
            where: the batch's place, e.g. "at batch 17 (epoch 1, batch 5 of it)".
            ranks_failed: the ranks that ran out of memory on it (the all-reduced flag).
            error: this rank's error message, or None when another rank failed.
        """
        free_memory(optimizer, dist.device)
        self.state.counters[self.KEY] = self.count + 1
        if error is not None:  # a warning: every rank's log shows it, not only rank 0's
            log.warning("rank %d: out of memory %s, cut ids %s; %s: %s", dist.rank, where, list(batch.cut_ids),
                        batch_sizes(batch), error.splitlines()[0])  # fmt: skip
        of_ranks = f" on {ranks_failed} of {dist.world_size} ranks" if dist.is_distributed else ""
        log.warning("batch skipped %s: out of memory%s (%d skipped so far%s)", where, of_ranks, self.count,
                    f", at most {self.max_skips}" if self.max_skips else "")  # fmt: skip
        if self.max_skips and self.count > self.max_skips:
            raise OomSkipsExceeded(
                f"{self.count} batches ran out of memory, more than trainer.max_oom_skips={self.max_skips}: "
                f"the batches are too large for this device. Lower data.max_duration (python -m "
                f"asr.train.find_batch_size finds the largest that fits) and re-run to resume"
            )


def _buckets(tensors: list[torch.Tensor], bucket_bytes: int) -> Iterable[list[torch.Tensor]]:
    """Consecutive runs of tensors of one dtype and device, each about `bucket_bytes` (one tensor may exceed it)."""
    bucket: list[torch.Tensor] = []
    size = 0
    for t in tensors:
        if bucket and (t.dtype != bucket[0].dtype or t.device != bucket[0].device or size >= bucket_bytes):
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        size += t.numel() * t.element_size()
    if bucket:
        yield bucket


def _in_buckets(tensors: list[torch.Tensor], bucket_mb: float, collective: Callable[[torch.Tensor], object]) -> None:
    """Runs `collective` in place on each bucket of `tensors` flattened into one (N,) tensor, and copies the result
    back: one collective call per ~bucket_mb MB instead of one per tensor."""
    for bucket in _buckets(tensors, int(bucket_mb * 2**20)):
        flat = torch.cat([t.reshape(-1) for t in bucket])  # (N,)
        collective(flat)
        offset = 0
        for t in bucket:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()


def reduce_gradients(params: list[nn.Parameter], dist: DistInfo, bucket_mb: float = 25.0) -> None:
    """Averages the gradients of `params` over ranks (DDP's reduction), in buckets of about `bucket_mb` MB (DDP's
    default bucket size): the extra memory is one bucket. A missing gradient counts as zeros (a rank whose batch
    had no loss, a parameter the batch did not reach); `params` must be the same list, in the same order, on
    every rank."""
    if not dist.is_distributed:
        return
    grads = []
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)

    def average(flat: torch.Tensor) -> None:  # (N,)
        torch.distributed.all_reduce(flat, op=torch.distributed.ReduceOp.SUM)
        flat /= dist.world_size

    _in_buckets(grads, bucket_mb, average)


def broadcast_module(model: nn.Module, dist: DistInfo, parameters: bool = True,
                     bucket_mb: float = 25.0) -> None:
    """Rank 0's parameters (unless `parameters` is False) and buffers on every rank: what DDP's constructor does,
    and, buffers only, what its broadcast_buffers does before each forward (BatchNorm running statistics)."""
    if not dist.is_distributed:
        return
    tensors = [p.data for p in model.parameters()] if parameters else []
    tensors += list(model.buffers())
    with torch.no_grad():
        _in_buckets(tensors, bucket_mb, lambda flat: torch.distributed.broadcast(flat, src=0))
