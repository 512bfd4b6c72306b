"""Conformer encoder (Gulati et al., 2020) with relative-positional self-attention.

The stack is: optional per-utterance feature normalisation -> Conv2d subsampling by 4 (icefall's Conformer) or 8
(NeMo's FastConformer), with full or depthwise-separable convolutions -> scaled input + relative
sinusoidal position table -> N macaron Conformer layers (half feed-forward, relative-positional multi-head
self-attention, convolution module, half feed-forward, LayerNorm). Padded frames never reach a valid frame: the
normalisation's statistics skip them, attention masks padded keys, the convolution module zeroes padded frames before
its depthwise convolution and leaves them out of its BatchNorm statistics, and the output is zero at padded frames.
In eval mode (and in train mode without dropout) adding padding changes no valid output.
"""

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asr.models.dropout import MaskDropout
from asr.models.feed_forward import FeedForward
from asr.models.time_reduction import BypassUpsample, PairDownsample

# Each subsampling convolution has kernel 3 and stride 2, without padding: T -> (T - 1) // 2.
_SUBSAMPLING_KERNEL = 3
_SUBSAMPLING_STRIDE = 2
# Subsampling factor -> number of those convolutions.
_SUBSAMPLING_CONVS = {4: 2, 8: 3}
# Kinds of the subsampling convolutions after the first (ConformerConfig.subsampling_conv).
_SUBSAMPLING_CONV_KINDS = ("full", "depthwise")
# Fewest input frames that still give one output frame at factor 4: ((7 - 1) // 2 - 1) // 2 = 1 (factor 8: 15).
MIN_INPUT_FRAMES = 7
# Wavelength base of the sinusoidal position table (Vaswani et al. 2017).
_POSITION_BASE = 10000.0
# Each of the two macaron feed-forward modules adds half its output (Conformer paper).
_MACARON_SCALE = 0.5


@dataclass
class ConformerConfig:
    # 80 log-mel filterbank bins: what the LibriSpeech recipes of icefall and ESPnet extract.
    num_features: int = 80
    # Model width, attention heads and feed-forward width of Conformer-L-like models used by the pruned RNN-T paper.
    d_model: int = 512
    num_heads: int = 8
    ff_dim: int = 2048
    # 12 layers: the depth of icefall's pruned_transducer_stateless Conformer (the paper's LibriSpeech model).
    num_layers: int = 12
    # Depthwise convolution kernel: 31 frames (1.24 s after subsampling by 4), as in the Conformer paper.
    # (FastConformer, at factor 8, uses 9.)
    cnn_kernel: int = 31
    # Dropout on attention weights, feed-forward hidden units and every residual branch (icefall: 0.1).
    dropout: float = 0.1
    # Channels of the two subsampling convolutions; 0 means d_model (icefall's Conv2dSubsampling). At 100 frames/s
    # the second convolution costs about as much as six small Conformer layers: small CPU models use fewer.
    subsampling_channels: int = 0
    # Frame rate reduction of the subsampling: 4 (two stride-2 convolutions, 40 ms frames: icefall's Conformer) or 8
    # (a third one, 80 ms frames, as NeMo's FastConformer): 8 halves the frames every layer, the joiner and the
    # losses see, for about half the encoder's cost.
    subsampling_factor: int = 4
    # The subsampling convolutions after the first: "full" (a 3x3 stride-2 Conv2d(C, C), icefall's
    # Conv2dSubsampling) or "depthwise" (NeMo FastConformer's dw_striding: a depthwise 3x3 stride-2 Conv2d, then a
    # pointwise 1x1 Conv2d(C, C)). "full" is the default: checkpoints keep icefall's layout and the WER tables were
    # measured with it. "depthwise" is a lighter front end: conformer_l12's subsampling is 39% of its encoder's
    # forward FLOPs (nearly all of it the second 512-channel Conv2d), 12% with depthwise, and the encoder's forward
    # 0.69x (bench/RESULTS_train_step.md, "Lighter front ends"); a different function, so train it from scratch.
    # Both keep the frame counts (kernel 3, stride 2, no padding).
    subsampling_conv: str = "full"
    # [] or [first, end]: layers first .. end - 1 run at half the frame rate, between a learned pair average and a
    # repeat-and-bypass back to full rate (Squeezeformer's Temporal U-Net, Zipformer's middle stacks); the output
    # keeps subsampling_factor's frames. E.g. [1, 5] of 6 layers: a third less compute in the layers.
    half_rate_layers: list[int] = field(default_factory=list)
    # Input normalisation: "utterance" subtracts each utterance's mean and divides by its standard deviation, per
    # feature bin, over its valid frames (ESPnet's utterance_mvn); "none" feeds the fbank as it is (icefall). Raw
    # fbank of clean or synthetic audio is bimodal (digital silence sits at the log floor, about -15.9): without
    # normalisation a small model on the demo corpus stays on the blank plateau for thousands of batches.
    input_norm: str = "none"


