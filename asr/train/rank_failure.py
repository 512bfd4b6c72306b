"""Rank failure under DDP: one rank that raises makes every rank exit within a bounded time.

Without care, a rank that raises (a bad batch, out of memory, a lost node) leaves the others blocked in their next
collective: until NCCL's watchdog timeout (10 to 30 minutes by default) or, with gloo, for as long as the failed
process lingers. Two things bound it here:

- `exit_on_failure` wraps training on every rank: an exception is logged with the rank, the batch and its cut ids
  (the trainer's `where()`), the log is flushed, and a distributed process leaves with `os._exit(EXIT_FAILURE)`,
  so it never waits in a collective, in destroy_process_group or in an atexit handler. Its peers then see their
  connections to it close (gloo: at once) or their collective time out (NCCL), raise in turn, and leave the same
  way, logging that a collective failed.
- `trainer.collective_timeout_s` is the process group's timeout (init_process_group(timeout=...)): the longest any
  rank waits for the others in one collective, hence the bound on the exit when a peer hangs rather than dies.

Under torchrun the agent notices a worker's non-zero exit within its monitor interval (0.1 s), sends SIGTERM to the
others and SIGKILL 30 s later; with `--max-restarts N` it then starts all workers again, which resume from the
last checkpoint in trainer.exp_dir (the normal resume: a restart costs the batches since that checkpoint).
"""

import logging
import os
import sys
from collections.abc import Callable
from typing import TypeVar

import torch.distributed

from asr.train.distributed import DistInfo

log = logging.getLogger("asr.train")

# The exit status of a rank that raised, or whose peer did: Python's own status for an uncaught exception.
EXIT_FAILURE = 1

T = TypeVar("T")


def _flush_logs() -> None:
    for h in logging.getLogger().handlers:
        try:
            h.flush()
        except Exception:  # a closed stream must not hide the failure being reported
            pass
    sys.stdout.flush()
    sys.stderr.flush()


def exit_on_failure(run: Callable[[], T], dist: DistInfo, where: Callable[[], str]) -> T:
    """Runs `run()`; on an exception logs it (rank, `where()`, traceback) and, in a distributed job, exits the
    process at once with EXIT_FAILURE. In a single process the exception propagates as usual.

    Args:
        run: the training (e.g. trainer.fit).
        dist: this process's place in the job.
        where: describes the batch in progress, e.g. "at batch 17 (epoch 1, batch 5 of it), cut ids [...]".
    """
    try:
        return run()
    except SystemExit:
        raise
    except BaseException as e:
        collective = isinstance(e, getattr(torch.distributed, "DistError", ())) or "gloo" in str(e).lower()
        what = ("a collective failed (another rank probably failed first: see its log)" if collective
                else f"{type(e).__name__}: {e}")  # fmt: skip
        log.error("rank %d of %d failed %s: %s", dist.rank, dist.world_size, where(), what, exc_info=not collective)
        if not dist.is_distributed:
            raise
        _flush_logs()
        os._exit(EXIT_FAILURE)
