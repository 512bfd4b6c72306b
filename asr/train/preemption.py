"""Graceful preemption: a signal makes training stop after the current batch with a checkpoint, on every rank.

Schedulers preempt a job with a signal and a grace period, then SIGKILL: SLURM sends SIGTERM (or the signal of
`--signal=USR1@SECONDS` that long before the end), Kubernetes SIGTERM then SIGKILL after
terminationGracePeriodSeconds, torchrun's agent forwards the SIGTERM/SIGINT it receives to its workers and SIGKILLs
them 30 s later, Ctrl-C is SIGINT. `PreemptionHandler` records the first such signal instead of dying; the loop
asks `requested(dist)` at each batch boundary, an all-reduce, so that every rank stops after the same batch even
when only one of them was signalled; it then writes the usual atomic checkpoint (sampler position, RNG states) and
exits with `EXIT_PREEMPTED`. Running the same command again continues exactly where it stopped.

A signal arriving while the checkpoint is written (a second SIGTERM, an impatient Ctrl-C) is only counted: the
handler never raises, so it cannot interrupt the write half-way (the write is atomic anyway: temporary file, fsync,
rename). Only SIGKILL stops a save.
"""

import logging
import signal
import threading
from collections.abc import Iterable
from types import FrameType

import torch

from asr.train.distributed import DistInfo, all_reduce_sum

log = logging.getLogger("asr.train")

# The exit status of a run stopped by a signal after writing its checkpoint: 75 is EX_TEMPFAIL of sysexits.h,
# "a temporary failure; the user is invited to retry". It differs from 143/130/138 (killed by SIGTERM/SIGINT/SIGUSR1
# without a checkpoint: the shell's 128 + signal number), from 1 (an error) and from 0 (training finished), so a
# job script can requeue on 75 (`[ $? -eq 75 ] && scontrol requeue $SLURM_JOB_ID`) and only on 75.
EXIT_PREEMPTED = 75

# The signals that ask for a checkpoint and a clean stop.
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class PreemptionHandler:
    """Records the signals of `signals` instead of letting them kill the process.

    Use as a context manager around training (handlers are installed on entry and the previous ones restored on
    exit); signal handlers can only be installed from the main thread, elsewhere this does nothing (with a warning).

    Args:
        signals: the signals to catch.
    """

    def __init__(self, signals: Iterable[signal.Signals] = PREEMPTION_SIGNALS):
        self.signals = tuple(signals)
        self.received: list[int] = []  # every caught signal, in order
        self._previous: dict[int, object] = {}
        self._agreed = False

    # ------------------------------------------------------------------------------------------- handlers
    def install(self) -> "PreemptionHandler":
        if threading.current_thread() is not threading.main_thread():
            log.warning("preemption handler not installed: not on the main thread")
            return self
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def close(self) -> None:
        """Restores the handlers that were there before `install`."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
        self._previous.clear()

    def __enter__(self) -> "PreemptionHandler":
        return self.install()

    def __exit__(self, *exc) -> None:
        self.close()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # Runs on the main thread between two bytecodes: only record, never raise (that would abort a save
        # half-way) and never log (the signal may arrive inside a logging call).
        self.received.append(signum)

    # ------------------------------------------------------------------------------------------- queries
    @property
    def signalled(self) -> bool:
        """True once this process has caught a signal."""
        return bool(self.received)

    @property
    def first_signal(self) -> str | None:
        return signal.Signals(self.received[0]).name if self.received else None

    def requested(self, dist: DistInfo) -> bool:
        """Whether any rank caught a signal; a collective: every rank must call it at the same batch boundary.

        Once true it stays true (without further collectives), so the stop and its checkpoint happen once.
        """
        if self._agreed:
            return True
        mine = torch.tensor([float(self.signalled)], dtype=torch.float64)
        self._agreed = float(all_reduce_sum(mine, dist)[0]) > 0
        return self._agreed

    def describe(self) -> str:
        """For the log: which signal, and how many arrived."""
        if not self.received:
            return "a signal on another rank"
        extra = f" (+{len(self.received) - 1} more, ignored)" if len(self.received) > 1 else ""
        return f"{self.first_signal}{extra}"
