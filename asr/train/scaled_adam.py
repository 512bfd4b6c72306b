"""ScaledAdam: icefall's optimiser for its Zipformer and later transducer recipes, in our own code.

What it does differently from Adam (Yao et al. 2023, "Zipformer", section 3.4; icefall's `optim.py`):

- **Relative updates.** The step of every non-scalar tensor is Adam's normalised direction times the tensor's own
  root-mean-square value, so each tensor changes by about `lr` of its size per step whatever its scale (a
  LayerNorm gain of 1.0 and a weight matrix of RMS 0.05 move alike), and the learning rate needs no
  dependence on the model's width.
- **A learnt scale.** Because of the relative updates a tensor's overall size would hardly change, so its
  log-scale is learnt as one extra scalar per tensor (its gradient is `sum(p * grad)`), with Adam at
  `lr * scalar_lr_scale`, updated every `size_update_period` steps and held within
  [param_min_rms, param_max_rms].
- **Scalars** (one-element tensors) take plain Adam steps at `lr * scalar_lr_scale`, clamped to
  [-scalar_max, scalar_max].
- **Clipping by history.** The gradient norm, each tensor's gradient weighted by its RMS (the norm of the
  relative change the gradient asks for), is clipped to `clipping_scale` times the median of the last
  `clipping_update_period` batches' norms, so no absolute threshold has to be tuned for the loss's scale.

Momentum follows icefall: `delta = beta1 * delta + (1 - beta1) * update`, no bias correction of the first
moment (the schedule's warm-up covers the first steps), the second moment bias-corrected. All state is
per parameter and in `state_dict()`, so a resumed run continues exactly; the clipping history lives in the first
parameter's state. With DDP every rank holds the same all-reduced gradients, so every rank clips alike.

Use it with the Eden schedule and without the trainer's own clipping: `optim=scaled_adam` (conf/optim).

`foreach=True` (the default) steps all tensors of a group together with `torch._foreach_*` ops, as torch's own
Adam does, instead of a dozen Python-issued ops per tensor: on CUDA those are multi-tensor kernels (a few launches
per group instead of thousands per step); on the CPU they are a C++ loop over the tensors, and the demo model's
step (218 tensors) takes 13.9 ms instead of 20.5 (torch's foreach Adam: 10.9), 0.945x for the whole training step
(`bench/bench_train_step.py --compare foreach`). `foreach=False` is the per-tensor loop, the reference the tests
compare it with. The foreach path reads the per-tensor rates to the host once per step (and the scale steps once
per `size_update_period`), where the clipping already reads the gradient norm.
"""

import math
from collections.abc import Iterable

import torch