_INPUT_NORMS = ("none", "utterance")


def _subsampling_convs(factor: int) -> int:
    if factor not in _SUBSAMPLING_CONVS:
        raise ValueError(f"subsampling_factor must be one of {sorted(_SUBSAMPLING_CONVS)}, got {factor}")
    return _SUBSAMPLING_CONVS[factor]


def subsampled_lengths(x_lens: Tensor, factor: int = 4) -> Tensor:
    """Frames left after the Conv2d subsampling, exactly.

    Args:
        x_lens: (B,) input frames per utterance.
        factor: the encoder's subsampling_factor.
    Returns:
        (B,) x_lens after log2(factor) convolutions of kernel 3, stride 2 and no padding, each (T - 1) // 2:
        ((x_lens - 1) // 2 - 1) // 2 for factor 4.
    """
    out = x_lens
    for _ in range(_subsampling_convs(factor)):
        out = torch.div(out - _SUBSAMPLING_KERNEL, _SUBSAMPLING_STRIDE, rounding_mode="floor") + 1
    return out


@dataclass(frozen=True)
class EncoderFrames:
    """The encoder's output length as a small picklable callable: (B,) input frames -> (B,) encoder frames.

    The one source of encoder frame counts outside the module itself: the data filter (drops utterances with more
    tokens than frames, in DataLoader workers, hence picklable) and the loss's frame counts use it. The half-rate
    layers (asr.models.time_reduction) restore the frame rate, so only the subsampling changes the count.
    """

    subsampling_factor: int = 4

    def __post_init__(self) -> None:
        _subsampling_convs(self.subsampling_factor)  # an unknown factor fails here, not in a DataLoader worker

    def __call__(self, x_lens: Tensor) -> Tensor:
        """x_lens: (B,) input frames -> (B,) encoder frames (<= 0 for fewer than min_input_frames)."""
        return subsampled_lengths(x_lens, self.subsampling_factor)

    def of(self, num_frames: int) -> int:
        """Encoder frames of one utterance of `num_frames` input frames."""
        return int(self(torch.tensor([num_frames]))[0])


def min_input_frames(factor: int = 4) -> int:
    """Fewest input frames that give one encoder frame: 7 for factor 4, 15 for 8."""
    frames = 1
    for _ in range(_subsampling_convs(factor)):
        frames = _SUBSAMPLING_STRIDE * frames + 1
    return frames


def padding_mask(lens: Tensor, max_len: int) -> Tensor:
    """(B, max_len) bool, True at padded positions (index >= lens)."""
    return torch.arange(max_len, device=lens.device).unsqueeze(0) >= lens.unsqueeze(1)


def utterance_norm(x: Tensor, x_lens: Tensor, eps: float = 1e-5) -> Tensor:
    """Per-utterance, per-bin mean and variance normalisation over the valid frames; padded frames become 0.

    Args:
        x: (B, T, F) features, padded after each utterance's x_lens frames.
        x_lens: (B,) valid frames per utterance, each >= 1.
    Returns:
        (B, T, F), in x's dtype (statistics in float32).
    """
    pad = padding_mask(x_lens, x.size(1)).unsqueeze(-1)  # (B, T, 1)
    x32 = x.float().masked_fill(pad, 0.0)
    n = x_lens.to(torch.float32).clamp(min=1).view(-1, 1, 1)  # (B, 1, 1)
    mean = x32.sum(dim=1, keepdim=True) / n  # (B, 1, F)
    var = (x32 - mean).square().masked_fill(pad, 0.0).sum(dim=1, keepdim=True) / n  # (B, 1, F)
    out = ((x32 - mean) * torch.rsqrt(var + eps)).masked_fill(pad, 0.0)
    return out.to(x.dtype)


