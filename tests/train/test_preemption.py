"""PreemptionHandler: signals are recorded, never raised; handlers restored; ranks agree (single process here)."""

import os
import signal

import pytest
import torch

from asr.train.distributed import DistInfo
from asr.train.preemption import EXIT_PREEMPTED, PREEMPTION_SIGNALS, PreemptionHandler

ONE = DistInfo(0, 1, 0, torch.device("cpu"))


@pytest.mark.parametrize("sig", PREEMPTION_SIGNALS, ids=lambda s: s.name)
def test_signal_is_recorded_not_fatal_and_handlers_restored(sig):
    before = {s: signal.getsignal(s) for s in PREEMPTION_SIGNALS}
    with PreemptionHandler() as handler:
        assert not handler.requested(ONE)
        os.kill(os.getpid(), sig)  # delivered to this (main) thread before kill() returns
        assert handler.signalled and handler.first_signal == sig.name
        assert handler.requested(ONE) and handler.requested(ONE)
    assert {s: signal.getsignal(s) for s in PREEMPTION_SIGNALS} == before


def test_second_signal_during_a_save_does_not_interrupt_it(tmp_path):
    with PreemptionHandler() as handler:
        os.kill(os.getpid(), signal.SIGTERM)
        assert handler.requested(ONE)
        # the "save": a loop of writes with a signal in the middle runs to its end
        with open(tmp_path / "f", "wb") as f:
            for i in range(100):
                f.write(bytes([i]) * 1000)
                if i == 50:
                    os.kill(os.getpid(), signal.SIGTERM)
                    os.kill(os.getpid(), signal.SIGINT)
        assert (tmp_path / "f").stat().st_size == 100_000
        assert handler.received == [signal.SIGTERM, signal.SIGTERM, signal.SIGINT]
        assert handler.describe() == "SIGTERM (+2 more, ignored)"


def test_exit_status_is_distinct():
    assert EXIT_PREEMPTED not in (0, 1, 128 + signal.SIGTERM, 128 + signal.SIGINT, 128 + signal.SIGUSR1)
