"""Pruned RNN-T: prune ranges from the simple loss's occupations, pruning of am / lm, and the loss on the joiner's
output over the pruned (B, T, S) band of the lattice. k2's names, arguments and semantics.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from asr.loss.mutual_information import check_boundary, compute_dtype
from asr.loss.rnnt import (
    REDUCTIONS,
    NodeLogProbs,
    check_lengths,
    check_rnnt_type,
    check_symbols,
    finish_logprobs,
    recursion_loss,
)


def _monotone_lower_bound(x: Tensor) -> Tensor:
    """Largest sequence <= x that is non-decreasing along the last dim: y[i] = min(x[i:])."""
    return x.flip(-1).cummin(dim=-1).values.flip(-1)


def _adjust_lower_bound(s_begin: Tensor, s_range: int) -> Tensor:
    """Makes window starts (B, T) non-decreasing, >= 0, and advancing by less than s_range per frame (k2's rule)."""
    T = s_begin.shape[1]
    steps = (s_range - 1) * torch.arange(T, device=s_begin.device)  # (T,)
    s_begin = _monotone_lower_bound(s_begin)
    slack = _monotone_lower_bound(steps - s_begin).clamp(min=0)  # steps - s_begin, made non-decreasing
    return steps - slack


def get_rnnt_prune_ranges(px_grad: Tensor, py_grad: Tensor, boundary: Tensor | None, s_range: int) -> Tensor:
    """Lower bounds of the label window kept at each frame, from the occupations of the simple loss.

    Args:
        px_grad: (B, U, T + 1) (regular) or (B, U, T) occupation of label arcs (rnnt_loss_simple, return_grad=True).
        py_grad: (B, U + 1, T) occupation of blank arcs.
        boundary: (B, 4) int64 rows [0, 0, U_b, T_b], or None.
        s_range: labels kept per frame (S); raised to the least value that keeps a path (k2's rule), lowered to U + 1.
    Returns:
        (B, T, S) int64 label indexes: each row consecutive, rows non-decreasing in T, advancing by < S per frame.
    """
    if px_grad.ndim != 3 or py_grad.ndim != 3:
        raise ValueError(f"px_grad and py_grad must be 3-D, got {tuple(px_grad.shape)}, {tuple(py_grad.shape)}")
    B, U, T1 = px_grad.shape
    T = py_grad.shape[2]
    if py_grad.shape != (B, U + 1, T) or T1 not in (T, T + 1):
        raise ValueError(f"px_grad (B, U, T + 1 or T) and py_grad (B, U + 1, T) disagree: "
                         f"{tuple(px_grad.shape)}, {tuple(py_grad.shape)}")
    regular = T1 != T
    boundary = check_boundary(boundary, B, U, T, px_grad.device)
    check_lengths(U, T, "regular" if regular else "modified", boundary)
    if regular:
        # a window that advances by at most s_range - 1 per frame must still reach label U_b within T_b frames
        Ub, Tb = boundary[:, 2], boundary[:, 3].clamp(min=1)
        s_range_min = int((Ub - 1).div(Tb, rounding_mode="trunc").add(2).max())
        if s_range < s_range_min:
            warnings.warn(
                f"get_rnnt_prune_ranges: s_range={s_range} is too small for these lengths; using {s_range_min}"
            )
            s_range = s_range_min
    s_range = min(s_range, U + 1)
    if s_range < (2 if regular and U >= 1 else 1):
        raise ValueError(f"s_range must be >= {2 if regular else 1}, got {s_range}")
    n_starts = U + 2 - s_range
    blank_in_window = py_grad.unfold(1, s_range, 1).sum(dim=3)  # (B, n_starts, T)
    px_pad = torch.cat((px_grad.new_zeros(B, 1, T1), px_grad), dim=1)  # (B, U + 1, T1)
    # occupation of blank arcs inside the window, minus label arcs entering it from below
    score = blank_in_window - px_pad[:, :n_starts, :T]  # (B, n_starts, T)
    s_begin = score.argmax(dim=1)  # (B, T)
    frames = torch.arange(T, device=px_grad.device).view(1, T)
    last = (boundary[:, 2] - s_range + 1).clamp(min=0).view(B, 1)
    s_begin = torch.where(frames < boundary[:, 3].view(B, 1) - 1, s_begin, last)
    s_begin = _adjust_lower_bound(s_begin, s_range if regular else 2)
    return s_begin.unsqueeze(2) + torch.arange(s_range, device=px_grad.device)  # (B, T, S)


class _PickRows(torch.autograd.Function):
    """out = x[rows] on a 2-D x; the backward sums the gradient rows back with index_add_ (an accumulating
    index_put, what autograd would use, is several times slower on CPU)."""

    @staticmethod
    def forward(ctx, x: Tensor, rows: Tensor):
        ctx.save_for_backward(rows)
        ctx.n = x.shape[0]
        return x.index_select(0, rows.reshape(-1)).view(*rows.shape, x.shape[1])

    @staticmethod
    def backward(ctx, grad: Tensor):
        (rows,) = ctx.saved_tensors
        out = grad.new_zeros(ctx.n, grad.shape[-1])
        return out.index_add_(0, rows.reshape(-1), grad.reshape(-1, grad.shape[-1])), None


def do_rnnt_pruning(am: Tensor, lm: Tensor, ranges: Tensor) -> tuple[Tensor, Tensor]:
    """Picks the lm rows of each frame's window and broadcasts am to the same shape.

    Args:
        am: (B, T, D) encoder output (usually already projected by the joiner).
        lm: (B, U + 1, D) decoder output.
        ranges: (B, T, S) int64 from get_rnnt_prune_ranges.
    Returns:
        am_pruned (B, T, S, D) (an expanded view, no copy), lm_pruned (B, T, S, D).
    """
    if ranges.ndim != 3 or am.ndim != 3 or lm.ndim != 3:
        raise ValueError(f"am (B, T, D), lm (B, U + 1, D), ranges (B, T, S) expected, got "
                         f"{tuple(am.shape)}, {tuple(lm.shape)}, {tuple(ranges.shape)}")
    B, T, S = ranges.shape
    if am.shape[:2] != (B, T) or lm.shape[0] != B or lm.shape[2] != am.shape[2]:
        raise ValueError(f"am {tuple(am.shape)}, lm {tuple(lm.shape)} and ranges {tuple(ranges.shape)} disagree")
    U1, D = lm.shape[1], lm.shape[2]
    am_pruned = am.unsqueeze(2).expand(B, T, S, D)  # (B, T, S, D)
    rows = ranges + (torch.arange(B, device=ranges.device) * U1).view(B, 1, 1)  # (B, T, S)
    lm_pruned = _PickRows.apply(lm.reshape(B * U1, D), rows)  # (B, T, S, D)
    return am_pruned, lm_pruned


def _check_pruned(
    logits: Tensor, symbols: Tensor, ranges: Tensor, termination_symbol: int, boundary, rnnt_type
) -> Tensor:
    """Validates the pruned loss's inputs; returns the symbols with padding replaced by the blank."""
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, T, S, V), got {tuple(logits.shape)}")
    B, T, S, V = logits.shape
    if ranges.shape != (B, T, S):
        raise ValueError(f"ranges must be ({B}, {T}, {S}), got {tuple(ranges.shape)}")
    if symbols.ndim != 2:
        raise ValueError(f"symbols must be (B, U), got {tuple(symbols.shape)}")
    U = symbols.shape[1]
    check_rnnt_type(rnnt_type)
    check_lengths(U, T, rnnt_type, boundary)
    symbols = check_symbols(symbols, B, U, V, termination_symbol, boundary)
    start = ranges[:, :, :1]
    if bool((start < 0).any() or (start > U + 1 - S).any()) or not torch.equal(
        ranges - start, torch.arange(S, device=ranges.device).expand_as(ranges)
    ):
        raise ValueError(f"ranges rows must be consecutive label indexes within [0, {U}] (see get_rnnt_prune_ranges)")
    return symbols