class Conv2dSubsampling(nn.Module):
    """log2(factor) Conv2d (kernel 3, stride 2) + ReLU over (time, feature), then a Linear to d_model:
    T -> T' = subsampled_lengths(T, factor), about T / factor.

    conv="full": each Conv2d is a full one (icefall's Conv2dSubsampling). conv="depthwise": the first stays
    Conv2d(1, C); each later one is a depthwise Conv2d(C, C, groups=C) then a pointwise Conv2d(C, C, 1), as NeMo's
    dw_striding (same module indexes: conv.0, conv.2 + conv.3, conv.5 + conv.6), but without its padding.
    """

    def __init__(self, num_features: int, d_model: int, channels: int = 0, factor: int = 4,
                 conv: str = "full") -> None:
        super().__init__()
        if conv not in _SUBSAMPLING_CONV_KINDS:
            raise ValueError(f"subsampling_conv must be one of {_SUBSAMPLING_CONV_KINDS}, got {conv!r}")
        k, s = _SUBSAMPLING_KERNEL, _SUBSAMPLING_STRIDE
        channels = channels or d_model
        layers: list[nn.Module] = []
        for i in range(_subsampling_convs(factor)):
            if i == 0 or conv == "full":
                layers.append(nn.Conv2d(1 if i == 0 else channels, channels, kernel_size=k, stride=s))
            else:
                layers += [nn.Conv2d(channels, channels, kernel_size=k, stride=s, groups=channels),
                           nn.Conv2d(channels, channels, kernel_size=1)]  # fmt: skip
            # in place: the convolution's output is not needed by its backward, and a fresh (B, C, T', F') tensor
            # (320 MB for conformer_l12's first one at 8 x 10 s) costs a pass of page writes
            layers.append(nn.ReLU(inplace=True))
        self.conv = nn.Sequential(*layers)
        sub_features = int(subsampled_lengths(torch.tensor(num_features), factor))
        if sub_features < 1:
            raise ValueError(f"num_features={num_features} is too small for subsampling by {factor} "
                             f"(need >= {min_input_frames(factor)})")  # fmt: skip
        self.out = nn.Linear(channels * sub_features, d_model)
        # Unnormalised fbank (about -15..7) through two ReLU convolutions gives activations that grow to O(100)
        # during training and drown every residual branch of the first layers; a LayerNorm keeps them O(1).
        self.out_norm = nn.LayerNorm(d_model)

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, F) -> (B, T', D)."""
        x = self.conv(x.unsqueeze(1))  # (B, C, T', F')
        b, c, t, f = x.shape
        return self.out_norm(self.out(x.transpose(1, 2).reshape(b, t, c * f)))  # (B, T', D)


def relative_positions(length: int, d_model: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Sinusoidal table of the relative positions length-1, ..., 0, ..., -(length-1).

    Returns:
        (2 * length - 1, D); row m encodes the relative position (length - 1 - m) = query index - key index.
    """
    pos = torch.arange(length - 1, -length, -1, device=device, dtype=torch.float32).unsqueeze(1)  # (2T-1, 1)
    inv_freq = torch.exp(
        torch.arange(0, d_model, 2, device=device, dtype=torch.float32) * (-math.log(_POSITION_BASE) / d_model)
    )
    table = torch.zeros(2 * length - 1, d_model, device=device, dtype=torch.float32)
    table[:, 0::2] = torch.sin(pos * inv_freq)
    table[:, 1::2] = torch.cos(pos * inv_freq)
    return table.to(dtype)


class RelPositionMultiheadAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL relative positions (content bias u, position bias v).

    score(i, j) = (q_i + u) . k_j + (q_i + v) . W_pos p(i - j), scaled by 1/sqrt(d_head).
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if d_model % num_heads != 0:
            raise ValueError(f"d_model={d_model} is not divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.d_head = d_model // num_heads
        self.in_proj = nn.Linear(d_model, 3 * d_model)
        self.linear_pos = nn.Linear(d_model, d_model, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(num_heads, self.d_head))
        self.pos_bias_v = nn.Parameter(torch.zeros(num_heads, self.d_head))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)
        self.out_proj = nn.Linear(d_model, d_model)
        self.dropout = MaskDropout(dropout)

    def forward(self, x: Tensor, pos_emb: Tensor, key_padding_mask: Tensor) -> Tensor:
        """
        Args:
            x: (B, T, D).
            pos_emb: (2T - 1, D) from `relative_positions`.
            key_padding_mask: (B, T) bool, True at padded frames.
        Returns:
            (B, T, D).
        """
        b, t, d = x.shape
        h, dh = self.num_heads, self.d_head
        q, k, v = self.in_proj(x).view(b, t, 3, h, dh).unbind(dim=2)  # each (B, T, H, dh)
        p = self.linear_pos(pos_emb).view(2 * t - 1, h, dh).transpose(0, 1)  # (H, 2T-1, dh)
        k = k.transpose(1, 2)  # (B, H, T, dh)
        v = v.transpose(1, 2)  # (B, H, T, dh)
        scale = 1.0 / math.sqrt(dh)  # folded into the queries: (B, H, T, dh) multiplies instead of (B, H, T, T)
        q_u = ((q + self.pos_bias_u) * scale).transpose(1, 2)  # (B, H, T, dh)
        q_v = ((q + self.pos_bias_v) * scale).transpose(1, 2)  # (B, H, T, dh)
        position = torch.matmul(q_v, p.transpose(-2, -1))  # (B, H, T, 2T-1), contiguous
        # Column m of `position` is relative position t-1-m; score (i, j) needs i - j, i.e. m = t - 1 - i + j, at
        # flat offset i * (2T-1) + (T-1-i+j) = (T-1) + i * (2T-2) + j of its (T, 2T-1) slice: a strided view, no
        # gather and no copy (Transformer-XL's relative shift).
        position = position.as_strided((b, h, t, t), (h * t * (2 * t - 1), t * (2 * t - 1), 2 * t - 2, 1),
                                       position.storage_offset() + t - 1)
        bias = torch.zeros(b, 1, 1, t, dtype=position.dtype, device=x.device)  # (B, 1, 1, T)
        bias = bias.masked_fill(key_padding_mask[:, None, None, :], float("-inf"))
        if self._fused_attention_applies() and q_u.dtype == k.dtype == position.dtype:
            # the position term as an additive mask of torch's fused attention (no (B, H, T, T) softmax written):
            # 0.3-0.5x the time of the three steps below on CPU, equal to float rounding (bench/RESULTS_decode.md)
            out = F.scaled_dot_product_attention(q_u, k, v, attn_mask=position + bias, scale=1.0)  # (B, H, T, dh)
        else:
            content = torch.matmul(q_u, k.transpose(-2, -1))  # (B, H, T, T)
            attn = self.dropout(torch.softmax(content + position + bias, dim=-1))  # (B, H, T, T)
            out = torch.matmul(attn, v)  # (B, H, T, dh)
        return self.out_proj(out.transpose(1, 2).reshape(b, t, d))  # (B, T, D)

    def _fused_attention_applies(self) -> bool:
        """Fused attention where nothing needs the position term's gradient (torch computes none for a mask: with
        one it falls back to the unfused math) and no dropout is drawn: decoding, validation, export checks. Traced
        exports (TorchScript, ONNX) keep the explicit graph that sherpa-onnx and older runtimes run."""
        if torch.is_grad_enabled() or (self.training and self.dropout.p > 0):
            return False
        return not (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export())


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics come from valid frames only, so padding does not shift them.

    Same parameters, buffers and eval-mode behaviour as nn.BatchNorm1d (checkpoints are interchangeable).
    """

    def forward(self, x: Tensor, key_padding_mask: Tensor | None = None) -> Tensor:
        """
        Args:
            x: (B, D, T).
            key_padding_mask: (B, T) bool, True at padded frames; None: every frame counts.
        Returns:
            (B, D, T).
        """
        if not self.training or key_padding_mask is None:
            return super().forward(x)
        valid = (~key_padding_mask).unsqueeze(1).to(torch.float32)  # (B, 1, T)
        count = valid.sum()
        x32 = x.float()
        mean = (x32 * valid).sum(dim=(0, 2)) / count  # (D,)
        var = ((x32 - mean[:, None]).square() * valid).sum(dim=(0, 2)) / count  # (D,) biased, as BatchNorm
        if self.track_running_stats and self.momentum is not None:
            with torch.no_grad():
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), self.momentum)
                self.num_batches_tracked.add_(1)
        out = (x32 - mean[:, None]) * torch.rsqrt(var[:, None] + self.eps)
        if self.affine:
            out = out * self.weight[:, None] + self.bias[:, None]
        return out.to(x.dtype)


