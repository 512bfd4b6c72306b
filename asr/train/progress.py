"""Console progress lines with an ETA, tensorboard scalars and the log files of a run (rank 0 only writes)."""

import datetime
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger("asr.train")


def setup_logging(log_dir: Path | None, rank: int) -> None:
    """Console logging on every rank (warnings only off rank 0) and, on rank 0, a file in `log_dir`."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, "_asr_train", False):
            root.removeHandler(h)
    fmt = logging.Formatter(f"%(asctime)s %(levelname)s [rank {rank}] %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
    if log_dir is not None and rank == 0:
        log_dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H-%M-%S")
        handlers.append(logging.FileHandler(log_dir / f"log-train-{stamp}.txt"))
    for h in handlers:
        h.setFormatter(fmt)
        h._asr_train = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.setLevel(logging.INFO if rank == 0 else logging.WARNING)


def format_duration(seconds: float) -> str:
    seconds = max(int(seconds), 0)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}"


class Progress:
    """Tracks wall time per batch and estimates the time left."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.last = self.start
        self.batches = 0

    def tick(self, n: int = 1) -> float:
        """Counts `n` batches; returns seconds since the previous tick."""
        now = time.monotonic()
        dt, self.last = now - self.last, now
        self.batches += n
        return dt

    def eta(self, batches_left: int | None, seconds_left: float | None = None) -> str:
        """Time to the end: batches left at the mean rate so far, or the time budget left if that is sooner."""
        ends = [] if seconds_left is None else [seconds_left]
        if batches_left is not None and self.batches > 0:
            ends.append((self.last - self.start) / self.batches * batches_left)
        return format_duration(min(ends)) if ends else "?"


class Scalars:
    """Tensorboard scalars under exp_dir/tensorboard; a no-op off rank 0 or when disabled."""

    def __init__(self, log_dir: Path | None):
        self.writer = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(log_dir))

    def add(self, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
