"""The backend switch sends the same calls to fast_rnnt / k2, and fails clearly when they are missing."""

from __future__ import annotations

import importlib.util

import pytest
import torch

import asr.loss as L


@pytest.fixture(autouse=True)
def restore_backend():
    yield
    L.set_backend("torch")


def test_default_is_torch_and_bad_name_raises():
    assert L.get_backend() == "torch"
    with pytest.raises(ValueError, match="backend"):
        L.set_backend("warp")


@pytest.mark.skipif(importlib.util.find_spec("k2") is not None, reason="k2 is installed")
def test_missing_backend_raises_clear_error():
    with pytest.raises(RuntimeError, match="'k2' is not installed"):
        L.set_backend("k2")
    assert L.get_backend() == "torch"


@pytest.mark.oracle
def test_fast_rnnt_backend_dispatches(fast_rnnt, monkeypatch):
    gen = torch.Generator().manual_seed(31)
    lm, am = torch.randn(2, 4, 5, generator=gen), torch.randn(2, 6, 5, generator=gen)
    symbols = torch.randint(1, 5, (2, 3), generator=gen)
    calls = []
    real = fast_rnnt.rnnt_loss_simple
    monkeypatch.setattr(fast_rnnt, "rnnt_loss_simple", lambda *a, **k: calls.append(k) or real(*a, **k))
    L.set_backend("fast_rnnt")
    assert L.get_backend() == "fast_rnnt"
    got = L.rnnt_loss_simple(lm, am, symbols, 0, None, "regular", 0.0, "sum")  # positional, k2's order
    assert calls and calls[0]["reduction"] == "sum"
    L.set_backend("torch")
    torch.testing.assert_close(got, L.rnnt_loss_simple(lm, am, symbols, 0, reduction="sum"))