class ConvolutionModule(nn.Module):
    """Pointwise conv + GLU -> depthwise conv (kernel K, 'same' padding) -> BatchNorm -> Swish -> pointwise conv.

    Padded frames are zeroed before the depthwise convolution and left out of the BatchNorm statistics.
    """

    def __init__(self, d_model: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"cnn_kernel must be odd to keep the frame count, got {kernel_size}")
        self.pointwise_in = nn.Conv1d(d_model, 2 * d_model, kernel_size=1)
        self.depthwise = nn.Conv1d(
            d_model, d_model, kernel_size=kernel_size, padding=kernel_size // 2, groups=d_model
        )
        self.norm = MaskedBatchNorm1d(d_model)
        self.pointwise_out = nn.Conv1d(d_model, d_model, kernel_size=1)

    def forward(self, x: Tensor, key_padding_mask: Tensor) -> Tensor:
        """
        Args:
            x: (B, T, D).
            key_padding_mask: (B, T) bool, True at padded frames (zeroed before the depthwise convolution).
        Returns:
            (B, T, D).
        """
        # The pointwise convolutions run as linear layers on (B, T, D) (same weights, squeezed): no transposes
        # around them, and a GEMM is faster than a kernel-1 convolution on CPU.
        x = F.glu(F.linear(x, self.pointwise_in.weight.squeeze(-1), self.pointwise_in.bias), dim=-1)  # (B, T, D)
        x = x.masked_fill(key_padding_mask.unsqueeze(-1), 0.0).transpose(1, 2)  # (B, D, T)
        x = F.silu(self.norm(self.depthwise(x), key_padding_mask)).transpose(1, 2)  # (B, T, D)
        return F.linear(x, self.pointwise_out.weight.squeeze(-1), self.pointwise_out.bias)  # (B, T, D)


