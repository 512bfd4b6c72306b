"""Prune ranges, pruning and the pruned loss against fast_rnnt, the full loss and brute force."""

from __future__ import annotations

import pytest
import torch

from asr.loss import (
    do_rnnt_pruning,
    get_rnnt_logprobs_pruned,
    get_rnnt_prune_ranges,
    rnnt_loss,
    rnnt_loss_pruned,
    rnnt_loss_smoothed,
)
from tests.loss.conftest import assert_close, brute_force_loss, random_boundary

# small s_range values are raised to the least workable one, with a warning, as in k2
pytestmark = pytest.mark.filterwarnings("ignore:get_rnnt_prune_ranges")

SHAPES = [(3, 9, 5, 6), (2, 1, 2, 4), (3, 4, 8, 5), (4, 30, 12, 7)]  # (B, T, U, V): T = 1 and T < U included


def occupations(shape, seed, rnnt_type="regular", dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    B, T, U, V = shape
    lm = torch.randn(B, U + 1, V, generator=gen, dtype=torch.float64).to(dtype)
    am = torch.randn(B, T, V, generator=gen, dtype=torch.float64).to(dtype)
    symbols = torch.randint(1, V, (B, U), generator=gen)
    boundary = random_boundary(gen, B, U, T, modified=rnnt_type != "regular")
    _, (px_grad, py_grad) = rnnt_loss_smoothed(lm, am, symbols, 0, 0.25, 0.0, boundary=boundary,
                                               rnnt_type=rnnt_type, return_grad=True)
    return lm, am, symbols, boundary, px_grad, py_grad, gen


def check_ranges_are_valid(ranges, boundary, s_range):
    B, T, S = ranges.shape
    assert S == s_range
    assert torch.equal(ranges - ranges[:, :, :1], torch.arange(S).expand(B, T, S))  # consecutive
    starts = ranges[:, :, 0]
    assert (starts[:, 1:] >= starts[:, :-1]).all()  # monotone
    assert (starts[:, 1:] - starts[:, :-1] < S).all()  # no label skipped
    assert (starts >= 0).all() and (ranges <= boundary[:, 2].max()).all()


@pytest.mark.oracle
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("s_range", [2, 3, 5, 40])
@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
def test_prune_ranges_match_fast_rnnt(fast_rnnt, shape, s_range, rnnt_type):
    if rnnt_type == "modified" and shape[1] < shape[2]:
        pytest.skip("the modified transducer needs T >= U")
    *_, boundary, px_grad, py_grad, _ = occupations(shape, 21, rnnt_type)
    ours = get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range)
    theirs = fast_rnnt.get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range)
    assert torch.equal(ours, theirs)
    if rnnt_type == "regular":
        check_ranges_are_valid(ours, boundary, theirs.shape[2])


@pytest.mark.oracle
def test_do_rnnt_pruning_matches_fast_rnnt(fast_rnnt):
    lm, am, symbols, boundary, px_grad, py_grad, gen = occupations((3, 9, 6, 5), 22)
    ranges = get_rnnt_prune_ranges(px_grad, py_grad, boundary, 3)
    enc = torch.randn(3, 9, 8, generator=gen, requires_grad=True)
    dec = torch.randn(3, 7, 8, generator=gen, requires_grad=True)
    a1, l1 = do_rnnt_pruning(enc, dec, ranges)
    a2, l2 = fast_rnnt.do_rnnt_pruning(enc, dec, ranges)
    assert torch.equal(a1, a2) and torch.equal(l1, l2)
    w = torch.randn(l1.shape, generator=gen)
    g1 = torch.autograd.grad(((a1 + l1) * w).sum(), [enc, dec])
    g2 = torch.autograd.grad(((a2 + l2) * w).sum(), [enc, dec])
    for x, y in zip(g1, g2):
        torch.testing.assert_close(x, y)


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("s_range", [2, 4, 40])
@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
def test_pruned_loss_matches_fast_rnnt(fast_rnnt, dtype, shape, s_range, rnnt_type):
    if rnnt_type == "modified" and shape[1] < shape[2]:
        pytest.skip("the modified transducer needs T >= U")
    *_, symbols, boundary, px_grad, py_grad, gen = occupations(shape, 23, rnnt_type)
    ranges = get_rnnt_prune_ranges(px_grad, py_grad, boundary, s_range)
    B, T, S = ranges.shape
    logits = torch.randn(B, T, S, shape[3], generator=gen, dtype=torch.float64).to(dtype)
    for bd in (None, boundary):
        if bd is None and rnnt_type == "modified":
            continue  # the full-length paths may fall outside ranges built for the boundary
        px1, py1 = get_rnnt_logprobs_pruned(logits, symbols, ranges, 0, bd, rnnt_type)
        px2, py2 = fast_rnnt.get_rnnt_logprobs_pruned(logits, symbols, ranges, 0, bd, rnnt_type)
        assert_close(px1, px2, dtype)
        assert_close(py1, py2, dtype)
        for reduction in ("none", "mean", "sum"):
            x1 = logits.clone().requires_grad_()
            x2 = logits.clone().requires_grad_()
            l1 = rnnt_loss_pruned(x1, symbols, ranges, 0, bd, rnnt_type=rnnt_type, reduction=reduction)
            l2 = fast_rnnt.rnnt_loss_pruned(x2, symbols, ranges, 0, bd, rnnt_type=rnnt_type, reduction=reduction)
            assert_close(l1, l2, dtype)
            ok = torch.isfinite(l2).all()
            if ok:
                w = torch.rand(l1.shape, generator=gen, dtype=torch.float64).to(dtype)
                (l1 * w).sum().backward()
                (l2 * w).sum().backward()
                assert_close(x1.grad, x2.grad, dtype)


