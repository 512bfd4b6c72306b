"""The Conformer's feed-forward module, Linear -> Swish -> Dropout -> Linear, with a training step that keeps a
quarter of the activations autograd would.

Autograd keeps two (B, T, ff_dim) tensors of each feed-forward for the backward: the first Linear's output h (for
Swish's gradient) and Swish's dropped-out output (the second Linear's input, for its weight gradient); with dropout
on a CPU also torch's float noise. `FeedForward` in training keeps h and, with dropout, a one-byte mask, and
recomputes silu(h) * mask * scale in the backward (one elementwise pass over h). conformer_l12 at the pruned RNN-T
paper's batch (8 x 10 s) has 24 feed-forwards of 16 MB per such tensor: the step's live peak falls by about 0.4 GB
(bench/RESULTS_train_step.md). The function is unchanged: the same dropout draws (`asr.models.dropout`'s calls), the
same outputs, gradients equal to autograd's to float rounding (its weight gradient is the same product, rounded in
another order); tests/models/test_feed_forward.py checks it. Under autocast, on other devices than the CPU with
dropout, and without gradients it runs the plain modules.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from asr.models.dropout import MaskDropout, draw_noise


class _SwishDropoutLinear(torch.autograd.Function):
    """out = linear(dropout(silu(h)), weight, bias), keeping h and the dropout mask (not silu(h)) for backward."""

    @staticmethod
    def forward(ctx, h: Tensor, weight: Tensor, bias: Tensor | None, p: float) -> Tensor:
        s = F.silu(h)  # (..., ff_dim)
        mask = scale = None
        if p > 0.0:
            noise, mask, scale = draw_noise(s, p)
            s = s * noise
            del noise
        out = F.linear(s, weight, bias)  # (..., D)
        ctx.save_for_backward(h, weight, mask)
        ctx.scale, ctx.has_bias = scale, bias is not None
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        h, weight, mask = ctx.saved_tensors
        need_h, need_weight, need_bias, _ = ctx.needs_input_grad
        d_out, d_ff = weight.shape
        grad_2d = grad.reshape(-1, d_out)  # (N, D)
        grad_h = grad_weight = grad_bias = None
        if need_weight:
            s = F.silu(h)  # recomputed: the second Linear's input
            if mask is not None:
                s = s.mul_(mask).mul_(ctx.scale)
            grad_weight = s.reshape(-1, d_ff).t().mm(grad_2d).t()  # (D, ff_dim), as autograd's addmm backward
            del s
        if need_bias:
            grad_bias = grad_2d.sum(0)  # (D,)
        if need_h:
            grad_s = grad.matmul(weight)  # (..., ff_dim)
            if mask is not None:
                grad_s = grad_s.mul_(mask).mul_(ctx.scale)
            grad_h = torch.ops.aten.silu_backward(grad_s, h)
        return grad_h, grad_weight, grad_bias, None


class FeedForward(nn.Module):
    """Linear -> Swish -> Dropout -> Linear (parameter names net.0 / net.3, as an nn.Sequential of the four)."""

    def __init__(self, d_model: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_model, ff_dim), nn.SiLU(), MaskDropout(dropout), nn.Linear(ff_dim, d_model)
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, D) -> (B, T, D)."""
        first, _, dropout, second = self.net
        p = dropout.p if self.training else 0.0
        if (not torch.is_grad_enabled() or torch.is_autocast_enabled(x.device.type) or p == 1.0
                or (p > 0.0 and x.device.type != "cpu") or torch.jit.is_tracing() or torch.jit.is_scripting()):
            return self.net(x)
        return _SwishDropoutLinear.apply(first(x), second.weight, second.bias, p)