class ScaledAdam(torch.optim.Optimizer):
    def __init__(
        self,
        params: Iterable[torch.nn.Parameter] | Iterable[dict],
        lr: float = 0.045,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-8,
        clipping_scale: float = 2.0,
        scalar_lr_scale: float = 0.1,
        param_min_rms: float = 1e-5,
        param_max_rms: float = 3.0,
        scalar_max: float = 10.0,
        size_update_period: int = 4,
        clipping_update_period: int = 100,
        foreach: bool = True,
    ):
        if not 0.0 <= betas[0] < 1.0 or not 0.0 <= betas[1] < 1.0:
            raise ValueError(f"ScaledAdam betas must be in [0, 1), got {betas}")
        if not 0.0 < param_min_rms < param_max_rms:
            raise ValueError(
                f"ScaledAdam needs 0 < param_min_rms < param_max_rms, got {param_min_rms}, {param_max_rms}"
            )
        if size_update_period < 1 or clipping_update_period < 1:
            raise ValueError("ScaledAdam's size_update_period and clipping_update_period must be >= 1")
        if clipping_scale is not None and clipping_scale <= 0:
            raise ValueError(f"ScaledAdam clipping_scale must be > 0 (or None: no clipping), got {clipping_scale}")
        defaults = dict(
            lr=lr, betas=tuple(betas), eps=eps, clipping_scale=clipping_scale, scalar_lr_scale=scalar_lr_scale,
            param_min_rms=param_min_rms, param_max_rms=param_max_rms, scalar_max=scalar_max,
            size_update_period=size_update_period, clipping_update_period=clipping_update_period,
        )  # fmt: skip
        super().__init__(params, defaults)
        self.foreach = foreach
        self.last_clip_factor = 1.0  # the factor the last step multiplied the gradients by (for logging)

    # ------------------------------------------------------------------------------------------------ state
    def _state(self, p: torch.Tensor, group: dict) -> dict:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["delta"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            if p.numel() > 1:
                state["param_rms"] = _rms(p)
                state["scale_grads"] = torch.zeros(group["size_update_period"], dtype=p.dtype, device=p.device)
                state["scale_exp_avg_sq"] = torch.zeros((), dtype=p.dtype, device=p.device)
        return state

    def _with_grads(self) -> list[tuple[dict, torch.Tensor]]:
        pairs = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("ScaledAdam does not support sparse gradients")
                pairs.append((group, p))
        return pairs

    # --------------------------------------------------------------------------------------------- clipping
    def _clip_factor(self, pairs: list[tuple[dict, torch.Tensor]]) -> float:
        """The factor (<= 1) the gradients are multiplied by this step; records this step's norm."""
        group, first = pairs[0]
        clipping_scale = group["clipping_scale"]
        if clipping_scale is None:
            return 1.0
        if self.foreach:
            grad_norms = torch.stack(torch._foreach_norm([_at_least_float32(p.grad) for _, p in pairs]))
            weights = torch.stack([self._state(p, g)["param_rms"] if p.numel() > 1 else _ONE.to(p.device)
                                   for g, p in pairs])  # fmt: skip
            sumsq = (grad_norms.double() * weights.double()).pow(2).sum()
        else:
            sumsq = torch.zeros((), dtype=torch.float64, device=first.device)
            for g, p in pairs:
                state = self._state(p, g)
                grad_sumsq = _at_least_float32(p.grad).pow(2).sum()
                sumsq = sumsq + (grad_sumsq if p.numel() == 1 else grad_sumsq * state["param_rms"] ** 2)
        norm = float(sumsq.sqrt())
        state = self.state[first]
        period = group["clipping_update_period"]
        if "model_norms" not in state:
            state["model_norms"] = torch.zeros(period, dtype=torch.float64)
            state["num_norms"] = 0
        if not math.isfinite(norm):
            return 1.0  # the trainer skips steps with non-finite gradients; keep them out of the history
        history = state["model_norms"]
        history[state["num_norms"] % period] = norm
        state["num_norms"] += 1
        seen = history[: min(state["num_norms"], period)]
        threshold = clipping_scale * float(seen.median())
        if norm <= threshold or norm == 0.0:
            return 1.0
        return threshold / norm

    # ------------------------------------------------------------------------------------------------- step
    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        pairs = self._with_grads()
        if not pairs:
            return loss
        factor = self._clip_factor(pairs)
        self.last_clip_factor = factor
        if self.foreach:
            self._step_foreach(pairs, factor)
            return loss
        for group, p in pairs:
            grad = p.grad if factor == 1.0 else p.grad * factor
            state = self._state(p, group)
            if p.numel() == 1:
                self._step_scalar(group, p, grad, state)
            else:
                self._step_tensor(group, p, grad, state)
            state["step"] += 1
        return loss

    @staticmethod
    def _adam_denominator(group: dict, grad: torch.Tensor, state: dict) -> torch.Tensor:
        beta2 = group["betas"][1]
        exp_avg_sq = state["exp_avg_sq"]
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        bias_correction2 = 1 - beta2 ** (state["step"] + 1)
        return (exp_avg_sq / bias_correction2).sqrt_().add_(group["eps"])

    def _step_scalar(self, group: dict, p: torch.Tensor, grad: torch.Tensor, state: dict) -> None:
        beta1 = group["betas"][0]
        denom = self._adam_denominator(group, grad, state)
        delta = state["delta"]
        delta.mul_(beta1).addcdiv_(grad, denom, value=-group["lr"] * group["scalar_lr_scale"] * (1 - beta1))
        p.add_(delta).clamp_(-group["scalar_max"], group["scalar_max"])

    def _step_tensor(self, group: dict, p: torch.Tensor, grad: torch.Tensor, state: dict) -> None:
        beta1 = group["betas"][0]
        step, period = state["step"], group["size_update_period"]
        delta = state["delta"]
        delta.mul_(beta1)

        # The scale: sum(p * grad) is the gradient of the loss w.r.t. the tensor's log-scale.
        scale_grads = state["scale_grads"]
        scale_grads[step % period] = (p * grad).sum()
        if step % period == period - 1:
            state["param_rms"] = _rms(p)
            scale_step, scale_exp_avg_sq = _scale_step(
                group, step, scale_grads.unsqueeze(0), state["scale_exp_avg_sq"].unsqueeze(0),
                state["param_rms"].unsqueeze(0),
            )  # fmt: skip
            state["scale_exp_avg_sq"].copy_(scale_exp_avg_sq[0])
            delta.add_(p * scale_step[0].to(p.dtype), alpha=1 - beta1)

        # The direction: Adam's, times the tensor's RMS.
        denom = self._adam_denominator(group, grad, state)
        alpha = state["param_rms"].clamp(min=group["param_min_rms"]) * (-group["lr"] * (1 - beta1))
        delta.add_(grad / denom * alpha.to(p.dtype))
        p.add_(delta)

    # ---------------------------------------------------------------------------------------- foreach path
    def _step_foreach(self, pairs: list[tuple[dict, torch.Tensor]], factor: float) -> None:
        """The per-tensor steps of `_step_tensor`, for all tensors of a group and step count at once."""
        buckets: dict[tuple[int, int, torch.device, torch.dtype], list[torch.Tensor]] = {}
        for group, p in pairs:
            state = self._state(p, group)
            if p.numel() == 1:  # scalars are few: the per-tensor path
                grad = p.grad if factor == 1.0 else p.grad * factor
                self._step_scalar(group, p, grad, state)
                state["step"] += 1
                continue
            key = (id(group), state["step"], p.device, p.dtype)
            buckets.setdefault(key, []).append(p)
        groups = {id(group): group for group in self.param_groups}
        for (group_id, step, _, _), params in buckets.items():
            self._step_tensors(groups[group_id], step, params, factor)

    def _step_tensors(self, group: dict, step: int, params: list[torch.Tensor], factor: float) -> None:
        beta1, beta2 = group["betas"]
        lr, period = group["lr"], group["size_update_period"]
        states = [self.state[p] for p in params]
        grads = [p.grad for p in params]
        if factor != 1.0:
            grads = torch._foreach_mul(grads, factor)
        deltas = [s["delta"] for s in states]
        torch._foreach_mul_(deltas, beta1)

        for p, g, s in zip(params, grads, states):  # sum(p * grad): one dot product per tensor
            torch.dot(p.reshape(-1), g.reshape(-1), out=s["scale_grads"][step % period])
        if step % period == period - 1:
            norms = torch.stack(torch._foreach_norm([_at_least_float32(p) for p in params]))
            numels = torch.tensor([float(p.numel()) for p in params], dtype=norms.dtype, device=norms.device)
            rms = norms / numels.sqrt()
            scale_grads = torch.stack([s["scale_grads"] for s in states])  # (N, period)
            scale_exp_avg_sq = torch.stack([s["scale_exp_avg_sq"] for s in states])  # (N,)
            scale_step, scale_exp_avg_sq = _scale_step(group, step, scale_grads, scale_exp_avg_sq, rms)  # (N,), (N,)
            for s, r, v in zip(states, rms.unbind(), scale_exp_avg_sq.unbind()):
                s["param_rms"] = r
                s["scale_exp_avg_sq"].copy_(v)
            steps = (scale_step * (1 - beta1)).to(params[0].dtype).unbind()
            torch._foreach_add_(deltas, torch._foreach_mul(params, list(steps)))

        exp_avg_sqs = [s["exp_avg_sq"] for s in states]
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1 - beta2)
        # grad / (sqrt(v / bc) + eps) = sqrt(bc) grad / (sqrt(v) + eps sqrt(bc)): one pass over v fewer
        root_bc = math.sqrt(1 - beta2 ** (step + 1))
        denoms = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_add_(denoms, group["eps"] * root_bc)
        param_rms = torch.stack([s["param_rms"] for s in states])
        alphas = param_rms.clamp(min=group["param_min_rms"]) * (-lr * (1 - beta1) * root_bc)
        torch._foreach_addcdiv_(deltas, grads, denoms, alphas.cpu())  # per-tensor rates: one host read
        torch._foreach_add_(params, deltas)
        for s in states:
            s["step"] += 1


