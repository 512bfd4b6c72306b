"""The transducer: Conformer encoder + stateless decoder + joiner, trained with the pruned RNN-T loss.

forward() reads top to bottom as the pruned RNN-T recipe: the simple (smoothed) loss on linear projections of the
encoder and decoder outputs, prune ranges from its gradients, pruning of the joiner-dim projections, the joiner on
the (B, T, S) window, the pruned loss. Both losses run in float32 (float64 stays float64) even under autocast.
"""

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

import asr.loss as transducer_loss
from asr.models.conformer import Conformer, ConformerConfig
from asr.models.decoder import Decoder, DecoderConfig
from asr.models.joiner import Joiner, JoinerConfig

_REDUCTIONS = ("sum", "none")


@dataclass
class ModelConfig:
    # Size of the BPE vocabulary, blank included: icefall's LibriSpeech recipes use 500 BPE pieces.
    vocab_size: int = 500
    # Blank is token 0 (`<blk>` is the first piece of the BPE model), as in icefall and k2.
    blank_id: int = 0
    encoder: ConformerConfig = field(default_factory=ConformerConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    joiner: JoinerConfig = field(default_factory=JoinerConfig)


def _loss_precision(t: Tensor) -> Tensor:
    """Float16/bfloat16 -> float32 for the losses; float32 and float64 unchanged."""
    return t if t.dtype == torch.float64 else t.float()


class Transducer(nn.Module):
    """Encoder + decoder + joiner, with the linear `simple_am_proj` / `simple_lm_proj` (to V) of the simple loss."""

    def __init__(self, encoder: Conformer, decoder: Decoder, joiner: Joiner, encoder_dim: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.joiner = joiner
        self.blank_id = decoder.blank_id
        self.vocab_size = decoder.vocab_size
        self.context_size = decoder.context_size
        self.simple_am_proj = nn.Linear(encoder_dim, self.vocab_size)
        self.simple_lm_proj = nn.Linear(decoder.decoder_dim, self.vocab_size)

    def encode(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        """x: (B, T, F), x_lens: (B,) -> encoder_out (B, T', D) zero at padded frames, encoder_out_lens (B,)."""
        return self.encoder(x, x_lens)

    def forward(
        self,
        x: Tensor,
        x_lens: Tensor,
        y: Tensor,
        y_lens: Tensor,
        prune_range: int,
        am_scale: float,
        lm_scale: float,
        reduction: str = "sum",
        delay_penalty: float = 0.0,
    ) -> tuple[Tensor, Tensor]:
        """
        Args:
            x: (B, T, F) features.
            x_lens: (B,) valid frames per utterance.
            y: (B, U) int64 labels (no blank), padded with anything after y_lens.
            y_lens: (B,) labels per utterance, each >= 1.
            prune_range: S, labels kept per frame by pruning.
            am_scale, lm_scale: smoothing of the simple loss (k2's am_only_scale, lm_only_scale).
            reduction: "sum" (over the batch) or "none".
            delay_penalty: k2's penalty on late emission (0 disables), passed to both losses.
        Returns:
            (simple_loss, pruned_loss): scalars for "sum", (B,) for "none"; negated log-likelihoods, float32.
        """
        if reduction not in _REDUCTIONS:
            raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")
        if y.ndim != 2 or y_lens.shape != (y.size(0),) or y.size(0) != x.size(0):
            raise ValueError(
                f"expected y (B, U) and y_lens (B,) with B = {x.size(0)}; got {tuple(y.shape)}, {tuple(y_lens.shape)}"
            )
        if y.dtype != torch.int64:
            raise ValueError(f"y must be int64, got {y.dtype}")
        if int(y_lens.min()) < 1 or int(y_lens.max()) > y.size(1):
            raise ValueError(f"y_lens must lie in [1, {y.size(1)}] (U of y), got {y_lens.tolist()}")
        label_mask = torch.arange(y.size(1), device=y.device).unsqueeze(0) < y_lens.unsqueeze(1)  # (B, U)
        y = torch.where(label_mask, y, self.blank_id)  # padding -> blank: deterministic decoder outputs
        if int(y.min()) < 0 or int(y.max()) >= self.vocab_size:
            raise ValueError(f"labels must lie in [0, {self.vocab_size}), got [{int(y.min())}, {int(y.max())}]")

        encoder_out, encoder_out_lens = self.encode(x, x_lens)  # (B, T', D), (B,)
        blank = torch.full((y.size(0), 1), self.blank_id, dtype=y.dtype, device=y.device)
        decoder_out = self.decoder(torch.cat([blank, y], dim=1))  # (B, U + 1, decoder_dim)

        boundary = torch.zeros(y.size(0), 4, dtype=torch.int64, device=y.device)  # rows [0, 0, U_b, T_b]
        boundary[:, 2] = y_lens
        boundary[:, 3] = encoder_out_lens

        am = self.simple_am_proj(encoder_out)  # (B, T', V)
        lm = self.simple_lm_proj(decoder_out)  # (B, U + 1, V)
        with torch.autocast(device_type=x.device.type, enabled=False):
            simple_loss, (px_grad, py_grad) = transducer_loss.rnnt_loss_smoothed(
                lm=_loss_precision(lm),
                am=_loss_precision(am),
                symbols=y,
                termination_symbol=self.blank_id,
                lm_only_scale=lm_scale,
                am_only_scale=am_scale,
                boundary=boundary,
                delay_penalty=delay_penalty,
                reduction=reduction,
                return_grad=True,
            )

        ranges = transducer_loss.get_rnnt_prune_ranges(
            px_grad=px_grad, py_grad=py_grad, boundary=boundary, s_range=prune_range
        )  # (B, T', S)
        am_pruned, lm_pruned = transducer_loss.do_rnnt_pruning(
            am=self.joiner.encoder_proj(encoder_out),  # (B, T', J)
            lm=self.joiner.decoder_proj(decoder_out),  # (B, U + 1, J)
            ranges=ranges,
        )  # each (B, T', S, J)
        logits = self.joiner(am_pruned, lm_pruned, project_input=False)  # (B, T', S, V)

        with torch.autocast(device_type=x.device.type, enabled=False):
            pruned_loss = transducer_loss.rnnt_loss_pruned(
                logits=_loss_precision(logits),
                symbols=y,
                ranges=ranges,
                termination_symbol=self.blank_id,
                boundary=boundary,
                delay_penalty=delay_penalty,
                reduction=reduction,
            )
        return simple_loss, pruned_loss


def build_model(cfg: ModelConfig) -> Transducer:
    """The transducer that `cfg` (a ModelConfig or an OmegaConf node of one) describes."""
    encoder = Conformer.from_config(cfg.encoder)
    decoder = Decoder(
        vocab_size=cfg.vocab_size,
        decoder_dim=cfg.decoder.decoder_dim,
        blank_id=cfg.blank_id,
        context_size=cfg.decoder.context_size,
    )
    joiner = Joiner(
        encoder_dim=cfg.encoder.d_model,
        decoder_dim=cfg.decoder.decoder_dim,
        joiner_dim=cfg.joiner.joiner_dim,
        vocab_size=cfg.vocab_size,
    )
    return Transducer(encoder=encoder, decoder=decoder, joiner=joiner, encoder_dim=cfg.encoder.d_model)
