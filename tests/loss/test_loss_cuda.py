"""The losses on CUDA give what they give on CPU: values, occupations, prune ranges and gradients, over a sweep of
shapes, dtypes and transducer types; the full loss also against torchaudio's CUDA kernel.

Skipped without CUDA. ASR_CUDA_TEST_DEVICE=cpu runs the same comparisons CPU against CPU (a check of the tests).
"""

from __future__ import annotations

import os

import pytest
import torch

from asr.loss import (
    do_rnnt_pruning,
    get_rnnt_prune_ranges,
    mutual_information_recursion,
    rnnt_loss,
    rnnt_loss_pruned,
    rnnt_loss_simple,
    rnnt_loss_smoothed,
)

DEVICE = torch.device(os.environ.get("ASR_CUDA_TEST_DEVICE", "cuda"))
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"),
    pytest.mark.filterwarnings("ignore:get_rnnt_prune_ranges"),
]
TOL = {torch.float64: dict(rtol=1e-7, atol=1e-7), torch.float32: dict(rtol=2e-4, atol=2e-4)}
# (B, T, U, V): T = 1, T < U, U = 0 rows via the boundary, a long one with the LibriSpeech vocabulary
SHAPES = [(3, 9, 5, 6), (2, 1, 2, 4), (3, 4, 8, 5), (4, 30, 12, 7), (2, 160, 40, 500)]


def boundary_for(gen: torch.Generator, B: int, T: int, U: int, modified: bool) -> torch.Tensor:
    """(B, 4) rows [0, 0, U_b, T_b], one full-length row; T_b >= U_b for the modified transducer."""
    Ub = torch.randint(0, U + 1, (B,), generator=gen)
    Tb = torch.randint(1, T + 1, (B,), generator=gen)
    Ub[0], Tb[0] = U, T
    if modified:
        Tb = torch.maximum(Tb, Ub)
    zeros = torch.zeros(B, dtype=torch.int64)
    return torch.stack([zeros, zeros, Ub, Tb], dim=1)


