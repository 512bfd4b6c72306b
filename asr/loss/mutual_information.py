"""The mutual-information recursion (k2's `mutual_information_recursion`) in pure PyTorch.

For each batch item the recursion fills a lattice p of shape (U + 1, T + 1)::

    p[0, 0] = 0
    regular:  p[u, t] = logaddexp(p[u - 1, t] + px[u - 1, t], p[u, t - 1] + py[u, t - 1])
    modified: p[u, t] = logaddexp(p[u - 1, t - 1] + px[u - 1, t - 1], p[u, t - 1] + py[u, t - 1])

(terms with a negative index are -inf) and returns p[U, T], or p[u_end, t_end] started from p[u_begin, t_begin] = 0
when a boundary row [u_begin, t_begin, u_end, t_end] is given.

How it is computed: cells on one anti-diagonal d = u + t depend only on the one or two diagonals before, so the
lattice is swept one diagonal at a time over a physically skewed buffer of shape (D, U + 2, B) with the batch
innermost: both predecessors of a diagonal are then contiguous slices of the previous rows, and a diagonal costs
three vectorised ops whatever B and U are. The backward pass (beta) is the same sweep over the lattice reversed
per batch item, so items of different lengths all start at the same corner. -inf is replaced by a large finite
negative number inside the sweep (no NaN from -inf - -inf), and mapped back to -inf for unreachable end cells.
The autograd graph never holds the T steps: a custom autograd Function computes the occupation probabilities
(the gradients of p[end] with respect to px and py) in closed form from alpha and beta.
"""

from __future__ import annotations

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


def _full_boundary(B: int, U: int, T: int, device: torch.device) -> Tensor:
    return torch.tensor([0, 0, U, T], dtype=torch.int64, device=device).expand(B, 4)


def _skewed(x: Tensor, rows: Tensor, cols: Tensor, valid: Tensor) -> Tensor:
    """Gathers x[b, rows, cols] into a skewed (D, U + 1, B) buffer, NEG where not valid.

    Args:
        x: (B, R, C) float.
        rows, cols, valid: (D, U + 1, B) indexes into x's last two dims and the mask of entries to take.
    """
    B, R, C = x.shape
    if x.numel() == 0:  # U = 0: no label arcs at all
        return x.new_full(torch.broadcast_shapes(rows.shape, cols.shape, valid.shape), NEG)
    b = torch.arange(B, device=x.device)
    flat = (b * (R * C) + rows.clamp(0, R - 1) * C + cols.clamp(0, C - 1)).masked_fill_(~valid, 0)
    out = x.reshape(-1)[flat]
    return out.masked_fill_(~valid, NEG)


def _sweep(PX: Tensor, PY: Tensor, modified: bool) -> Tensor:
    """Runs the recursion over skewed log-weights, one anti-diagonal at a time.

    Args:
        PX: (D, U + 1, B) weight of the label arc into cell (u, t = d - u) on diagonal d (NEG for u = 0).
        PY: (D, U + 1, B) weight of the blank arc into cell (u, d - u).
    Returns:
        (D + 1, U + 2, B) buffer: row d + 1, column u + 1 holds p[u, d - u]; row 0 and column 0 are NEG padding.
    """
    D, U1, B = PX.shape
    A = PX.new_full((D + 1, U1 + 1, B), NEG)
    A[1, 1] = 0.0
    flat = A.view(D + 1, (U1 + 1) * B)
    lower = flat[:, : U1 * B].unbind(0)  # row d: cells (u - 1) of diagonal d - 1, shifted to u
    same = flat[:, B:].unbind(0)  # row d: cells u of diagonal d - 1
    px_rows = PX.view(D, U1 * B).unbind(0)
    py_rows = PY.view(D, U1 * B).unbind(0)
    t1 = PX.new_empty(U1 * B)
    t2 = PX.new_empty(U1 * B)
    step = 2 if modified else 1
    for d in range(1, D):
        torch.add(lower[d + 1 - step], px_rows[d], out=t1)
        torch.add(same[d], py_rows[d], out=t2)
        torch.logaddexp(t1, t2, out=same[d + 1])
    return A


def _diagonal_indexes(U: int, T: int, boundary: Tensor, modified: bool, reverse: bool):
    """Index maps of px / py entries into the skewed buffers of one sweep (forward or reversed)."""
    device = boundary.device
    D = U + T + 1
    d = torch.arange(D, device=device).view(D, 1, 1)
    u = torch.arange(U + 1, device=device).view(1, U + 1, 1)
    ub, tb, ue, te = (boundary[:, i].view(1, 1, -1) for i in range(4))
    Ub, Tb = ue - ub, te - tb
    t = d - u  # relative frame of the cell (u, t) on diagonal d
    in_u = u <= Ub
    # label arc into (u, t) comes from (u - 1, t) [regular] or (u - 1, t - 1) [modified]
    tx = t - 1 if modified else t
    x_valid = in_u & (u >= 1) & (tx >= 0) & (tx <= (Tb - 1 if modified else Tb))
    y_valid = in_u & (t >= 1) & (t <= Tb)
    if not reverse:
        x_rows, x_cols = ub + u - 1, tb + tx
        y_rows, y_cols = ub + u, tb + t - 1
    else:
        # beta[u, t] of the original lattice is alpha of the reversed one at (Ub - u, Tb - t)
        x_rows, x_cols = ue - u, te - tx - (1 if modified else 0)
        y_rows, y_cols = ue - u, te - t
    return (x_rows, x_cols, x_valid), (y_rows, y_cols, y_valid)