class ConformerLayer(nn.Module):
    """Macaron layer: x + FF/2, + MHSA, + Conv, + FF/2, then LayerNorm (pre-norm inside each branch)."""

    def __init__(self, d_model: int, num_heads: int, ff_dim: int, cnn_kernel: int, dropout: float) -> None:
        super().__init__()
        self.ff_macaron = FeedForward(d_model, ff_dim, dropout)
        self.self_attn = RelPositionMultiheadAttention(d_model, num_heads, dropout)
        self.conv = ConvolutionModule(d_model, cnn_kernel)
        self.ff = FeedForward(d_model, ff_dim, dropout)
        self.norm_ff_macaron = nn.LayerNorm(d_model)
        self.norm_mha = nn.LayerNorm(d_model)
        self.norm_conv = nn.LayerNorm(d_model)
        self.norm_ff = nn.LayerNorm(d_model)
        self.norm_final = nn.LayerNorm(d_model)
        self.dropout = MaskDropout(dropout)

    def forward(self, x: Tensor, pos_emb: Tensor, key_padding_mask: Tensor) -> Tensor:
        """x: (B, T, D), pos_emb: (2T - 1, D), key_padding_mask: (B, T) -> (B, T, D)."""
        x = x + _MACARON_SCALE * self.dropout(self.ff_macaron(self.norm_ff_macaron(x)))
        x = x + self.dropout(self.self_attn(self.norm_mha(x), pos_emb, key_padding_mask))
        x = x + self.dropout(self.conv(self.norm_conv(x), key_padding_mask))
        x = x + _MACARON_SCALE * self.dropout(self.ff(self.norm_ff(x)))
        return self.norm_final(x)