@pytest.mark.oracle
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_pruned_loss_delay_penalty_and_return_grad_match_fast_rnnt(fast_rnnt, dtype):
    *_, symbols, boundary, px_grad, py_grad, gen = occupations((3, 9, 5, 6), 24)
    ranges = get_rnnt_prune_ranges(px_grad, py_grad, boundary, 3)
    logits = torch.randn(3, 9, 3, 6, generator=gen, dtype=torch.float64).to(dtype)
    l1, (gx1, gy1) = rnnt_loss_pruned(logits, symbols, ranges, 0, boundary, delay_penalty=0.2, return_grad=True)
    l2, (gx2, gy2) = fast_rnnt.rnnt_loss_pruned(logits, symbols, ranges, 0, boundary, delay_penalty=0.2,
                                                 return_grad=True)
    assert_close(l1, l2, dtype)
    assert_close(gx1, gx2, dtype)
    assert_close(gy1, gy2, dtype)


@pytest.mark.parametrize("rnnt_type", ["regular", "modified"])
def test_pruned_loss_with_whole_band_equals_full_loss(rnnt_type):
    """With S = U + 1 nothing is pruned: the pruned loss is the full loss, values and gradients."""
    gen = torch.Generator().manual_seed(25)
    B, T, U, V = 3, 8, 5, 6
    full = torch.randn(B, T, U + 1, V, generator=gen, dtype=torch.float64, requires_grad=True)
    symbols = torch.randint(1, V, (B, U), generator=gen)
    boundary = random_boundary(gen, B, U, T, modified=rnnt_type == "modified")
    ranges = torch.arange(U + 1).expand(B, T, U + 1)
    l_full = rnnt_loss(full, symbols, 0, boundary, rnnt_type=rnnt_type, reduction="none")
    l_pruned = rnnt_loss_pruned(full, symbols, ranges, 0, boundary, rnnt_type=rnnt_type, reduction="none")
    torch.testing.assert_close(l_pruned, l_full, rtol=1e-10, atol=1e-10)
    g1 = torch.autograd.grad(l_full.sum(), full)[0]
    g2 = torch.autograd.grad(l_pruned.sum(), full)[0]
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-10)


def test_pruned_loss_matches_brute_force_over_the_band():
    """Arcs outside the band get probability 0: enumerate alignments with those logits at -inf."""
    gen = torch.Generator().manual_seed(26)
    B, T, U, V, S = 2, 4, 3, 5, 2
    symbols = torch.randint(1, V, (B, U), generator=gen)
    ranges = torch.tensor([[0, 1, 1, 2], [0, 0, 1, 2]]).unsqueeze(2) + torch.arange(S)  # (B, T, S)
    logits = torch.randn(B, T, S, V, generator=gen, dtype=torch.float64)
    got = rnnt_loss_pruned(logits, symbols, ranges, 0, reduction="none")
    for b in range(B):
        logp = torch.full((T, U + 1, V), float("-inf"), dtype=torch.float64)  # no mass outside the band
        for t in range(T):
            logp[t, ranges[b, t]] = logits[b, t].log_softmax(-1)
        want = brute_force_loss(logp, symbols[b].tolist(), 0, normalised=True)
        assert abs(got[b].item() - want) < 1e-10 * max(1.0, abs(want))


def test_empty_transcript_pruned_matches_brute_force():
    gen = torch.Generator().manual_seed(27)
    B, T, V = 2, 5, 4
    symbols = torch.zeros(B, 0, dtype=torch.long)
    ranges = torch.zeros(B, T, 1, dtype=torch.long)
    logits = torch.randn(B, T, 1, V, generator=gen, dtype=torch.float64)
    got = rnnt_loss_pruned(logits, symbols, ranges, 0, reduction="none")
    want = torch.tensor([brute_force_loss(logits[b], [], 0) for b in range(B)], dtype=torch.float64)
    torch.testing.assert_close(got, want)
    lm, am = torch.randn(B, 1, V, dtype=torch.float64), torch.randn(B, T, V, dtype=torch.float64)
    _, (gx, gy) = rnnt_loss_smoothed(lm, am, symbols, 0, 0.25, 0.0, return_grad=True)
    assert get_rnnt_prune_ranges(gx, gy, None, 5).shape == (B, T, 1)


