"""Disk faults while writing checkpoints: keep training, retry at the next save point, stop after N in a row.

A full disk (ENOSPC), a quota (EDQUOT) or an I/O error (EIO) on a shared file system while a checkpoint is written
need not end a run that has hours of work in memory: the checkpoint write is atomic (temporary file, fsync,
rename; the temporary file is removed on failure), so the previous checkpoints are intact; the run logs the
error and carries on, and the next save point tries again (someone may have freed space meanwhile). After
`max_failures` consecutive failures the disk is not coming back and training stops with `CheckpointWriteError`:
going on would only accumulate work that cannot be saved.

Only rank 0 writes; `SaveRetry.outcome` shares its result so that every rank goes on, or stops, together.
"""

import errno
import logging
from collections.abc import Callable

import torch

from asr.train.distributed import DistInfo, all_reduce_sum

log = logging.getLogger("asr.train")


class CheckpointWriteError(RuntimeError):
    """Too many consecutive checkpoint writes failed (trainer.max_save_failures)."""


class SaveRetry:
    """Counts consecutive failed checkpoint writes.

    Args:
        max_failures: stop after this many consecutive failures (>= 1).
    """

    def __init__(self, max_failures: int):
        if max_failures < 1:
            raise ValueError(f"trainer.max_save_failures must be >= 1, got {max_failures}")
        self.max_failures = max_failures
        self.consecutive = 0  # failures since the last good write
        self.total = 0  # failures in this run
        self.last_error: str = ""

    def attempt(self, write: Callable[[], None], what: str) -> bool:
        """Runs `write()`; an OSError is logged and counted, not raised. Returns whether it succeeded."""
        try:
            write()
        except OSError as e:
            self.consecutive += 1
            self.total += 1
            code = errno.errorcode.get(e.errno, str(e.errno)) if e.errno is not None else type(e).__name__
            self.last_error = f"{code}: {e}"
            log.error("could not write %s (%s); the previous checkpoints are intact; %d consecutive failure(s) of "
                      "trainer.max_save_failures=%d, retrying at the next save point", what, self.last_error,
                      self.consecutive, self.max_failures)  # fmt: skip
            return False
        if self.consecutive:
            log.info("wrote %s after %d failed attempt(s)", what, self.consecutive)
        self.consecutive = 0
        return True

    @property
    def exhausted(self) -> bool:
        return self.consecutive >= self.max_failures

    def outcome(self, written: bool, dist: DistInfo) -> tuple[bool, bool]:
        """(whether the file was written, whether training must stop) as the writer saw them, on every rank, so
        that they all take the same path next (a collective).

        Args:
            written: what `attempt` returned on the writer; True on the other ranks.
        """
        mine = torch.tensor([float(not written), float(self.exhausted)], dtype=torch.float64)
        failed, stop = (float(v) > 0 for v in all_reduce_sum(mine, dist))
        return not failed, stop

    def error(self) -> CheckpointWriteError:
        return CheckpointWriteError(
            f"{self.consecutive} consecutive checkpoint writes failed (trainer.max_save_failures="
            f"{self.max_failures}); the last: {self.last_error or 'on rank 0'}. Free space in trainer.exp_dir or "
            f"fix the file system, then run the same command again: it resumes from the last checkpoint written"
        )
