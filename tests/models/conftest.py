"""Fixtures of the model tests.

Until asr.loss provides the pruned-loss functions, the model tests run against fast_rnnt's (same names and
semantics), patched into asr.loss for the duration of each test only. Product code always calls asr.loss.
"""

import pytest
import torch

import asr.loss

LOSS_FUNCTIONS = ("rnnt_loss_smoothed", "get_rnnt_prune_ranges", "do_rnnt_pruning", "rnnt_loss_pruned")


@pytest.fixture(autouse=True)
def transducer_losses(monkeypatch):
    """Make sure asr.loss has the four functions the transducer calls; fall back to fast_rnnt's."""
    missing = [name for name in LOSS_FUNCTIONS if not hasattr(asr.loss, name)]
    if missing:
        fast_rnnt = pytest.importorskip("fast_rnnt", reason=f"asr.loss lacks {missing} and fast_rnnt is absent")
        for name in missing:
            monkeypatch.setattr(asr.loss, name, getattr(fast_rnnt, name), raising=False)
    yield


@pytest.fixture(autouse=True)
def seeded():
    torch.manual_seed(0)
    yield