def test_bad_ranges_raise_clear_errors():
    symbols = torch.ones(1, 3, dtype=torch.long)
    logits = torch.randn(1, 4, 2, 5)
    with pytest.raises(ValueError, match="consecutive"):
        rnnt_loss_pruned(logits, symbols, torch.tensor([[[0, 2], [0, 1], [1, 2], [2, 3]]]), 0)
    with pytest.raises(ValueError, match="consecutive"):
        rnnt_loss_pruned(logits, symbols, torch.tensor([[[0, 1], [0, 1], [1, 2], [3, 4]]]), 0)
    with pytest.raises(ValueError, match="ranges"):
        rnnt_loss_pruned(logits, symbols, torch.zeros(1, 4, 3, dtype=torch.long), 0)


def test_gradcheck_pruned_loss_float64():
    gen = torch.Generator().manual_seed(28)
    B, T, U, V, S = 2, 4, 3, 5, 2
    symbols = torch.randint(1, V, (B, U), generator=gen)
    ranges = torch.tensor([[0, 1, 1, 2], [0, 0, 1, 2]]).unsqueeze(2) + torch.arange(S)  # (B, T, S)
    logits = torch.randn(B, T, S, V, generator=gen, dtype=torch.float64, requires_grad=True)
    boundary = torch.tensor([[0, 0, U, T], [0, 0, 2, 3]])
    f = lambda x: rnnt_loss_pruned(x, symbols, ranges, 0, boundary, reduction="none")  # noqa: E731
    assert torch.autograd.gradcheck(f, (logits,))


def test_do_rnnt_pruning_picks_window_rows_and_sums_their_grads():
    gen = torch.Generator().manual_seed(29)
    B, T, U, D = 2, 5, 4, 3
    ranges = torch.tensor([[0, 0, 1, 2, 3], [0, 1, 1, 1, 3]]).unsqueeze(2) + torch.arange(2)  # (B, T, 2)
    am = torch.randn(B, T, D, generator=gen, dtype=torch.float64, requires_grad=True)
    lm = torch.randn(B, U + 1, D, generator=gen, dtype=torch.float64, requires_grad=True)
    am_pruned, lm_pruned = do_rnnt_pruning(am, lm, ranges)
    for b in range(B):
        for t in range(T):
            for s in range(2):
                assert torch.equal(lm_pruned[b, t, s], lm[b, ranges[b, t, s]])
                assert torch.equal(am_pruned[b, t, s], am[b, t])
    assert torch.autograd.gradcheck(
        lambda a, l: sum(x.sum() * 0 + (x**2).sum() for x in do_rnnt_pruning(a, l, ranges)), (am, lm)
    )


def test_pruned_loss_half_inputs_are_computed_in_float32():
    gen = torch.Generator().manual_seed(30)
    symbols = torch.randint(1, 5, (2, 3), generator=gen)
    ranges = torch.tensor([[0, 1, 1, 2], [0, 0, 1, 2]]).unsqueeze(2) + torch.arange(2)
    logits = torch.randn(2, 4, 2, 5, generator=gen).half().requires_grad_()
    loss = rnnt_loss_pruned(logits, symbols, ranges, 0)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, rnnt_loss_pruned(logits.detach().float(), symbols, ranges, 0))
    loss.backward()
    assert logits.grad.dtype == torch.float16 and torch.isfinite(logits.grad).all()


def test_whole_pruned_step_runs_under_no_grad():
    """Validation runs the losses without autograd: same values, occupations still returned."""
    lm, am, symbols, boundary, px_grad, py_grad, gen = occupations((2, 6, 4, 5), 31)
    with torch.no_grad():
        loss, (gx, gy) = rnnt_loss_smoothed(lm, am, symbols, 0, 0.25, 0.0, boundary=boundary, return_grad=True)
        ranges = get_rnnt_prune_ranges(gx, gy, boundary, 3)
        logits = torch.randn(2, 6, ranges.shape[2], 5, generator=gen, dtype=torch.float64)
        pruned = rnnt_loss_pruned(logits, symbols, ranges, 0, boundary)
    torch.testing.assert_close(gx, px_grad)
    torch.testing.assert_close(gy, py_grad)
    assert torch.isfinite(loss) and torch.isfinite(pruned) and not pruned.requires_grad
