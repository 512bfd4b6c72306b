"""mutual_information_recursion against fast_rnnt, a naive double loop, and gradcheck."""

from __future__ import annotations

import math

import pytest
import torch

from asr.loss import mutual_information_recursion
from tests.loss.conftest import assert_close


def naive_recursion(px, py, boundary, modified):
    """p[end] by the textbook double loop in float64, one batch item at a time."""
    B = px.shape[0]
    out = []
    for b in range(B):
        ub, tb, ue, te = boundary[b].tolist()
        p = {}
        for u in range(ub, ue + 1):
            for t in range(tb, te + 1):
                if (u, t) == (ub, tb):
                    p[u, t] = 0.0
                    continue
                terms = []
                if u > ub and (not modified or t > tb):
                    tx = t - 1 if modified else t
                    terms.append(p[u - 1, tx] + px[b, u - 1, tx].item())
                if t > tb:
                    terms.append(p[u, t - 1] + py[b, u, t - 1].item())
                m = max(terms, default=-math.inf)
                p[u, t] = m if m == -math.inf else m + math.log(sum(math.exp(x - m) for x in terms))
        out.append(p[ue, te])
    return torch.tensor(out, dtype=torch.float64)


def random_inputs(gen, B, U, T, modified, dtype, begin=True):
    px = torch.randn(B, U, T if modified else T + 1, generator=gen, dtype=torch.float64).to(dtype)
    py = torch.randn(B, U + 1, T, generator=gen, dtype=torch.float64).to(dtype)
    rows = []
    for _ in range(B):
        ub = int(torch.randint(0, U + 1, (1,), generator=gen)) if begin else 0
        tb = int(torch.randint(0, T + 1, (1,), generator=gen)) if begin else 0
        ue = int(torch.randint(ub, U + 1, (1,), generator=gen))
        te = int(torch.randint(tb, T + 1, (1,), generator=gen))
        if modified:
            te = max(te, min(T, tb + ue - ub))
            ue = min(ue, ub + te - tb)
        rows.append([ub, tb, ue, te])
    return px, py, torch.tensor(rows, dtype=torch.int64)


@pytest.mark.parametrize("modified", [False, True])
@pytest.mark.parametrize("shape", [(3, 4, 6), (2, 1, 1), (4, 7, 3), (2, 0, 5)])
def test_matches_naive_double_loop(modified, shape):
    gen = torch.Generator().manual_seed(1)
    B, U, T = shape
    px, py, boundary = random_inputs(gen, B, U, T, modified, torch.float64)
    got = mutual_information_recursion(px, py, boundary)
    want = naive_recursion(px, py, boundary, modified)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.oracle
@pytest.mark.parametrize("modified", [False, True])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(4, 5, 9), (3, 9, 4), (2, 3, 1), (5, 12, 30)])
def test_matches_fast_rnnt(fast_rnnt, modified, dtype, shape):
    gen = torch.Generator().manual_seed(2)
    B, U, T = shape
    px, py, boundary = random_inputs(gen, B, U, T, modified, dtype)
    for bd in (None, boundary):
        s1, (gx1, gy1) = mutual_information_recursion(px, py, bd, return_grad=True)
        s2, (gx2, gy2) = fast_rnnt.mutual_information_recursion(px, py, bd, return_grad=True)
        assert_close(s1, s2, dtype)
        ok = torch.isfinite(s2)  # fast_rnnt's occupations of impossible items are not meaningful (ours are 0)
        assert (gx1[~ok] == 0).all() and (gy1[~ok] == 0).all()
        gx2, gy2 = gx2 * ok.view(B, 1, 1), gy2 * ok.view(B, 1, 1)
        assert_close(gx1, gx2, dtype)
        assert_close(gy1, gy2, dtype)
        # autograd with a non-trivial output gradient
        pxr, pyr = px.clone().requires_grad_(), py.clone().requires_grad_()
        w = torch.randn(B, generator=gen, dtype=torch.float64).to(dtype)
        (mutual_information_recursion(pxr, pyr, bd) * w).sum().backward()
        assert_close(pxr.grad, gx2 * w.view(B, 1, 1), dtype)
        assert_close(pyr.grad, gy2 * w.view(B, 1, 1), dtype)


