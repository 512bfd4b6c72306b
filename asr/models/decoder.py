"""Stateless prediction network (Ghodsi et al., 2020): embedding of the last `context_size` labels, a Conv1d over
them, ReLU. No recurrence, so decoding only needs the last `context_size` labels, not a hidden state."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class DecoderConfig:
    # Width of the label embedding and of the decoder output (icefall: 512, equal to the encoder width).
    decoder_dim: int = 512
    # Labels the prediction depends on: 2 (a bigram-like context) is what icefall's stateless recipes use.
    context_size: int = 2


class Decoder(nn.Module):
    """Embedding (V, decoder_dim) with the blank row fixed at zero, a depthwise Conv1d of kernel `context_size`
    without padding (as icefall's stateless decoder), and ReLU."""

    def __init__(self, vocab_size: int, decoder_dim: int, blank_id: int, context_size: int) -> None:
        super().__init__()
        if not 0 <= blank_id < vocab_size:
            raise ValueError(f"blank_id={blank_id} is not in [0, vocab_size={vocab_size})")
        if context_size < 1:
            raise ValueError(f"context_size must be >= 1, got {context_size}")
        self.vocab_size = vocab_size
        self.decoder_dim = decoder_dim
        self.blank_id = blank_id
        self.context_size = context_size
        self.embedding = nn.Embedding(vocab_size, decoder_dim, padding_idx=blank_id)
        self.conv = (
            nn.Conv1d(decoder_dim, decoder_dim, kernel_size=context_size, groups=decoder_dim, bias=False)
            if context_size > 1
            else None
        )

    def forward(self, y: Tensor, need_pad: bool = True) -> Tensor:
        """
        Args:
            y: (B, U') int64 labels. Training (need_pad=True): [blank] + labels, U' = U + 1; the context is
                left-padded with context_size - 1 blanks so that output u sees labels u-context_size+1 .. u.
                Decoding (need_pad=False): exactly the last context_size labels (blanks at the start of an
                utterance), U' = context_size.
            need_pad: training (True) or decoding (False) mode.
        Returns:
            (B, U', decoder_dim) in training mode, (B, 1, decoder_dim) in decoding mode.
        """
        if y.ndim != 2:
            raise ValueError(f"expected y of shape (B, U), got {tuple(y.shape)}")
        c = self.context_size
        if need_pad:
            pad = torch.full((y.size(0), c - 1), self.blank_id, dtype=y.dtype, device=y.device)
            y = torch.cat([pad, y], dim=1)  # (B, U' + c - 1)
        elif y.size(1) != c:
            raise ValueError(f"decoding mode takes exactly context_size={c} labels, got y of shape {tuple(y.shape)}")
        emb = self.embedding(y)  # (B, U' + c - 1, decoder_dim)
        if self.conv is not None:
            emb = self.conv(emb.transpose(1, 2)).transpose(1, 2)  # (B, U', decoder_dim)
        return F.relu(emb)
