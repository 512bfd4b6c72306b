"""Simple, smoothed and full RNN-T losses against fast_rnnt, torchaudio and brute-force enumeration."""

from __future__ import annotations

import math

import pytest
import torch

from asr.loss import (
    get_rnnt_logprobs,
    get_rnnt_logprobs_joint,
    get_rnnt_logprobs_smoothed,
    rnnt_loss,
    rnnt_loss_simple,
    rnnt_loss_smoothed,
)
from tests.loss.conftest import assert_close, brute_force_loss, random_boundary

SHAPES = [(3, 6, 4, 5), (2, 1, 3, 4), (3, 3, 7, 6), (2, 12, 5, 9)]  # (B, T, U, V): T = 1 and T < U included


def make_inputs(shape, dtype, seed, modified=False):
    gen = torch.Generator().manual_seed(seed)
    B, T, U, V = shape
    lm = torch.randn(B, U + 1, V, generator=gen, dtype=torch.float64).to(dtype)
    am = torch.randn(B, T, V, generator=gen, dtype=torch.float64).to(dtype)
    symbols = torch.randint(1, V, (B, U), generator=gen)
    boundary = random_boundary(gen, B, U, T, modified=modified)
    return lm, am, symbols, boundary, gen


def compare_loss_and_grads(ours, theirs, inputs, dtype, kwargs):
    """Values, occupations (return_grad) and input gradients of two loss functions, for every reduction."""
    for reduction in ("none", "mean", "sum"):
        xs1 = [x.clone().requires_grad_() for x in inputs]
        xs2 = [x.clone().requires_grad_() for x in inputs]
        l1, (gx1, gy1) = ours(*xs1, reduction=reduction, return_grad=True, **kwargs)
        l2, (gx2, gy2) = theirs(*xs2, reduction=reduction, return_grad=True, **kwargs)
        assert_close(l1, l2, dtype)
        assert_close(gx1, gx2, dtype)
        assert_close(gy1, gy2, dtype)
        w = torch.rand(l1.shape, dtype=dtype) if reduction == "none" else torch.tensor(1.0, dtype=dtype)
        (l1 * w).sum().backward()
        (l2 * w).sum().backward()
        for a, b in zip(xs1, xs2):
            assert_close(a.grad, b.grad, dtype)


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("rnnt_type", ["regular", "modified", "constrained"])
def test_simple_and_smoothed_match_fast_rnnt(fast_rnnt, dtype, shape, rnnt_type):
    modified = rnnt_type != "regular"
    if modified and shape[1] < shape[2]:
        pytest.skip("the modified and constrained transducers need T >= U")
    lm, am, symbols, boundary, _ = make_inputs(shape, dtype, seed=11, modified=modified)
    for bd in (None, boundary):
        kw = dict(symbols=symbols, termination_symbol=0, boundary=bd, rnnt_type=rnnt_type)
        compare_loss_and_grads(
            lambda lm, am, **k: rnnt_loss_simple(lm, am, **k),
            lambda lm, am, **k: fast_rnnt.rnnt_loss_simple(lm, am, **k), (lm, am), dtype, kw)
        for scales in ((0.25, 0.0), (0.1, 0.1), (0.0, 0.0)):
            kw_s = dict(kw, lm_only_scale=scales[0], am_only_scale=scales[1])
            compare_loss_and_grads(
                lambda lm, am, **k: rnnt_loss_smoothed(lm, am, **k),
                lambda lm, am, **k: fast_rnnt.rnnt_loss_smoothed(lm, am, **k), (lm, am), dtype, kw_s)
        px1, py1 = get_rnnt_logprobs(lm, am, symbols, 0, boundary=bd, rnnt_type=rnnt_type)
        px2, py2 = fast_rnnt.get_rnnt_logprobs(lm, am, symbols, 0, boundary=bd, rnnt_type=rnnt_type)
        assert_close(px1, px2, dtype)
        assert_close(py1, py2, dtype)
        px1, py1 = get_rnnt_logprobs_smoothed(lm, am, symbols, 0, 0.2, 0.1, boundary=bd, rnnt_type=rnnt_type)
        px2, py2 = fast_rnnt.get_rnnt_logprobs_smoothed(lm, am, symbols, 0, 0.2, 0.1, boundary=bd,
                                                        rnnt_type=rnnt_type)
        assert_close(px1, px2, dtype)
        assert_close(py1, py2, dtype)


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_delay_penalty_matches_fast_rnnt(fast_rnnt, dtype):
    lm, am, symbols, boundary, _ = make_inputs((3, 7, 4, 6), dtype, seed=12)
    kw = dict(symbols=symbols, termination_symbol=0, boundary=boundary, delay_penalty=0.3)
    compare_loss_and_grads(
        lambda lm, am, **k: rnnt_loss_simple(lm, am, **k),
        lambda lm, am, **k: fast_rnnt.rnnt_loss_simple(lm, am, **k), (lm, am), dtype, kw)


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_full_loss_matches_fast_rnnt(fast_rnnt, dtype, shape):
    gen = torch.Generator().manual_seed(13)
    B, T, U, V = shape
    logits = torch.randn(B, T, U + 1, V, generator=gen, dtype=torch.float64).to(dtype)
    symbols = torch.randint(1, V, (B, U), generator=gen)
    boundary = random_boundary(gen, B, U, T)
    for bd in (None, boundary):
        px1, py1 = get_rnnt_logprobs_joint(logits, symbols, 0, boundary=bd)
        px2, py2 = fast_rnnt.get_rnnt_logprobs_joint(logits, symbols, 0, boundary=bd)
        assert_close(px1, px2, dtype)
        assert_close(py1, py2, dtype)
        kw = dict(symbols=symbols, termination_symbol=0, boundary=bd)
        compare_loss_and_grads(
            lambda x, **k: rnnt_loss(x, **k), lambda x, **k: fast_rnnt.rnnt_loss(x, **k), (logits,), dtype, kw)


