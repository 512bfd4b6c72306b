"""SaveRetry: OSErrors counted and logged, reset by a good write, exhausted after N in a row."""

import errno
import logging

import pytest
import torch

from asr.train.distributed import DistInfo
from asr.train.save_retry import CheckpointWriteError, SaveRetry

ONE = DistInfo(0, 1, 0, torch.device("cpu"))


def _fail(code):
    def write():
        raise OSError(code, "injected")

    return write


def test_consecutive_failures_counted_reset_and_exhausted(caplog):
    retry = SaveRetry(max_failures=2)
    with caplog.at_level(logging.ERROR, logger="asr.train"):
        assert not retry.attempt(_fail(errno.ENOSPC), "checkpoint-3.pt")
    assert "ENOSPC" in caplog.text and "checkpoint-3.pt" in caplog.text
    assert not retry.exhausted and retry.outcome(False, ONE) == (False, False)
    assert retry.attempt(lambda: None, "checkpoint-6.pt")
    assert retry.outcome(True, ONE) == (True, False)
    assert retry.consecutive == 0 and retry.total == 1
    assert not retry.attempt(_fail(errno.EIO), "a")
    assert not retry.attempt(_fail(errno.EIO), "b")
    assert retry.exhausted and retry.outcome(False, ONE) == (False, True)
    with pytest.raises(CheckpointWriteError, match="2 consecutive.*EIO"):
        raise retry.error()


def test_other_errors_propagate_and_bad_config_rejected():
    with pytest.raises(ZeroDivisionError):
        SaveRetry(1).attempt(lambda: 1 / 0, "x")
    with pytest.raises(ValueError, match="max_save_failures"):
        SaveRetry(0)