@pytest.mark.parametrize("modified", [False, True])
def test_gradcheck(modified):
    gen = torch.Generator().manual_seed(3)
    px, py, boundary = random_inputs(gen, 3, 3, 4, modified, torch.float64)
    px.requires_grad_()
    py.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: mutual_information_recursion(a, b, boundary), (px, py))
    assert torch.autograd.gradcheck(lambda a, b: mutual_information_recursion(a, b), (px, py))


def test_impossible_alignment_is_minus_inf_with_finite_grads():
    gen = torch.Generator().manual_seed(4)
    B, U, T = 3, 3, 4
    px = torch.randn(B, U, T + 1, generator=gen, dtype=torch.float64)
    py = torch.randn(B, U + 1, T, generator=gen, dtype=torch.float64)
    px[0] = -math.inf  # item 0 can never emit a label: no path reaches (U, T)
    py[1, 0, :] = -math.inf  # item 1: must emit a label before its first blank: still possible
    px, py = px.requires_grad_(), py.requires_grad_()
    scores = mutual_information_recursion(px, py)
    assert scores[0] == -math.inf
    assert torch.isfinite(scores[1:]).all()
    scores[1:].sum().backward()
    assert torch.isfinite(px.grad).all() and torch.isfinite(py.grad).all()
    assert (px.grad[0] == 0).all() and (py.grad[0] == 0).all()
    # the finite items are untouched by item 0 and match the naive loop
    expected = naive_recursion(px.detach(), py.detach(), torch.tensor([[0, 0, U, T]] * B), False)
    torch.testing.assert_close(scores[1:], expected[1:])


def test_half_inputs_are_computed_in_float32():
    gen = torch.Generator().manual_seed(5)
    px, py, boundary = random_inputs(gen, 2, 3, 5, False, torch.float64)
    s_half = mutual_information_recursion(px.half(), py.half(), boundary)
    s_ref = mutual_information_recursion(px.half().float(), py.half().float(), boundary)
    assert s_half.dtype == torch.float32
    torch.testing.assert_close(s_half, s_ref)
    pxh = px.half().requires_grad_()
    mutual_information_recursion(pxh, py.half(), boundary).sum().backward()
    assert pxh.grad.dtype == torch.float16 and torch.isfinite(pxh.grad).all()


def test_bad_input_raises_clear_errors():
    px, py = torch.zeros(2, 3, 5), torch.zeros(2, 4, 4)
    with pytest.raises(ValueError, match="disagree"):
        mutual_information_recursion(px, torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="boundary"):
        mutual_information_recursion(px, py, torch.tensor([[0, 0, 4, 4], [0, 0, 1, 1]]))
    with pytest.raises(ValueError, match="dtype"):
        mutual_information_recursion(px, py.double())


@pytest.mark.parametrize("capability,expected", [("AVX512", torch.float64), ("AVX2", torch.float32),
                                                 ("DEFAULT", torch.float32)])
def test_cpu_sweep_dtype_follows_the_capability(monkeypatch, capability, expected):
    """float64 sweeps where float64 logaddexp is the fast one (AVX512 kernels), float32 elsewhere; float64 inputs
    always stay float64, and CUDA follows the input."""
    from asr.loss import mutual_information as mi

    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    mi._cpu_sweeps_in_float64.cache_clear()
    try:
        cpu = torch.device("cpu")
        assert mi.sweep_dtype(torch.float32, cpu) == expected
        assert mi.sweep_dtype(torch.float16, cpu) == expected
        assert mi.sweep_dtype(torch.float64, cpu) == torch.float64
        assert mi.sweep_dtype(torch.float32, torch.device("cuda")) == torch.float32
    finally:
        mi._cpu_sweeps_in_float64.cache_clear()