def _window_logprobs(logits: Tensor, symbols: Tensor, ranges: Tensor, termination_symbol: int):
    """Log-probs of the label and blank arcs inside the window: each (B, T, S)."""
    B, T, S, V = logits.shape
    U = symbols.shape[1]
    with_blank = torch.cat((symbols, symbols.new_full((B, 1), termination_symbol)), dim=1)  # (B, U + 1)
    window_symbols = torch.gather(with_blank, 1, ranges.reshape(B, T * S)).view(B, T, S)
    px, py = NodeLogProbs.apply(logits, window_symbols, termination_symbol)
    # a label arc leaving row U does not exist
    px = px.masked_fill(ranges >= U, float("-inf"))
    return px, py


def get_rnnt_logprobs_pruned(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
) -> tuple[Tensor, Tensor]:
    """Dense px, py (-inf outside the windows) from the pruned joiner output, for mutual_information_recursion.

    Args:
        logits: (B, T, S, V) joiner output on the pruned band.
        symbols: (B, U) int64.
        ranges: (B, T, S) int64 from get_rnnt_prune_ranges.
    Returns:
        px (B, U, T + 1) (regular) or (B, U, T); py (B, U + 1, T).
    """
    symbols = _check_pruned(logits, symbols, ranges, termination_symbol, boundary, rnnt_type)
    B, T, S, V = logits.shape
    U = symbols.shape[1]
    px_win, py_win = _window_logprobs(logits, symbols, ranges, termination_symbol)
    px = px_win.new_full((B, T, U + 1), float("-inf")).scatter(2, ranges, px_win)  # (B, T, U + 1)
    px = px[:, :, :U].transpose(1, 2)  # (B, U, T)
    if rnnt_type == "regular":
        px = torch.cat((px, px.new_full((B, U, 1), float("-inf"))), dim=2)  # (B, U, T + 1)
    py = py_win.new_full((B, T, U + 1), float("-inf")).scatter(2, ranges, py_win).transpose(1, 2)  # (B, U + 1, T)
    return finish_logprobs(px, py, boundary, rnnt_type)


