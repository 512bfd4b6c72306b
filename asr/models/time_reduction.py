"""Halving the frame rate inside the encoder and restoring it: the Temporal U-Net of Squeezeformer (Kim et al. 2022)
with Zipformer's (Yao et al. 2023) learned pair weights and bypass.

A run of middle layers works at half the frame rate (half the cost: every module of a layer is linear in T but
attention, which is quadratic), and the frames of the last layers, the joiner and the losses stay as many as
before, so lengths, decoding and the rule of at most one token per frame are unchanged.
"""

import torch
from torch import Tensor, nn


def halved_lengths(lens: Tensor) -> Tensor:
    """(B,) frames -> (B,) frames after pairing them: ceil(lens / 2), an odd last frame kept alone."""
    return torch.div(lens + 1, 2, rounding_mode="floor")


class PairDownsample(nn.Module):
    """(B, T, D) -> (B, ceil(T / 2), D): each output frame a learned convex combination of two input frames.

    An utterance with an odd number of valid frames pairs its last frame with itself, so padding never leaks in.
    """

    def __init__(self) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(2))  # softmax -> the weights of the first and second frame

    def forward(self, x: Tensor, lens: Tensor) -> tuple[Tensor, Tensor]:
        """
        Args:
            x: (B, T, D), valid up to lens.
            lens: (B,) int64 valid frames, each >= 1.
        Returns:
            (B, ceil(T / 2), D) and its (B,) valid frames halved_lengths(lens).
        """
        B, T, D = x.shape
        T2 = (T + 1) // 2
        frames = torch.arange(2 * T2, device=x.device).view(1, -1)  # (1, 2 T2)
        last = (lens.to(x.device) - 1).view(-1, 1)  # (B, 1)
        idx = torch.minimum(frames, last)  # (B, 2 T2): frames past the end repeat the last valid one
        pairs = x.gather(1, idx.unsqueeze(-1).expand(B, 2 * T2, D)).view(B, T2, 2, D)
        weights = self.logits.softmax(dim=0).to(x.dtype).view(1, 1, 2, 1)
        return (pairs * weights).sum(dim=2), halved_lengths(lens)


class BypassUpsample(nn.Module):
    """(B, ceil(T / 2), D) back to (B, T, D): each frame repeated twice, mixed with the full-rate input of the
    reduction by a learned per-channel weight (Zipformer's bypass: out = skip + c * (up - skip), c from 0.5)."""

    def __init__(self, d_model: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((d_model,), 0.5))

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        """x: (B, ceil(T / 2), D) half-rate frames, skip: (B, T, D) -> (B, T, D)."""
        up = x.repeat_interleave(2, dim=1)[:, : skip.size(1)]  # (B, T, D)
        return skip + self.scale * (up - skip)
