"""The mutual-information recursion (k2's `mutual_information_recursion`) in pure PyTorch.

For each batch item the recursion fills a lattice p of shape (U + 1, T + 1)::

    p[0, 0] = 0
    regular:  p[u, t] = logaddexp(p[u - 1, t] + px[u - 1, t], p[u, t - 1] + py[u, t - 1])
    modified: p[u, t] = logaddexp(p[u - 1, t - 1] + px[u - 1, t - 1], p[u, t - 1] + py[u, t - 1])

(terms with a negative index are -inf) and returns p[U, T], or p[u_end, t_end] started from p[u_begin, t_begin] = 0
when a boundary row [u_begin, t_begin, u_end, t_end] is given.

How it is computed: cells on one anti-diagonal d = u + t depend only on the one or two diagonals before, so the
lattice is swept one diagonal at a time over physically skewed buffers of shape (D, U + 1, B), D = U + T + 1, with
the batch innermost: both predecessors of a diagonal are then contiguous slices of earlier rows, and a diagonal
costs three vectorised ops (two adds and a logaddexp) whatever B and U are. The skew is one strided copy.
-inf is replaced by a large finite negative number inside the sweeps (no NaN from -inf - -inf) and mapped back to
-inf for unreachable end cells.

The autograd graph never holds the T steps: a custom autograd Function computes the occupation probabilities (the
gradients of p[end] with respect to px and py) itself. Each arc's share of its target cell's alpha lies in [0, 1],
so occupations are swept from the end cells down in the linear domain (two ops per diagonal), then multiplied by
the shares in one vectorised step and un-skewed with one strided copy. Items of different lengths (and starts)
get their start (alpha = 0) and end (occupation = 1) cells set when a sweep reaches their diagonal; cells outside
an item's box get no mass by themselves.
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor

# Stand-in for -inf inside the sweeps: sums of a few thousand of these stay finite in float32, and exp() of anything
# near it is exactly 0.
NEG = -1.0e30
# Sums below this are treated as -inf (unreachable).
NEG_THRESHOLD = NEG / 2


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision inputs are computed in float32; float32 and float64 as they are."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# CPU capabilities (torch.backends.cpu.get_cpu_capability()) whose float64 logaddexp kernel is faster than the
# float32 one. Measured with torch 2.14 on an AVX512 CPU, one thread, logaddexp of 488 / 4096 / 65536 elements
# (one diagonal of the pruned / simple loss and more): AVX512 kernels float32 6.1 / 41 / 664 us, float64
# 3.3 / 18 / 295 us; the same CPU forced to the AVX2 kernels (ATEN_CPU_CAPABILITY=avx2) float32 2.6 / 13 / 188 us,
# float64 4.5 / 29 / 452 us; no SIMD (DEFAULT) about equal. (bench/RESULTS_loss.md)
_FLOAT64_FASTER = ("AVX512",)


@functools.lru_cache(maxsize=None)
def _cpu_sweeps_in_float64() -> bool:
    return torch.backends.cpu.get_cpu_capability() in _FLOAT64_FASTER


def sweep_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """dtype of the sweep buffers: float64 inputs stay float64; otherwise float32, except on CPUs whose float64
    logaddexp is the faster one (AVX512 kernels: about 2x), where the sweeps run in float64 (the buffers are small
    and the sums only get more accurate). AVX2 CPUs sweep in float32 (its kernel there is about 2x float64's)."""
    if device.type == "cpu" and _cpu_sweeps_in_float64():
        return torch.float64
    return compute_dtype(dtype)


def _full_boundary(B: int, U: int, T: int, device: torch.device) -> Tensor:
    return torch.tensor([0, 0, U, T], dtype=torch.int64, device=device).expand(B, 4)


def _skew(x: Tensor, D: int, shift: int, first_row: int, dtype: torch.dtype) -> Tensor:
    """Skews rows: out[d, u, b] = x[b, u - first_row, d - u - shift], NEG where that entry does not exist or is
    below NEG (-inf).

    Args:
        x: (B, R, C), placed at rows first_row .. first_row + R - 1 of the output; D - shift >= C.
        dtype: of the output (the copy converts).
    Returns:
        (D, R + first_row, B) contiguous.
    """
    B, R, C = x.shape
    U1 = R + first_row
    out = torch.full((D, U1, B), NEG, dtype=dtype, device=x.device)
    # out[u + c + shift, u + first_row] for u < R, c < C, as one strided view
    view = out.as_strided((R, C, B), ((U1 + 1) * B, U1 * B, 1), (shift * U1 + first_row * (U1 + 1)) * B)
    view.copy_(x.permute(1, 2, 0))
    return out.clamp_(min=NEG)


def _unskew(g: Tensor, rows: int, cols: int, d0: int, u0: int, dtype: torch.dtype) -> Tensor:
    """Reads a skewed (D, W, B) buffer back: out[b, r, c] = g[r + c + d0, r + u0, b] -> (B, rows, cols) of dtype."""
    _, W, B = g.shape
    out = torch.empty((B, rows, cols), dtype=dtype, device=g.device)
    out.permute(1, 2, 0).copy_(g.as_strided((rows, cols, B), ((W + 1) * B, W * B, 1), (d0 * W + u0) * B))
    return out


def _injections(boundary: Tensor, which: str) -> dict[int, tuple[Tensor, Tensor]]:
    """Cells set when a sweep reaches their diagonal: {d: (u indexes, batch indexes)}."""
    u = boundary[:, 0] if which == "begin" else boundary[:, 2]
    d = u + (boundary[:, 1] if which == "begin" else boundary[:, 3])
    b = torch.arange(boundary.shape[0], device=boundary.device)
    return {dv: (u[d == dv], b[d == dv]) for dv in torch.unique(d).tolist()}


def _sweep_forward(PX: Tensor, PY: Tensor, modified: bool, begin: dict) -> Tensor:
    """alpha on the skewed lattice, in log space.

    Args:
        PX, PY: (D, U + 1, B) log-weights of the label / blank arc into cell (u, d - u).
        begin: start cells, set to 0 when the sweep reaches their diagonal.
    Returns:
        (D + 1, U + 2, B): row d + 1, column u + 1 holds alpha[u, d - u]; row 0 and column 0 are NEG padding.
    """
    D, U1, B = PX.shape
    A = PX.new_empty((D + 1, U1 + 1, B))
    A[:2] = NEG  # padding row and diagonal 0 (set below where an item starts there)
    A[:, 0] = NEG  # padding column
    flat = A.view(D + 1, (U1 + 1) * B)
    lower = flat[:, : U1 * B].unbind(0)  # row r: cells u - 1 of diagonal r - 1, aligned with u
    same = flat[:, B:].unbind(0)  # row r: cells u of diagonal r - 1
    px_rows = PX.view(D, U1 * B).unbind(0)
    py_rows = PY.view(D, U1 * B).unbind(0)
    t1, t2 = PX.new_empty(U1 * B), PX.new_empty(U1 * B)
    step = 2 if modified else 1
    for d in range(D):
        if d > 0:
            torch.add(lower[d + 1 - step], px_rows[d], out=t1)
            torch.add(same[d], py_rows[d], out=t2)
            torch.logaddexp(t1, t2, out=same[d + 1])
        if d in begin:
            u, b = begin[d]
            A[d + 1, u + 1, b] = 0.0
    return A


def _sweep_backward(Rx: Tensor, Ry: Tensor, modified: bool, end: dict) -> Tensor:
    """Occupation probability of every cell, swept from the end cells down, in the linear domain.

    Args:
        Rx, Ry: (D + 1, U + 2, B) share of cell (u, d - u)'s alpha that comes through its label / blank arc
            (the last row and column are 0 padding).
        end: end cells, given occupation 1 when the sweep reaches their diagonal.
    Returns:
        G: (D + 1, U + 2, B), row d, column u: occupation of cell (u, d - u); last row and column are 0 padding.
    """
    D1, U2, B = Rx.shape
    D, U1 = D1 - 1, U2 - 1
    G = Rx.new_empty((D + 1, U2, B))
    G[D - 1 :] = 0.0  # the last diagonal (set below where an item ends there) and the padding row
    G[:, U1] = 0.0  # padding column
    flat = G.view(D + 1, U2 * B)
    upper = flat[:, B:].unbind(0)  # row r: cells u + 1 of diagonal r, aligned with u
    same = flat[:, : U1 * B].unbind(0)  # row r: cells u of diagonal r
    rx_up = Rx.view(D + 1, U2 * B)[:, B:].unbind(0)
    ry_rows = Ry.view(D + 1, U2 * B)[:, : U1 * B].unbind(0)
    for d in range(D - 1, -1, -1):
        if d in end:
            u, b = end[d]
            G[d, u, b] = 1.0
        if d == 0:
            break
        if modified:  # label arcs into diagonal d + 1 come from d - 1
            torch.mul(upper[d + 1], rx_up[d + 1], out=same[d - 1])
            same[d - 1].addcmul_(same[d], ry_rows[d])
        else:
            torch.mul(upper[d], rx_up[d], out=same[d - 1])
            same[d - 1].addcmul_(same[d], ry_rows[d])
    return G


def _forward(px: Tensor, py: Tensor, boundary: Tensor, modified: bool, full: bool):
    """Returns (scores (B,), alpha buffer A, skewed PX, PY)."""
    B, U, _ = px.shape
    T = py.shape[2]
    D = U + T + 1
    work = sweep_dtype(px.dtype, px.device)
    PX = _skew(px, D, 1 if modified else 0, 1, work)  # (D, U + 1, B): column 0 is NEG (no row u = -1)
    PY = _skew(py, D, 1, 0, work)  # (D, U + 1, B)
    arange = torch.arange(B, device=px.device)
    begin = {0: (torch.zeros_like(arange), arange)} if full else _injections(boundary, "begin")
    A = _sweep_forward(PX, PY, modified, begin)
    ue = boundary[:, 2]
    scores = A[ue + boundary[:, 3] + 1, ue + 1, arange]
    return scores, A, PX, PY


def _occupation(
    A: Tensor, PX: Tensor, PY: Tensor, U: int, T: int, boundary: Tensor, modified: bool, scores: Tensor, dtype
) -> tuple[Tensor, Tensor]:
    """d scores / d px (B, U, T + 1 or T) and d scores / d py (B, U + 1, T) of dtype; 0 for items with no path.

    The occupation of an arc is that of its target cell times the arc's share of the target's alpha; those
    shares lie in [0, 1] (exponents clamped at 0 against rounding), so the sweep runs in the linear domain.
    """
    D, U1, B = PX.shape
    step = 2 if modified else 1
    target = A[2:]  # (D - 1, U + 2, B): alpha of cells on diagonals 1..D - 1, with the NEG column first
    Rx, Ry = PX.new_empty((D + 1, U1 + 1, B)), PX.new_empty((D + 1, U1 + 1, B))
    for R in (Rx, Ry):  # no arcs into diagonal 0, padding row D and column U + 1
        R[0] = 0.0
        R[D] = 0.0
        R[:, U1] = 0.0
    tmp = torch.sub(A[2 - step : D + 1 - step, :U1], target[:, 1:])
    torch.exp(tmp.add_(PX[1:]).clamp_(max=0.0), out=Rx[1:D, :U1])
    torch.sub(A[1:D, 1:], target[:, 1:], out=tmp)
    torch.exp(tmp.add_(PY[1:]).clamp_(max=0.0), out=Ry[1:D, :U1])
    # items with no path get no occupation at all: their end cells are not seeded
    ok = scores > NEG_THRESHOLD
    ends = {d: (u[ok[b]], b[ok[b]]) for d, (u, b) in _injections(boundary, "end").items()}
    G = _sweep_backward(Rx, Ry, modified, ends)
    Ox = Rx.mul_(G)  # occupation of the label arc into (u, d - u)
    Oy = Ry.mul_(G)  # of the blank arc into (u, d - u)
    px_grad = _unskew(Ox, U, T if modified else T + 1, step, 1, dtype)  # arc (u, t) -> (u + 1, t [+ 1])
    py_grad = _unskew(Oy, U + 1, T, 1, 0, dtype)  # arc (u, t) -> (u, t + 1)
    return px_grad, py_grad


class MutualInformationFunction(torch.autograd.Function):
    """scores = p[end] of the recursion; backward multiplies the occupation probabilities by the output grad."""

    @staticmethod
    def forward(ctx, px: Tensor, py: Tensor, boundary: Tensor, modified: bool, full: bool, grads_out: list | None):
        U, T = px.shape[1], py.shape[2]
        scores, A, PX, PY = _forward(px, py, boundary, modified, full)
        ctx.shape = (U, T, modified, px.dtype)
        if grads_out is not None:  # return_grad: the caller wants the occupations now
            px_grad, py_grad = _occupation(A, PX, PY, U, T, boundary, modified, scores, px.dtype)
            grads_out[:] = [px_grad, py_grad]
            ctx.save_for_backward(px_grad, py_grad)
            ctx.precomputed = True
        else:
            ctx.save_for_backward(A, PX, PY, boundary, scores)
            ctx.precomputed = False
        return scores.masked_fill(scores <= NEG_THRESHOLD, float("-inf")).to(compute_dtype(px.dtype))

    @staticmethod
    def backward(ctx, ans_grad: Tensor):
        if ctx.precomputed:
            px_grad, py_grad = ctx.saved_tensors
        else:
            A, PX, PY, boundary, scores = ctx.saved_tensors
            U, T, modified, dtype = ctx.shape
            px_grad, py_grad = _occupation(A, PX, PY, U, T, boundary, modified, scores, dtype)
        g = ans_grad.view(-1, 1, 1).to(px_grad.dtype)
        return px_grad * g, py_grad * g, None, None, None, None


def check_boundary(boundary: Tensor | None, B: int, U: int, T: int, device: torch.device) -> Tensor:
    """Validates a (B, 4) boundary (rows [u_begin, t_begin, u_end, t_end]) or builds the full one."""
    if boundary is None:
        return _full_boundary(B, U, T, device)
    if boundary.shape != (B, 4) or boundary.dtype != torch.int64:
        raise ValueError(
            f"boundary must be an int64 tensor of shape ({B}, 4), got {boundary.dtype} {tuple(boundary.shape)}"
        )
    boundary = boundary.to(device)
    ub, tb, ue, te = boundary.unbind(1)
    if not bool(((0 <= ub) & (ub <= ue) & (ue <= U) & (0 <= tb) & (tb <= te) & (te <= T)).all()):
        raise ValueError(f"boundary rows must satisfy 0 <= u_begin <= u_end <= {U} and 0 <= t_begin <= t_end <= {T}")
    return boundary


def mutual_information_recursion(
    px: Tensor, py: Tensor, boundary: Tensor | None = None, return_grad: bool = False
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """Log-sum over all monotone paths through the (U + 1, T + 1) lattice (k2's semantics).

    Args:
        px: (B, U, T + 1) log-weights of label arcs (regular), or (B, U, T) (modified: a label also ends the frame).
        py: (B, U + 1, T) log-weights of blank arcs.
        boundary: (B, 4) int64 rows [u_begin, t_begin, u_end, t_end]; None means [0, 0, U, T].
        return_grad: also return the occupation probabilities (d scores / d px, d scores / d py).
    Returns:
        scores (B,) = p[u_end, t_end] (-inf where no path exists), and with return_grad the pair
        (px_grad (B, U, T + 1 or T), py_grad (B, U + 1, T)).
    """
    if px.ndim != 3 or py.ndim != 3:
        raise ValueError(f"px and py must be 3-D, got {tuple(px.shape)} and {tuple(py.shape)}")
    B, U, T1 = px.shape
    T = py.shape[2]
    if py.shape != (B, U + 1, T) or T1 not in (T, T + 1):
        raise ValueError(f"px (B, U, T + 1 or T) and py (B, U + 1, T) disagree: {tuple(px.shape)}, {tuple(py.shape)}")
    if px.dtype != py.dtype:
        raise ValueError(f"px and py must share a dtype, got {px.dtype} and {py.dtype}")
    modified = T1 == T
    full = boundary is None
    boundary = check_boundary(boundary, B, U, T, px.device)
    full = full or not bool(boundary[:, :2].any())  # every item starts at (0, 0)
    grads_out: list | None = [] if return_grad else None
    scores = MutualInformationFunction.apply(px, py, boundary, modified, full, grads_out)
    return (scores, tuple(grads_out)) if return_grad else scores