class Conformer(nn.Module):
    """Conformer encoder: (B, T, F) features -> (B, T', D) with T' = subsampled_lengths(T, subsampling_factor)."""

    def __init__(
        self,
        num_features: int,
        d_model: int,
        num_heads: int,
        ff_dim: int,
        num_layers: int,
        cnn_kernel: int,
        dropout: float,
        subsampling_channels: int = 0,
        input_norm: str = "none",
        subsampling_factor: int = 4,
        half_rate_layers: list[int] | tuple[int, ...] = (),
        subsampling_conv: str = "full",
    ) -> None:
        super().__init__()
        if input_norm not in _INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {_INPUT_NORMS}, got {input_norm!r}")
        self.input_norm = input_norm
        self.num_features = num_features
        self.d_model = d_model
        self.subsampling_factor = subsampling_factor
        self.min_input_frames = min_input_frames(subsampling_factor)
        self.frames_fn = EncoderFrames(subsampling_factor)  # output_lengths, picklable without the module
        self.subsampling = Conv2dSubsampling(num_features, d_model, subsampling_channels, subsampling_factor,
                                             subsampling_conv)
        self.input_dropout = MaskDropout(dropout)
        self.layers = nn.ModuleList(
            ConformerLayer(d_model, num_heads, ff_dim, cnn_kernel, dropout) for _ in range(num_layers)
        )
        half = tuple(int(i) for i in half_rate_layers)
        if half and not (len(half) == 2 and 0 <= half[0] < half[1] < num_layers):
            raise ValueError(f"half_rate_layers must be [] or [first, end] with 0 <= first < end < num_layers "
                             f"({num_layers}), got {list(half_rate_layers)}")  # fmt: skip
        self.half_rate_layers = half
        if half:
            self.downsample = PairDownsample()
            self.upsample = BypassUpsample(d_model)

    @classmethod
    def from_config(cls, cfg: ConformerConfig) -> "Conformer":
        return cls(
            num_features=cfg.num_features,
            d_model=cfg.d_model,
            num_heads=cfg.num_heads,
            ff_dim=cfg.ff_dim,
            num_layers=cfg.num_layers,
            cnn_kernel=cfg.cnn_kernel,
            dropout=cfg.dropout,
            subsampling_channels=cfg.subsampling_channels,
            input_norm=cfg.input_norm,
            subsampling_factor=cfg.subsampling_factor,
            half_rate_layers=cfg.half_rate_layers,
            subsampling_conv=cfg.subsampling_conv,
        )

    def output_lengths(self, x_lens: Tensor) -> Tensor:
        """x_lens: (B,) input frames -> (B,) encoder frames (the same as `self.frames_fn`, which the data filter and
        the loss's frame counts use)."""
        return self.frames_fn(x_lens)

    def forward(self, x: Tensor, x_lens: Tensor) -> tuple[Tensor, Tensor]:
        """
        Args:
            x: (B, T, F) features, padded after each utterance's x_lens frames.
            x_lens: (B,) int64 valid frames, each >= self.min_input_frames (7 at factor 4, 15 at 8) and <= T.
        Returns:
            out: (B, T', D), zero at padded frames; T' = self.output_lengths(T).
            out_lens: (B,) self.output_lengths(x_lens).
        """
        if x.ndim != 3 or x.size(-1) != self.num_features:
            raise ValueError(f"expected x of shape (B, T, {self.num_features}), got {tuple(x.shape)}")
        if x_lens.shape != (x.size(0),):
            raise ValueError(f"expected x_lens of shape ({x.size(0)},), got {tuple(x_lens.shape)}")
        if int(x_lens.min()) < self.min_input_frames or int(x_lens.max()) > x.size(1):
            raise ValueError(
                f"x_lens must lie in [{self.min_input_frames}, {x.size(1)}] (T of x); got "
                f"min {int(x_lens.min())}, max {int(x_lens.max())}"
            )
        if self.input_norm == "utterance":
            x = utterance_norm(x, x_lens)
        x = self.subsampling(x)  # (B, T', D)
        out_lens = self.output_lengths(x_lens)
        mask = padding_mask(out_lens, x.size(1))  # (B, T')
        pos_emb = self.input_dropout(relative_positions(x.size(1), self.d_model, x.device, x.dtype))
        x = self.input_dropout(x * math.sqrt(self.d_model))
        first, end = self.half_rate_layers or (-1, -1)
        full_rate = (x, mask, pos_emb)
        for i, layer in enumerate(self.layers):
            if i == first:  # to half rate: (B, T', D) -> (B, ceil(T' / 2), D)
                full_rate = (x, mask, pos_emb)
                x, half_lens = self.downsample(x, out_lens)
                mask = padding_mask(half_lens, x.size(1))
                pos_emb = self.input_dropout(relative_positions(x.size(1), self.d_model, x.device, x.dtype))
            elif i == end:  # back to full rate
                skip, mask, pos_emb = full_rate
                x = self.upsample(x, skip)
            x = layer(x, pos_emb, mask)
        return x.masked_fill(mask.unsqueeze(-1), 0.0), out_lens
