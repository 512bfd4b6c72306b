"""Distributed set-up: one process on CPU up to torchrun over several nodes.

torchrun (single or multi-node, any rendezvous) exports RANK, WORLD_SIZE and LOCAL_RANK plus MASTER_ADDR/PORT;
`setup_distributed` reads them and joins the process group with the env:// method. Without torchrun the run is a
single process and no process group is created. NCCL is used on CUDA, gloo on CPU.
"""

import datetime
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from asr.device import resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on the process that writes logs and checkpoints."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def pick_device(device: str, local_rank: int) -> torch.device:
    """The torch device of this process: "auto" is CUDA (GPU `local_rank`) when available, else CPU."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"trainer.device must be auto, cpu or cuda, got {device!r}")
    dev = resolve_device(device, index=local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    return dev


def setup_distributed(device: str = "auto", timeout_s: float = 0.0) -> DistInfo:
    """Reads torchrun's environment and joins the process group (NCCL on CUDA, gloo on CPU).

    Args:
        device: "auto", "cpu" or "cuda".
        timeout_s: the longest a collective waits for the other ranks (trainer.collective_timeout_s); 0: torch's
            default (10 minutes for NCCL, 30 for gloo).
    """
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    dev = pick_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        timeout = {"timeout": datetime.timedelta(seconds=timeout_s)} if timeout_s > 0 else {}
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size, **timeout)
        log.info("rank %d/%d joined the %s process group (local rank %d)", rank, world_size, backend, local_rank)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of `values` over ranks (a copy; unchanged in a single process).

    Args:
        values: any shape; float64 keeps counters exact.
    """
    out = values.clone().to(info.device)
    if info.is_distributed:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.cpu()


def gather_objects(obj: object, info: DistInfo) -> list[object]:
    """The picklable `obj` of every rank, in rank order (on every rank)."""
    if not info.is_distributed:
        return [obj]
    out: list[object] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.is_distributed:
        dist.barrier()