_ONE = torch.ones(())


def _scale_step(group: dict, step: int, scale_grads: torch.Tensor, scale_exp_avg_sq: torch.Tensor,
                rms: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The learnt scale's step of N tensors, taken once per size_update_period (at step % period == period - 1),
    of the size of `period` ordinary ones: Adam on the log-scale, whose gradient is sum(p * grad); a tensor whose
    RMS is below param_min_rms may only grow, above param_max_rms only shrink. Tensors throughout: no host sync.

    Args:
        group: the parameter group (lr, betas, eps, scalar_lr_scale, param_min_rms, param_max_rms, period).
        step: the tensors' step count.
        scale_grads: (N, period) sum(p * grad) of each of the period's steps.
        scale_exp_avg_sq: (N,) the scale gradients' second moment so far.
        rms: (N,) the tensors' RMS now.
    Returns:
        scale_step (N,), by which each tensor's log-scale moves (delta += (1 - beta1) * p * scale_step), and the
        updated scale_exp_avg_sq (N,).
    """
    beta2, period = group["betas"][1], group["size_update_period"]
    beta2_period = beta2**period
    scale_exp_avg_sq = scale_exp_avg_sq * beta2_period + scale_grads.pow(2).mean(1) * (1 - beta2_period)
    bias_correction2 = 1 - beta2_period ** (step // period + 1)
    denom = (scale_exp_avg_sq / bias_correction2).sqrt() + group["eps"]
    scale_step = -group["lr"] * group["scalar_lr_scale"] * scale_grads.sum(1) / denom  # (N,)
    scale_step = torch.where(rms < group["param_min_rms"], scale_step.clamp(min=0.0), scale_step)  # grow
    scale_step = torch.where(rms > group["param_max_rms"], scale_step.clamp(max=0.0), scale_step)  # shrink
    return scale_step, scale_exp_avg_sq


def _rms(p: torch.Tensor) -> torch.Tensor:
    """Root-mean-square of a tensor, as a 0-dim tensor (float32 or wider) on its device."""
    return _at_least_float32(p.detach()).pow(2).mean().sqrt()


def _at_least_float32(x: torch.Tensor) -> torch.Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))
