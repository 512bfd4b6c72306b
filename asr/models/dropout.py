"""Dropout that keeps a one-byte mask for its backward instead of a full-precision noise tensor.

On CPU, torch's dropout is composite: it draws `noise = bernoulli(1 - p) / (1 - p)` in the input's dtype, returns
`x * noise`, and autograd keeps `noise` (4 bytes an element in float32) until the backward: conformer_l12 at the
pruned RNN-T paper's batch (8 x 10 s) keeps about 0.75 GB of such noise at once (each layer's two feed-forward
(B, T, 2048) dropouts, its (B, H, T, T) attention dropout and its four residual ones), and the step's live peak
falls from 4999 to 4439 MB with this module (bench/RESULTS_train_step.md). `MaskDropout` draws the same
noise with the same calls (so the random stream, the outputs and the gradients are bit for bit those of
nn.Dropout), keeps `noise != 0` (1 byte an element) and rebuilds the gradient as `grad * mask * scale`, where scale
is 1 / (1 - p) rounded as the noise was. In eval mode and with p = 0 it is the identity, as nn.Dropout, so export
and decoding see no difference. On other devices it is nn.Dropout: CUDA's dropout is one fused kernel that already
keeps a one-byte mask.
"""

import torch
from torch import Tensor, nn


def draw_noise(x: Tensor, p: float) -> tuple[Tensor, Tensor, Tensor]:
    """torch's CPU dropout noise for x, drawn by its calls in its order: noise (x's shape and dtype, 0 or
    1 / (1 - p)), mask = noise != 0 (bool), scale = the non-zero value (0-dim, computed by the same division)."""
    noise = torch.empty_like(x).bernoulli_(1 - p)
    noise.div_(1 - p)
    return noise, noise.ne(0), torch.ones((), dtype=x.dtype, device=x.device).div_(1 - p)


class _MaskDropoutFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, p: float) -> Tensor:
        noise, mask, ctx.scale = draw_noise(x, p)
        ctx.save_for_backward(mask)
        return x * noise

    @staticmethod
    def backward(ctx, grad: Tensor):
        (mask,) = ctx.saved_tensors
        # grad * 1 is exact, so this rounds once, as grad * noise does (zeros may differ in sign only)
        return grad.mul(mask).mul_(ctx.scale), None


class MaskDropout(nn.Dropout):
    """nn.Dropout with the same outputs, gradients and random stream, and a quarter of its saved memory (float32).

    Args of nn.Dropout; `inplace` is not supported (the module never writes its input).
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__(p, inplace=False)

    def forward(self, x: Tensor) -> Tensor:
        """x: any shape -> the same shape."""
        if not self.training or self.p == 0.0:
            return x
        if self.p == 1.0 or x.device.type != "cpu" or not x.requires_grad or not torch.is_grad_enabled():
            return super().forward(x)
        return _MaskDropoutFunction.apply(x, self.p)
