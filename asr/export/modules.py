"""Export-friendly views of a trained `Transducer`: the encoder, decoder and joiner in sherpa-onnx's offline
transducer layout, computing the same numbers as the PyTorch model (eval mode) with graphs that trace with dynamic
N and T.

They share the model's parameters (nothing is copied) and differ from its forward in three ways only:
- no input checks or data-dependent Python branches (they would freeze a traced graph to one shape);
- the relative shift of the self-attention is a gather of computed indexes instead of `as_strided` (which the
  TorchScript-based ONNX exporter cannot express with symbolic sizes); the sinusoidal table is built by stack
  instead of strided assignment. Same values: tests compare them with the model's;
- the joiner's projections are applied where sherpa-onnx expects them: the encoder outputs `encoder_proj(...)`,
  the decoder outputs `decoder_proj(...)`, and a context label -1 ("no label yet", sherpa's start context) gives
  the blank's embedding, the left padding of training's contexts (a zero row: the embedding's padding_idx).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from asr.models.conformer import (
    _MACARON_SCALE,
    _POSITION_BASE,
    Conformer,
    ConformerLayer,
    RelPositionMultiheadAttention,
    padding_mask,
    utterance_norm,
)
from asr.models.transducer import Transducer


def relative_positions(length: Tensor | int, d_model: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """The table of `asr.models.conformer.relative_positions`, traceable with a symbolic `length`.

    Returns:
        (2 * length - 1, D); row m encodes the relative position length - 1 - m.
    """
    pos = torch.arange(length - 1, -length, -1, device=device).to(torch.float32).unsqueeze(1)  # (2T-1, 1)
    inv_freq = torch.exp(
        torch.arange(0, d_model, 2, device=device, dtype=torch.float32) * (-math.log(_POSITION_BASE) / d_model)
    )  # (D/2,)
    angles = pos * inv_freq  # (2T-1, D/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).reshape(-1, d_model).to(dtype)  # (2T-1, D)


def relative_shift(position: Tensor) -> Tensor:
    """Transformer-XL's relative shift by a gather: out[..., i, j] = position[..., i, T - 1 - i + j].

    Args:
        position: (B, H, T, 2T-1) scores against the relative positions T-1 .. -(T-1).
    Returns:
        (B, H, T, T) scores of query i against key j.
    """
    b, h, t, _ = position.shape
    rows = torch.arange(t, device=position.device)
    index = (t - 1) - rows.unsqueeze(1) + rows.unsqueeze(0)  # (T, T)
    return torch.gather(position, 3, index.expand(b, h, t, t))  # (B, H, T, T)


def self_attention(mha: RelPositionMultiheadAttention, x: Tensor, pos_emb: Tensor, mask: Tensor) -> Tensor:
    """`mha.forward` in eval mode with the gather relative shift.

    Args:
        x: (B, T, D); pos_emb: (2T - 1, D); mask: (B, T) bool, True at padded frames.
    Returns:
        (B, T, D).
    """
    b, t, d = x.shape
    h, dh = mha.num_heads, mha.d_head
    q, k, v = mha.in_proj(x).view(b, t, 3, h, dh).unbind(dim=2)  # each (B, T, H, dh)
    p = mha.linear_pos(pos_emb).view(-1, h, dh).transpose(0, 1)  # (H, 2T-1, dh)
    k = k.transpose(1, 2)  # (B, H, T, dh)
    v = v.transpose(1, 2)  # (B, H, T, dh)
    scale = 1.0 / math.sqrt(dh)
    q_u = ((q + mha.pos_bias_u) * scale).transpose(1, 2)  # (B, H, T, dh)
    q_v = ((q + mha.pos_bias_v) * scale).transpose(1, 2)  # (B, H, T, dh)
    content = torch.matmul(q_u, k.transpose(-2, -1))  # (B, H, T, T)
    position = relative_shift(torch.matmul(q_v, p.transpose(-2, -1)))  # (B, H, T, T)
    bias = torch.zeros_like(mask, dtype=content.dtype).masked_fill(mask, float("-inf"))  # (B, T)
    attn = torch.softmax(content + position + bias[:, None, None, :], dim=-1)  # (B, H, T, T)
    out = torch.matmul(attn, v)  # (B, H, T, dh)
    return mha.out_proj(out.transpose(1, 2).reshape(b, t, d))  # (B, T, D)


def conformer_layer(layer: ConformerLayer, x: Tensor, pos_emb: Tensor, mask: Tensor) -> Tensor:
    """`layer.forward` in eval mode (no dropout). x: (B, T, D), pos_emb: (2T - 1, D), mask: (B, T) -> (B, T, D)."""
    x = x + _MACARON_SCALE * layer.ff_macaron(layer.norm_ff_macaron(x))
    x = x + self_attention(layer.self_attn, layer.norm_mha(x), pos_emb, mask)
    x = x + layer.conv(layer.norm_conv(x), mask)
    x = x + _MACARON_SCALE * layer.ff(layer.norm_ff(x))
    return layer.norm_final(x)


class ExportEncoder(nn.Module):
    """Features -> joiner-dim encoder frames: the Conformer (its input normalisation included) + encoder_proj.

    sherpa-onnx's `encoder.onnx`: x (N, T, F) float32, x_lens (N,) int64 -> encoder_out (N, T', J),
    encoder_out_lens (N,) int64. Frames past x_lens do not change the valid outputs (sherpa pads with log(1e-10)).
    """

    def __init__(self, encoder: Conformer, encoder_proj: nn.Linear) -> None:
        super().__init__()
        self.encoder = encoder
        self.encoder_proj = encoder_proj

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        """x: (N, T, F), x_lens: (N,) -> encoder_out (N, T', J) (padded frames: the projection of 0),
        encoder_out_lens (N,)."""
        enc = self.encoder
        if enc.input_norm == "utterance":
            x = utterance_norm(x, x_lens)
        x = enc.subsampling(x)  # (N, T', D)
        out_lens = enc.output_lengths(x_lens)  # (N,)
        mask = padding_mask(out_lens, x.size(1))  # (N, T')
        pos_emb = relative_positions(x.size(1), enc.d_model, x.device, x.dtype)  # (2T'-1, D)
        x = x * math.sqrt(enc.d_model)
        first, end = enc.half_rate_layers or (-1, -1)
        full_rate = (x, mask, pos_emb)
        for i, layer in enumerate(enc.layers):
            if i == first:
                full_rate = (x, mask, pos_emb)
                x, half_lens = enc.downsample(x, out_lens)  # (N, ceil(T'/2), D)
                mask = padding_mask(half_lens, x.size(1))
                pos_emb = relative_positions(x.size(1), enc.d_model, x.device, x.dtype)
            elif i == end:
                skip, mask, pos_emb = full_rate
                x = enc.upsample(x, skip)  # (N, T', D)
            x = conformer_layer(layer, x, pos_emb, mask)
        x = x.masked_fill(mask.unsqueeze(-1), 0.0)
        return self.encoder_proj(x), out_lens  # (N, T', J), (N,)


class ExportDecoder(nn.Module):
    """Label context -> projected decoder output: sherpa-onnx's `decoder.onnx`, y (N, context_size) int64 ->
    decoder_out (N, J) float32 (2-D). A label -1 gives the blank's (zero) embedding, never row -1."""

    def __init__(self, model: Transducer) -> None:
        super().__init__()
        self.decoder = model.decoder
        self.decoder_proj = model.joiner.decoder_proj

    def forward(self, y: Tensor) -> Tensor:
        """y: (N, context_size) int64, -1 for "no label" -> (N, J)."""
        dec = self.decoder
        # -1 -> the blank's row, the left padding of the context in training (zero: it is the padding_idx). A plain
        # gather would take row -1, the last piece's embedding (icefall PR #1264, sherpa-onnx #327).
        emb = dec.embedding(torch.where(y < 0, torch.full_like(y, dec.blank_id), y))  # (N, C, decoder_dim)
        if dec.conv is not None:
            emb = dec.conv(emb.transpose(1, 2)).transpose(1, 2)  # (N, 1, decoder_dim)
        out = torch.relu(emb[:, -1])  # (N, decoder_dim)
        return self.decoder_proj(out)  # (N, J)


class ExportJoiner(nn.Module):
    """sherpa-onnx's `joiner.onnx`: encoder_out (N, J), decoder_out (N, J), both projected -> logit (N, V)."""

    def __init__(self, model: Transducer) -> None:
        super().__init__()
        self.output_linear = model.joiner.output_linear

    def forward(self, encoder_out: Tensor, decoder_out: Tensor) -> Tensor:
        """encoder_out: (N, J), decoder_out: (N, J) -> (N, V)."""
        hidden = torch.tanh(encoder_out + decoder_out)  # (N, J)
        # A MatMul (not the Gemm a 2-D Linear exports to): onnxruntime's dynamic int8 quantization handles MatMul.
        return torch.matmul(hidden, self.output_linear.weight.t()) + self.output_linear.bias  # (N, V)
