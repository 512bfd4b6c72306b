"""Where a transducer training step spends its time and FLOPs: helpers of bench/bench_train_step.py --compare tree.

Runs against any checkout of `asr` that has the same public names (asr.models.build_model, asr.loss's functions,
asr.train.step.compute_batch_loss), so today's code and an older tree are measured alike.

- `RegionTimer`: forward and backward wall time of named regions (modules and the loss functions). A region's
  forward is the time between entering and leaving it; its backward the time between the gradient reaching its
  outputs and the last of its inputs' and parameters' gradients being computed (identity autograd Functions mark
  the tensors; CPU autograd runs one node at a time, so the regions' backward intervals do not overlap except where
  nested). Regions are aggregated into categories (subsampling, attention, convolution, feed-forward, ...).
- `count_flops`: FLOPs of forward + backward with torch.utils.flop_counter, the backward of a grouped convolution
  counted per group (torch counts its weight gradient as if every group saw every input channel).
- `front_end_flops`: forward FLOPs of an encoder alone and of its subsampling (bench_train_step.py --front-end-flops).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import torch
from torch import Tensor, nn


class _Mark(torch.autograd.Function):
    """Identity; its backward stamps the time the gradient passed into `stamps`."""

    @staticmethod
    def forward(ctx, x: Tensor, stamps: list) -> Tensor:
        ctx.stamps = stamps
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        ctx.stamps.append(time.perf_counter())
        return grad, None


def _mark(x, stamps: list):
    if isinstance(x, Tensor) and x.requires_grad and x.is_floating_point():
        return _Mark.apply(x, stamps)
    return x


class _Call:
    """One region call: forward seconds and the backward stamps (outputs' gradients in, inputs' gradients out)."""

    def __init__(self, category: str) -> None:
        self.category = category
        self.forward = 0.0
        self.grad_out: list[float] = []  # stamps of the gradient reaching an output
        self.grad_in: list[float] = []  # stamps of an input's or a parameter's gradient being done

    def backward(self) -> float:
        return max(self.grad_in) - min(self.grad_out) if self.grad_out and self.grad_in else 0.0


class RegionTimer:
    """Times modules and functions in one step; `table()` gives {category: (forward s, backward s)}."""

    def __init__(self) -> None:
        self.calls: list[_Call] = []
        self._handles: list = []
        self._patched: list[tuple[object, str, Callable]] = []
        self._param_call: dict[int, _Call] = {}

    def add_module(self, module: nn.Module, category: str) -> None:
        calls = self.calls
        timer = self

        def pre(mod, args, kwargs):
            call = _Call(category)
            calls.append(call)
            mod._region_call = call
            for p in mod.parameters():
                timer._param_call[id(p)] = call
            call.start = time.perf_counter()
            return tuple(_mark(a, call.grad_in) for a in args), {k: _mark(v, call.grad_in) for k, v in kwargs.items()}

        def post(mod, args, kwargs, out):
            call = mod._region_call
            call.forward += time.perf_counter() - call.start
            if isinstance(out, tuple):
                return tuple(_mark(o, call.grad_out) for o in out)
            return _mark(out, call.grad_out)

        self._handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        self._handles.append(module.register_forward_hook(post, with_kwargs=True))
        for p in module.parameters():
            if p.requires_grad:
                self._handles.append(p.register_post_accumulate_grad_hook(self._param_done))

    def _param_done(self, p: Tensor) -> None:
        call = self._param_call.get(id(p))
        if call is not None:
            call.grad_in.append(time.perf_counter())

    def add_function(self, owner: object, name: str, category: str) -> None:
        """Wraps owner.name (e.g. the asr.loss module's rnnt_loss_pruned) as a region."""
        fn = getattr(owner, name)
        calls = self.calls

        def wrapped(*args, **kwargs):
            call = _Call(category)
            calls.append(call)
            args = tuple(_mark(a, call.grad_in) for a in args)
            kwargs = {k: _mark(v, call.grad_in) for k, v in kwargs.items()}
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            call.forward += time.perf_counter() - start
            if isinstance(out, tuple):  # (loss, (px_grad, py_grad)) or (am_pruned, lm_pruned)
                return tuple(_mark(o, call.grad_out) for o in out)
            return _mark(out, call.grad_out)

        setattr(owner, name, wrapped)
        self._patched.append((owner, name, fn))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        for owner, name, fn in self._patched:
            setattr(owner, name, fn)
        self._handles, self._patched = [], []

    def table(self) -> dict[str, tuple[float, float]]:
        out: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for call in self.calls:
            out[call.category][0] += call.forward
            out[call.category][1] += call.backward()
        return {k: (v[0], v[1]) for k, v in out.items()}


def instrument_transducer(model: nn.Module) -> RegionTimer:
    """Regions of a Transducer (asr.models): subsampling; attention, convolution and feed-forward summed over the
    blocks; the simple loss (its two projections and rnnt_loss_smoothed); the pruned loss (prune ranges, pruning,
    the joiner and rnnt_loss_pruned); the decoder."""
    import asr.loss

    timer = RegionTimer()
    enc = model.encoder
    timer.add_module(enc.subsampling, "subsampling")
    for layer in enc.layers:
        timer.add_module(layer.self_attn, "attention")
        timer.add_module(layer.conv, "convolution")
        timer.add_module(layer.ff_macaron, "feed-forward")
        timer.add_module(layer.ff, "feed-forward")
    timer.add_module(model.decoder, "decoder")
    timer.add_module(model.simple_am_proj, "simple loss")
    timer.add_module(model.simple_lm_proj, "simple loss")
    timer.add_function(asr.loss, "rnnt_loss_smoothed", "simple loss")
    timer.add_function(asr.loss, "get_rnnt_prune_ranges", "pruned loss")
    timer.add_function(asr.loss, "do_rnnt_pruning", "pruned loss")
    timer.add_module(model.joiner.encoder_proj, "pruned loss")
    timer.add_module(model.joiner.decoder_proj, "pruned loss")
    timer.add_module(model.joiner, "pruned loss")
    timer.add_function(asr.loss, "rnnt_loss_pruned", "pruned loss")
    return timer


def _conv_backward_flop_per_group(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation,
                                  transposed, _output_padding, groups, output_mask, out_shape, **kwargs) -> int:
    """torch's convolution_backward count with the weight gradient counted per group (divided by `groups`)."""
    from torch.utils.flop_counter import conv_flop_count

    def t(shape):
        return [shape[1], shape[0]] + list(shape[2:])

    flops = 0
    if output_mask[0]:
        flops += conv_flop_count(grad_out_shape, w_shape, list(out_shape[0]), not transposed)
    if output_mask[1]:
        a, b = (grad_out_shape, x_shape) if transposed else (x_shape, grad_out_shape)
        flops += conv_flop_count(t(a), t(b), t(list(out_shape[1])), transposed=False) // groups
    return flops


def count_flops(forward: Callable[[], object], backward: Callable[[object], None]) -> dict[str, int]:
    """FLOPs of `out = forward()` and of `backward(out)`, and the forward FLOPs of the encoder and its subsampling:
    {"forward", "backward", "encoder", "subsampling"}."""
    from torch.utils.flop_counter import FlopCounterMode

    def counter() -> FlopCounterMode:
        return FlopCounterMode(display=False,
                               custom_mapping={torch.ops.aten.convolution_backward: _conv_backward_flop_per_group})

    fwd, bwd = counter(), counter()
    with fwd:
        out = forward()
    with bwd:
        backward(out)
    result = {"forward": fwd.get_total_flops(), "backward": bwd.get_total_flops()}
    for key, ops in fwd.get_flop_counts().items():
        for name in ("encoder", "subsampling"):
            if key.endswith("." + name):
                result[name] = sum(ops.values())
    return result


@torch.no_grad()
def front_end_flops(encoder: nn.Module, x: Tensor, x_lens: Tensor) -> dict[str, int]:
    """Forward FLOPs of `encoder(x, x_lens)` (an asr.models.Conformer) and of its `subsampling` module (convolutions,
    Linear and LayerNorm): {"encoder", "subsampling"}.

    Args:
        x: (B, T, F) features.
        x_lens: (B,) valid frames.
    """
    flops = count_flops(lambda: encoder(x, x_lens), lambda out: None)
    return {"encoder": flops["forward"], "subsampling": flops["subsampling"]}


def matmul_peak(n: int = 4096, repeats: int = 3) -> float:
    """FLOP/s of the best of `repeats` fp32 (n, n) @ (n, n) matmuls here."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best