def rnnt_loss_pruned(
    logits: Tensor,
    symbols: Tensor,
    ranges: Tensor,
    termination_symbol: int,
    boundary: Tensor | None = None,
    rnnt_type: str = "regular",
    delay_penalty: float = 0.0,
    reduction: str = "mean",
    return_grad: bool = False,
) -> Tensor | tuple[Tensor, tuple[Tensor, Tensor]]:
    """The RNN-T loss on the joiner's output over the pruned band of the lattice.

    Args:
        logits: (B, T, S, V) joiner output on the band (do_rnnt_pruning, then the joiner).
        symbols: (B, U) int64 labels; termination_symbol: blank id.
        ranges: (B, T, S) int64 from get_rnnt_prune_ranges.
        boundary: (B, 4) int64 rows [0, 0, U_b, T_b], or None.
        rnnt_type: "regular" | "modified" | "constrained"; delay_penalty: k2's (0 disables).
        reduction: "none" | "mean" | "sum".
        return_grad: also return the occupations (px_grad (B, U, T + 1), py_grad (B, U + 1, T)).
    Returns:
        loss: (B,) with reduction="none", else a scalar; with return_grad, (loss, (px_grad, py_grad)).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction should be one of {REDUCTIONS}, got {reduction!r}")
    logits = logits.to(compute_dtype(logits.dtype))
    px, py = get_rnnt_logprobs_pruned(logits, symbols, ranges, termination_symbol, boundary, rnnt_type)
    return recursion_loss(px, py, boundary, rnnt_type, delay_penalty, reduction, return_grad)