@pytest.mark.parametrize("blank", [0, 3])
def test_full_loss_matches_torchaudio(blank):
    torchaudio = pytest.importorskip("torchaudio")
    gen = torch.Generator().manual_seed(14)
    B, T, U, V = 4, 9, 5, 7
    logits = torch.randn(B, T, U + 1, V, generator=gen, dtype=torch.float32)
    symbols = torch.randint(0, V, (B, U), generator=gen)
    symbols = torch.where(symbols == blank, (blank + 1) % V, symbols)
    boundary = random_boundary(gen, B, U, T)
    x1 = logits.clone().requires_grad_()
    x2 = logits.clone().requires_grad_()
    ours = rnnt_loss(x1, symbols, blank, boundary=boundary, reduction="none")
    ref = torchaudio.functional.rnnt_loss(x2, symbols.int(), boundary[:, 3].int(), boundary[:, 2].int(),
                                          blank=blank, reduction="none", clamp=-1)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    ours.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
@pytest.mark.parametrize("tu", [(3, 2), (1, 2), (4, 0), (2, 1), (4, 4)])
def test_full_and_simple_losses_match_brute_force(rnnt_type, tu):
    T, U = tu
    modified = rnnt_type == "modified"
    gen = torch.Generator().manual_seed(15)
    V = 4
    lm = torch.randn(2, U + 1, V, generator=gen, dtype=torch.float64)
    am = torch.randn(2, T, V, generator=gen, dtype=torch.float64)
    symbols = torch.randint(1, V, (2, U), generator=gen)
    logits = am.unsqueeze(2) + lm.unsqueeze(1)  # (B, T, U + 1, V): the simple joiner
    want = torch.tensor([brute_force_loss(logits[b], symbols[b].tolist(), 0, modified) for b in range(2)],
                        dtype=torch.float64)
    if modified and T < U:
        with pytest.raises(ValueError, match="T >= U"):
            rnnt_loss(logits, symbols, 0, rnnt_type=rnnt_type)
        return
    full = rnnt_loss(logits, symbols, 0, rnnt_type=rnnt_type, reduction="none")
    simple = rnnt_loss_simple(lm, am, symbols, 0, rnnt_type=rnnt_type, reduction="none")
    torch.testing.assert_close(full, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(simple, want, rtol=1e-10, atol=1e-10)


def test_gradcheck_simple_loss_float64():
    lm, am, symbols, boundary, _ = make_inputs((2, 4, 3, 5), torch.float64, seed=16)
    lm.requires_grad_()
    am.requires_grad_()
    f = lambda a, b: rnnt_loss_smoothed(a, b, symbols, 0, 0.25, 0.1, boundary=boundary, reduction="none")  # noqa: E731
    assert torch.autograd.gradcheck(f, (lm, am))


def test_empty_transcript_matches_brute_force_with_boundary():
    gen = torch.Generator().manual_seed(17)
    B, T, U, V = 3, 5, 3, 4
    logits = torch.randn(B, T, U + 1, V, generator=gen, dtype=torch.float64)
    symbols = torch.randint(1, V, (B, U), generator=gen)
    boundary = torch.tensor([[0, 0, 0, 5], [0, 0, 2, 3], [0, 0, 0, 1]])
    got = rnnt_loss(logits, symbols, 0, boundary=boundary, reduction="none")
    for b, (_, _, Ub, Tb) in enumerate(boundary.tolist()):
        want = brute_force_loss(logits[b, :Tb, : Ub + 1], symbols[b, :Ub].tolist(), 0)
        assert math.isclose(got[b].item(), want, rel_tol=1e-10)


def test_impossible_alignment_gives_inf_loss_and_finite_grads():
    B, T, U, V = 2, 3, 2, 4
    logits = torch.zeros(B, T, U + 1, V, dtype=torch.float64)
    logits[0, :, :, 2] = -math.inf  # item 0's labels are both 2: unreachable
    logits.requires_grad_()
    symbols = torch.tensor([[2, 2], [1, 3]])
    loss = rnnt_loss(logits, symbols, 0, reduction="none")
    assert loss[0] == math.inf and torch.isfinite(loss[1])
    loss[1].backward()
    assert torch.isfinite(logits.grad).all()


def test_half_inputs_give_float32_loss():
    lm, am, symbols, boundary, _ = make_inputs((2, 5, 3, 6), torch.float32, seed=18)
    got = rnnt_loss_simple(lm.half(), am.half(), symbols, 0, boundary=boundary)
    want = rnnt_loss_simple(lm.half().float(), am.half().float(), symbols, 0, boundary=boundary)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)


