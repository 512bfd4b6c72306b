"""Joiner of the transducer: output_linear(tanh(encoder_proj(enc) + decoder_proj(dec)))."""

from dataclasses import dataclass

from torch import Tensor, nn


@dataclass
class JoinerConfig:
    # Width where encoder and decoder meet (icefall: 512). The pruned loss gathers vectors of this width, so it
    # sets the memory of pruning: (B, T, S, joiner_dim) instead of (B, T, U + 1, V).
    joiner_dim: int = 512


class Joiner(nn.Module):
    """Projects encoder and decoder outputs to joiner_dim, adds them, tanh, Linear to V.

    The projections are separate so that the transducer applies them once, before pruning, and prunes joiner_dim
    vectors (`project_input=False` then skips them here).
    """

    def __init__(self, encoder_dim: int, decoder_dim: int, joiner_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.encoder_proj = nn.Linear(encoder_dim, joiner_dim)
        self.decoder_proj = nn.Linear(decoder_dim, joiner_dim)
        self.output_linear = nn.Linear(joiner_dim, vocab_size)

    def forward(self, encoder_out: Tensor, decoder_out: Tensor, project_input: bool = True) -> Tensor:
        """
        Args:
            encoder_out: (..., encoder_dim), or (..., joiner_dim) already projected when project_input=False.
            decoder_out: (..., decoder_dim), or (..., joiner_dim) likewise; broadcastable against encoder_out
                in the leading dims (e.g. (B, T, 1, J) with (B, 1, U + 1, J)).
            project_input: apply encoder_proj / decoder_proj first.
        Returns:
            (..., V) logits.
        """
        if project_input:
            encoder_out = self.encoder_proj(encoder_out)
            decoder_out = self.decoder_proj(decoder_out)
        return self.output_linear((encoder_out + decoder_out).tanh())
