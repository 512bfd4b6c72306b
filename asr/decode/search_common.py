"""What every search method shares: checking its inputs, ordering utterances by length, the decoder's output for
label contexts."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def decoder_out_for(model: nn.Module, context: Tensor) -> Tensor:
    """Projected decoder output of label contexts.

    Args:
        model: a transducer with `.decoder` and `.joiner.decoder_proj`.
        context: (N, context_size) int64 last labels of N hypotheses.
    Returns:
        (N, J) decoder output projected to the joiner dim.
    """
    return model.joiner.decoder_proj(model.decoder(context, need_pad=False)).squeeze(1)  # (N, J)


def sort_by_length(encoder_out_lens: Tensor) -> tuple[Tensor, list[int]]:
    """Order of the utterances by decreasing length, and that order's lengths as Python ints.

    Args:
        encoder_out_lens: (B,) frames per utterance.
    Returns:
        (B,) permutation (on the lengths' device), and the sorted lengths.
    """
    lens = encoder_out_lens.to("cpu", torch.int64)
    order = torch.argsort(lens, descending=True, stable=True)
    return order.to(encoder_out_lens.device), lens[order].tolist()


def active_counts(sorted_lens: list[int], num_frames: int) -> list[int]:
    """Number of utterances still inside their length at each frame, for lengths sorted in decreasing order."""
    counts = []
    n = len(sorted_lens)
    for t in range(num_frames):
        while n > 0 and sorted_lens[n - 1] <= t:
            n -= 1
        counts.append(n)
    return counts


def check_inputs(encoder_out: Tensor, encoder_out_lens: Tensor) -> None:
    """Raises a clear ValueError unless encoder_out is (B, T, D) and encoder_out_lens (B,) lies in [0, T]."""
    if encoder_out.ndim != 3:
        raise ValueError(f"expected encoder_out of shape (B, T, D), got {tuple(encoder_out.shape)}")
    if encoder_out_lens.shape != (encoder_out.size(0),):
        raise ValueError(
            f"encoder_out_lens of shape {tuple(encoder_out_lens.shape)} does not match batch {encoder_out.size(0)}"
        )
    if encoder_out.size(0) and (encoder_out_lens.min() < 0 or encoder_out_lens.max() > encoder_out.size(1)):
        raise ValueError(f"encoder_out_lens must lie in [0, T={encoder_out.size(1)}], got {encoder_out_lens.tolist()}")
