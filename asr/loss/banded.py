"""Recursion of the regular RNN-T over a pruned band of the lattice (placeholder: dense)."""

from __future__ import annotations

import torch
from torch import Tensor

from asr.loss.mutual_information import mutual_information_recursion
from asr.loss.rnnt import fix_for_boundary


def banded_recursion(px: Tensor, py: Tensor, starts: Tensor, boundary: Tensor, U: int) -> Tensor:
    """Scores (B,) of the regular recursion whose arcs are finite only inside the band.

    Args:
        px: (B, T, S) log-probs of label arcs leaving (starts[b, t] + s, t) (-inf for rows >= U).
        py: (B, T, S) log-probs of blank arcs leaving (starts[b, t] + s, t).
        starts: (B, T) int64 first label row of each frame's window.
        boundary: (B, 4) int64.
        U: label length.
    """
    B, T, S = px.shape
    rows = starts.unsqueeze(2) + torch.arange(S, device=px.device)  # (B, T, S)
    pxd = px.new_full((B, T, U + 1), float("-inf")).scatter(2, rows, px)[:, :, :U].transpose(1, 2)
    pxd = torch.cat((pxd, pxd.new_full((B, U, 1), float("-inf"))), dim=2)  # (B, U, T + 1)
    pyd = py.new_full((B, T, U + 1), float("-inf")).scatter(2, rows, py).transpose(1, 2)  # (B, U + 1, T)
    return mutual_information_recursion(fix_for_boundary(pxd, boundary), pyd, boundary)