def both(*tensors: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Leaf copies of `tensors` on CPU and on DEVICE (floating ones requiring grad)."""
    cpu, dev = [], []
    for t in tensors:
        a, b = t.clone(), t.clone().to(DEVICE)
        if t.is_floating_point():
            a.requires_grad_()
            b.requires_grad_()
        cpu.append(a)
        dev.append(b)
    return cpu, dev


def close(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> None:
    torch.testing.assert_close(a.detach().cpu().to(dtype), b.detach().cpu().to(dtype), **TOL[dtype])


def skip_impossible(shape, rnnt_type):
    if rnnt_type != "regular" and shape[1] < shape[2]:
        pytest.skip("the modified transducer needs T >= U")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
def test_simple_and_smoothed_losses_match_cpu(dtype, shape, rnnt_type):
    skip_impossible(shape, rnnt_type)
    B, T, U, V = shape
    gen = torch.Generator().manual_seed(1)
    lm = torch.randn(B, U + 1, V, generator=gen, dtype=torch.float64).to(dtype)
    am = torch.randn(B, T, V, generator=gen, dtype=torch.float64).to(dtype)
    symbols = torch.randint(1, V, (B, U), generator=gen)
    boundary = boundary_for(gen, B, T, U, rnnt_type != "regular")
    (lm_c, am_c, sym_c, bd_c), (lm_d, am_d, sym_d, bd_d) = both(lm, am, symbols, boundary)
    for loss_fn, extra in ((rnnt_loss_simple, {}), (rnnt_loss_smoothed, dict(lm_only_scale=0.25, am_only_scale=0.1))):
        lm_c.grad = am_c.grad = lm_d.grad = am_d.grad = None
        out_c, (px_c, py_c) = loss_fn(lm_c, am_c, sym_c, 0, boundary=bd_c, rnnt_type=rnnt_type, reduction="none",
                                      return_grad=True, **extra)  # fmt: skip
        out_d, (px_d, py_d) = loss_fn(lm_d, am_d, sym_d, 0, boundary=bd_d, rnnt_type=rnnt_type, reduction="none",
                                      return_grad=True, **extra)  # fmt: skip
        assert out_d.device.type == DEVICE.type and px_d.device.type == DEVICE.type
        close(out_c, out_d, dtype)
        close(px_c, px_d, dtype)
        close(py_c, py_d, dtype)
        out_c.sum().backward()
        out_d.sum().backward()
        close(lm_c.grad, lm_d.grad, dtype)
        close(am_c.grad, am_d.grad, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_mutual_information_recursion_matches_cpu(dtype, shape):
    B, T, U, _ = shape
    gen = torch.Generator().manual_seed(2)
    px = torch.randn(B, U, T + 1, generator=gen, dtype=torch.float64).to(dtype)
    py = torch.randn(B, U + 1, T, generator=gen, dtype=torch.float64).to(dtype)
    boundary = boundary_for(gen, B, T, U, modified=False)
    (px_c, py_c, bd_c), (px_d, py_d, bd_d) = both(px, py, boundary)
    out_c, (gx_c, gy_c) = mutual_information_recursion(px_c, py_c, boundary=bd_c, return_grad=True)
    out_d, (gx_d, gy_d) = mutual_information_recursion(px_d, py_d, boundary=bd_d, return_grad=True)
    close(out_c, out_d, dtype)
    close(gx_c, gx_d, dtype)
    close(gy_c, gy_d, dtype)
    out_c.sum().backward()
    out_d.sum().backward()
    close(px_c.grad, px_d.grad, dtype)
    close(py_c.grad, py_d.grad, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
@pytest.mark.parametrize("s_range", [2, 5])
def test_pruned_path_matches_cpu(dtype, shape, rnnt_type, s_range):
    """Prune ranges equal (on float64 occupations, where argmax ties cannot split), then pruning and the pruned
    loss with its gradients on the same ranges."""
    skip_impossible(shape, rnnt_type)
    B, T, U, V = shape
    D = 8
    gen = torch.Generator().manual_seed(3)
    lm = torch.randn(B, U + 1, V, generator=gen, dtype=torch.float64)
    am = torch.randn(B, T, V, generator=gen, dtype=torch.float64)
    symbols = torch.randint(1, V, (B, U), generator=gen)
    boundary = boundary_for(gen, B, T, U, rnnt_type != "regular")
    _, (px, py) = rnnt_loss_smoothed(lm, am, symbols, 0, 0.25, 0.0, boundary=boundary, rnnt_type=rnnt_type,
                                     return_grad=True)  # fmt: skip
    ranges = get_rnnt_prune_ranges(px, py, boundary, s_range)
    ranges_d = get_rnnt_prune_ranges(px.to(DEVICE), py.to(DEVICE), boundary.to(DEVICE), s_range)
    assert torch.equal(ranges, ranges_d.cpu())

    enc = torch.randn(B, T, D, generator=gen, dtype=torch.float64).to(dtype)
    dec = torch.randn(B, U + 1, D, generator=gen, dtype=torch.float64).to(dtype)
    weight = torch.randn(V, D, generator=gen, dtype=torch.float64).to(dtype)
    (enc_c, dec_c, w_c, sym_c, bd_c, r_c), (enc_d, dec_d, w_d, sym_d, bd_d, r_d) = both(
        enc, dec, weight, symbols, boundary, ranges)
    losses = []
    for e, d, w, s, bd, r in ((enc_c, dec_c, w_c, sym_c, bd_c, r_c), (enc_d, dec_d, w_d, sym_d, bd_d, r_d)):
        am_pruned, lm_pruned = do_rnnt_pruning(e, d, r)  # (B, T, S, D)
        logits = torch.tanh(am_pruned + lm_pruned) @ w.t()  # (B, T, S, V)
        loss = rnnt_loss_pruned(logits, s, r, 0, bd, rnnt_type=rnnt_type, reduction="none")
        loss.sum().backward()
        losses.append(loss)
    close(losses[0], losses[1], dtype)
    for a, b in ((enc_c, enc_d), (dec_c, dec_d), (w_c, w_d)):
        close(a.grad, b.grad, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", SHAPES)
def test_full_loss_matches_cpu_and_torchaudio(dtype, shape):
    torchaudio = pytest.importorskip("torchaudio")
    B, T, U, V = shape
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(B, T, U + 1, V, generator=gen, dtype=torch.float64).to(dtype)
    symbols = torch.randint(1, V, (B, U), generator=gen)
    boundary = boundary_for(gen, B, T, U, modified=False)
    boundary[:, 2] = boundary[:, 2].clamp(min=1)  # torchaudio wants at least one label
    (x_c, sym_c, bd_c), (x_d, sym_d, bd_d) = both(logits, symbols, boundary)
    ours_c = rnnt_loss(x_c, sym_c, 0, boundary=bd_c, reduction="none")
    ours_d = rnnt_loss(x_d, sym_d, 0, boundary=bd_d, reduction="none")
    close(ours_c, ours_d, dtype)
    ours_c.sum().backward()
    ours_d.sum().backward()
    close(x_c.grad, x_d.grad, dtype)
    if dtype == torch.float32:  # torchaudio's kernel: float32 (and float16) only
        x_t = logits.clone().to(DEVICE).requires_grad_()
        ref = torchaudio.functional.rnnt_loss(x_t, symbols.int().to(DEVICE), bd_d[:, 3].int(), bd_d[:, 2].int(),
                                              blank=0, reduction="none", clamp=-1)  # fmt: skip
        close(ref, ours_d, dtype)
        ref.sum().backward()
        close(x_t.grad, x_d.grad, dtype)


def test_loss_stays_on_the_device_and_syncs_little():
    """The pruned step's outputs live on the device (no silent CPU round trip of a (B, T, S, V) tensor)."""
    B, T, U, V = 2, 50, 10, 30
    gen = torch.Generator().manual_seed(5)
    lm = torch.randn(B, U + 1, V, generator=gen).to(DEVICE)
    am = torch.randn(B, T, V, generator=gen).to(DEVICE)
    symbols = torch.randint(1, V, (B, U), generator=gen).to(DEVICE)
    loss, (px, py) = rnnt_loss_smoothed(lm, am, symbols, 0, 0.25, 0.0, return_grad=True)
    ranges = get_rnnt_prune_ranges(px, py, None, 5)
    assert loss.device.type == ranges.device.type == DEVICE.type
    assert torch.isfinite(loss)
