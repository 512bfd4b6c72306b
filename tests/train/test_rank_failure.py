"""exit_on_failure in one process: the failure is logged with the rank and the batch, then raised as usual."""

import logging

import pytest
import torch

from asr.train.distributed import DistInfo
from asr.train.rank_failure import exit_on_failure


def test_single_process_logs_where_and_reraises(caplog):
    def boom():
        raise ValueError("injected")

    dist = DistInfo(0, 1, 0, torch.device("cpu"))
    with caplog.at_level(logging.ERROR, logger="asr.train"), pytest.raises(ValueError, match="injected"):
        exit_on_failure(boom, dist, lambda: "at batch 7 (cut ids ['a', 'b'])")
    assert "rank 0 of 1 failed at batch 7 (cut ids ['a', 'b']): ValueError: injected" in caplog.text


def test_result_passes_through():
    assert exit_on_failure(lambda: 3, DistInfo(0, 1, 0, torch.device("cpu")), lambda: "") == 3