def test_bad_input_raises_clear_errors():
    lm, am, symbols, boundary, _ = make_inputs((2, 5, 3, 6), torch.float32, seed=19)
    with pytest.raises(ValueError, match="reduction"):
        rnnt_loss_simple(lm, am, symbols, 0, reduction="avg")
    with pytest.raises(ValueError, match="rnnt_type"):
        rnnt_loss_simple(lm, am, symbols, 0, rnnt_type="other")
    with pytest.raises(ValueError, match="symbols"):
        rnnt_loss_simple(lm, am, symbols[:, :2], 0)
    with pytest.raises(ValueError, match="termination_symbol"):
        rnnt_loss_simple(lm, am, symbols, 6)
    with pytest.raises(ValueError, match="disagree"):
        rnnt_loss_simple(lm, am[:, :, :4], symbols, 0)


def test_padding_past_each_length_may_hold_anything():
    lm, am, symbols, boundary, _ = make_inputs((3, 6, 4, 5), torch.float64, seed=20)
    boundary[1, 2] = 2
    padded = symbols.clone()
    padded[1, 2:] = -1  # e.g. a data loader's pad value
    torch.testing.assert_close(rnnt_loss_simple(lm, am, padded, 0, boundary=boundary, reduction="none"),
                               rnnt_loss_simple(lm, am, symbols, 0, boundary=boundary, reduction="none"))
    padded[1, 1] = -1  # inside the sequence: an error
    with pytest.raises(ValueError, match="symbols"):
        rnnt_loss_simple(lm, am, padded, 0, boundary=boundary)