def _lattice(A: Tensor, U: int, T: int, boundary: Tensor, reverse: bool) -> Tensor:
    """Reads a swept buffer back as (B, U + 1, T + 1) in absolute coordinates, NEG outside the boundary box."""
    B = boundary.shape[0]
    device = A.device
    u = torch.arange(U + 1, device=device).view(1, U + 1, 1)
    t = torch.arange(T + 1, device=device).view(1, 1, T + 1)
    ub, tb, ue, te = (boundary[:, i].view(B, 1, 1) for i in range(4))
    if reverse:
        ur, tr = ue - u, te - t
    else:
        ur, tr = u - ub, t - tb
    valid = (ur >= 0) & (tr >= 0) & (ur <= ue - ub) & (tr <= te - tb)
    b = torch.arange(B, device=device).view(B, 1, 1)
    U2 = A.shape[1]
    idx = ((ur + tr + 1) * U2 + ur + 1) * B + b
    idx = idx.masked_fill_(~valid, 0)
    return A.reshape(-1)[idx].masked_fill_(~valid, NEG)


def _forward(px: Tensor, py: Tensor, boundary: Tensor, modified: bool) -> tuple[Tensor, Tensor]:
    """Returns (scores (B,), alpha buffer)."""
    B, U, _ = px.shape
    T = py.shape[2]
    (xr, xc, xv), (yr, yc, yv) = _diagonal_indexes(U, T, boundary, modified, reverse=False)
    A = _sweep(_skewed(px, xr, xc, xv), _skewed(py, yr, yc, yv), modified)
    Ub = boundary[:, 2] - boundary[:, 0]
    Tb = boundary[:, 3] - boundary[:, 1]
    b = torch.arange(B, device=px.device)
    scores = A[Ub + Tb + 1, Ub + 1, b]
    return scores, A


def _occupation(
    px: Tensor, py: Tensor, boundary: Tensor, modified: bool, A: Tensor, scores: Tensor
) -> tuple[Tensor, Tensor]:
    """d scores / d px and d scores / d py: occupation probabilities of the arcs (0 for unreachable ends)."""
    B, U, _ = px.shape
    T = py.shape[2]
    (xr, xc, xv), (yr, yc, yv) = _diagonal_indexes(U, T, boundary, modified, reverse=True)
    Ar = _sweep(_skewed(px, xr, xc, xv), _skewed(py, yr, yc, yv), modified)
    alpha = _lattice(A, U, T, boundary, reverse=False)  # (B, U + 1, T + 1)
    beta = _lattice(Ar, U, T, boundary, reverse=True)  # (B, U + 1, T + 1)
    ok = scores > NEG_THRESHOLD
    total = torch.where(ok, scores, torch.zeros_like(scores)).view(B, 1, 1)
    if modified:
        px_grad = (alpha[:, :U, :T] + px + beta[:, 1:, 1:] - total).exp_()  # (B, U, T)
    else:
        px_grad = (alpha[:, :U, :] + px + beta[:, 1:, :] - total).exp_()  # (B, U, T + 1)
    py_grad = (alpha[:, :, :T] + py + beta[:, :, 1:] - total).exp_()  # (B, U + 1, T)
    keep = ok.view(B, 1, 1)
    return px_grad.mul_(keep), py_grad.mul_(keep)


class MutualInformationFunction(torch.autograd.Function):
    """scores = p[end] of the recursion; backward multiplies the occupation probabilities by the output grad."""

    @staticmethod
    def forward(ctx, px: Tensor, py: Tensor, boundary: Tensor, modified: bool, grads_out: list):
        scores, A = _forward(px, py, boundary, modified)
        if grads_out is not None:  # return_grad: the caller wants the occupations now
            px_grad, py_grad = _occupation(px, py, boundary, modified, A, scores)
            grads_out[:] = [px_grad, py_grad]
            ctx.save_for_backward(px_grad, py_grad)
            ctx.precomputed = True
        else:
            ctx.save_for_backward(px, py, boundary, A, scores)
            ctx.precomputed = False
            ctx.modified = modified
        return scores.masked_fill(scores <= NEG_THRESHOLD, float("-inf"))

    @staticmethod
    def backward(ctx, ans_grad: Tensor):
        if ctx.precomputed:
            px_grad, py_grad = ctx.saved_tensors
        else:
            px, py, boundary, A, scores = ctx.saved_tensors
            px_grad, py_grad = _occupation(px, py, boundary, ctx.modified, A, scores)
        g = ans_grad.view(-1, 1, 1)
        return px_grad * g, py_grad * g, None, None, None


def check_boundary(boundary: Tensor | None, B: int, U: int, T: int, device: torch.device) -> Tensor:
    """Validates a (B, 4) boundary (rows [u_begin, t_begin, u_end, t_end]) or builds the full one."""
    if boundary is None:
        return _full_boundary(B, U, T, device)
    if boundary.shape != (B, 4) or boundary.dtype != torch.int64:
        raise ValueError(f"boundary must be an int64 tensor of shape ({B}, 4), got {boundary.dtype} {tuple(boundary.shape)}")
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
    boundary = check_boundary(boundary, B, U, T, px.device)
    in_dtype = px.dtype
    work = compute_dtype(in_dtype)
    pxw = px.to(work).clamp(min=NEG).contiguous()
    pyw = py.to(work).clamp(min=NEG).contiguous()
    grads_out: list | None = [] if return_grad else None
    scores = MutualInformationFunction.apply(pxw, pyw, boundary, modified, grads_out)
    if return_grad:
        px_grad, py_grad = grads_out
        return scores, (px_grad.to(in_dtype), py_grad.to(in_dtype))
    return scores
