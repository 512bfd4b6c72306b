"""The fp16 guard: notices a collapsing grad scale, names the modules that overflow, and stops a diverged run.

With fp16, torch's GradScaler halves its scale at every batch whose gradients hold inf/nan and skips that step;
it doubles it after `growth_interval` (2000) clean batches. A model that keeps overflowing (icefall #697, #1462,
#1751, #1946) drives the scale towards 0 while the log shows nothing but a loss that stops improving.
`GradScaleGuard.check` is called after each `scaler.update()`:

- below `warn_scale` it logs a warning, switches on forward hooks on every module and gradient hooks on every
  parameter that log which of them produce inf/nan (hooks cost time, so only then), and asks once for a diagnostic
  checkpoint (`Verdict.save_diagnostic`);
- below `stop_scale` it asks the loop to stop (`Verdict.stop`, with `message`): the run has diverged;
- every `grow_period` batches a scale below `grow_below` is doubled (icefall's train.py does the same every 100
  batches below 8): GradScaler alone regrows it only after 2000 clean batches, and a scale stuck low underflows
  small gradients to 0.
"""

import logging
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

log = logging.getLogger("asr.train")


@dataclass
class Verdict:
    save_diagnostic: bool = False  # write a diagnostic checkpoint now (asked once per run)
    stop: bool = False  # the scale collapsed: stop training
    message: str = ""


class GradScaleCollapsed(RuntimeError):
    """The fp16 grad scale fell below trainer.fp16_stop_scale: the run diverged."""


def _nonfinite(x: object) -> bool:
    if isinstance(x, Tensor):
        return x.is_floating_point() and not bool(torch.isfinite(x).all())
    if isinstance(x, (tuple, list)):
        return any(_nonfinite(t) for t in x)
    if isinstance(x, dict):
        return any(_nonfinite(t) for t in x.values())
    return False


@dataclass
class InfCheckHooks:
    """Forward hooks on every module and gradient hooks on every parameter of `model`, recording (and logging
    the first time) the names of those whose output or gradient holds inf/nan."""

    model: nn.Module
    max_logged: int = 20  # a diverged model overflows everywhere: the first few names say where it starts
    seen: list[str] = field(default_factory=list)
    _handles: list = field(default_factory=list)

    def __post_init__(self) -> None:
        for name, module in self.model.named_modules():
            self._handles.append(module.register_forward_hook(self._forward_hook(name or "<model>")))
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                self._handles.append(p.register_hook(self._grad_hook(name)))

    def _record(self, what: str) -> None:
        if what in self.seen:
            return
        self.seen.append(what)
        if len(self.seen) <= self.max_logged:
            log.warning("fp16 guard: inf/nan in %s", what)

    def _forward_hook(self, name: str):
        def hook(module: nn.Module, inputs: object, output: object) -> None:
            if _nonfinite(output):
                self._record(f"the output of module {name} ({type(module).__name__})")

        return hook

    def _grad_hook(self, name: str):
        def hook(grad: Tensor) -> None:
            if _nonfinite(grad):
                self._record(f"the gradient of parameter {name}")

        return hook

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()


class GradScaleGuard:
    """Watches a GradScaler (anything with get_scale() and update(new_scale)).

    Args:
        model: the unwrapped model, for the inf/nan hooks.
        warn_scale: below it: warning, hooks on, one diagnostic checkpoint (0: off).
        stop_scale: below it: stop (0: off).
        grow_period: every that many batches, double a scale below `grow_below` (0: off).
        grow_below: see grow_period.
    """

    def __init__(
        self, model: nn.Module, warn_scale: float, stop_scale: float, grow_period: int, grow_below: float
    ):
        if stop_scale > 0 and warn_scale > 0 and stop_scale >= warn_scale:
            raise ValueError(f"trainer.fp16_stop_scale={stop_scale} must be below trainer.fp16_warn_scale={warn_scale}")
        self.model, self.warn_scale, self.stop_scale = model, warn_scale, stop_scale
        self.grow_period, self.grow_below = grow_period, grow_below
        self.hooks: InfCheckHooks | None = None
        self.diagnostic_saved = False

    def check(self, scaler, batch_idx: int) -> Verdict:
        """Call after scaler.update() of batch `batch_idx` (1-based over the run). The scale is the same on every
        rank (GradScaler's overflow test is all-reduced through DDP's gradients), so every rank decides alike."""
        if not scaler.is_enabled():
            return Verdict()
        scale = float(scaler.get_scale())
        verdict = Verdict()
        if self.stop_scale > 0 and scale < self.stop_scale:
            seen = self.hooks.seen[:5] if self.hooks is not None else []
            where = f"; inf/nan first seen in: {', '.join(seen)}" if seen else ""
            verdict.stop = True
            verdict.message = (
                f"fp16 grad scale collapsed to {scale:.3g} at batch {batch_idx} (below trainer.fp16_stop_scale="
                f"{self.stop_scale:g}): the fp16 gradients overflow at almost every batch{where}. Resume from an "
                f"earlier checkpoint with a lower learning rate, or train with trainer.amp=bf16 or none"
            )
            return verdict
        if self.warn_scale > 0 and scale < self.warn_scale:
            if self.hooks is None:
                log.warning("fp16 guard: grad scale %.3g at batch %d is below trainer.fp16_warn_scale=%g: logging "
                            "the modules that produce inf/nan from now on", scale, batch_idx,
                            self.warn_scale)  # fmt: skip
                self.hooks = InfCheckHooks(self.model)
            if not self.diagnostic_saved:
                self.diagnostic_saved = True
                verdict.save_diagnostic = True
        elif self.hooks is not None and scale >= 2 * self.warn_scale:  # recovered
            log.info("fp16 guard: grad scale back to %.3g at batch %d, inf/nan hooks off", scale, batch_idx)
            self.hooks.remove()
            self.hooks = None
        if self.grow_period > 0 and batch_idx % self.grow_period == 0 and scale < self.grow_below:
            scaler.update(scale * 2.0)
        return verdict

    def close(self) -> None:
        if self.hooks is not None:
            self.hooks.remove()
            self.hooks = None

