"""GradScaleGuard on a real (CPU) GradScaler with injected overflows: a module whose float16 output overflows."""

import logging

import pytest
import torch
from torch import nn

from asr.train.fp16_guard import GradScaleGuard


class Overflow(nn.Module):
    """Identity, or (when `on`) a float16 product that overflows to inf, as an fp16 activation would."""

    def __init__(self):
        super().__init__()
        self.on = False

    def forward(self, x):
        return (x.half() * 70000.0).float() if self.on else x


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 4), Overflow(), nn.Linear(4, 1))


def _step(model, opt, scaler):
    loss = model(torch.ones(2, 4)).sum()
    scaler.scale(loss).backward()
    scaler.step(opt)  # skipped when the gradients hold inf/nan
    scaler.update()  # halves the scale after an overflow
    opt.zero_grad(set_to_none=True)


def test_collapse_warns_names_modules_saves_once_then_stops(caplog):
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1.0, growth_interval=10**6)
    guard = GradScaleGuard(model, warn_scale=0.01, stop_scale=1e-5, grow_period=0, grow_below=8.0)
    model[1].on = True
    before = model[0].weight.detach().clone()
    verdicts = []
    with caplog.at_level(logging.WARNING, logger="asr.train"):
        for batch in range(1, 30):
            _step(model, opt, scaler)
            verdicts.append(guard.check(scaler, batch))
            if verdicts[-1].stop:
                break
    assert torch.equal(model[0].weight, before)  # every step skipped
    # 2^-7 < 0.01 after batch 7: warned, hooks on, one diagnostic checkpoint asked for
    assert [v.save_diagnostic for v in verdicts].index(True) == 6 and sum(v.save_diagnostic for v in verdicts) == 1
    # 2^-17 < 1e-5 after batch 17: stop, naming the threshold and where inf/nan started
    assert len(verdicts) == 17 and verdicts[-1].stop
    assert "fp16_stop_scale" in verdicts[-1].message and "module 1 (Overflow)" in verdicts[-1].message
    assert "inf/nan in the output of module 1 (Overflow)" in caplog.text
    assert "gradient of parameter 2.weight" in caplog.text  # the layer fed the inf activations
    assert "module 0 (Linear)" not in caplog.text  # finite output: not blamed
    guard.close()
    assert not model[1]._forward_hooks


def test_hooks_are_off_while_the_scale_is_healthy_and_removed_on_recovery():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=0.02, growth_interval=1)
    guard = GradScaleGuard(model, warn_scale=0.01, stop_scale=1e-5, grow_period=0, grow_below=8.0)
    _step(model, opt, scaler)
    guard.check(scaler, 1)
    assert guard.hooks is None and not model[0]._forward_hooks
    model[1].on = True
    _step(model, opt, scaler)  # 0.04 -> 0.02
    _step(model, opt, scaler)  # -> 0.01
    _step(model, opt, scaler)  # -> 0.005
    guard.check(scaler, 4)
    assert guard.hooks is not None and model[0]._forward_hooks
    model[1].on = False
    for batch in range(5, 9):  # growth_interval 1: doubles after each clean batch, 0.08 after 4
        _step(model, opt, scaler)
        guard.check(scaler, batch)
    assert guard.hooks is None and not model[0]._forward_hooks


def test_periodic_growth_of_a_low_scale():
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1.0, growth_interval=10**6)
    guard = GradScaleGuard(model, warn_scale=0.01, stop_scale=1e-5, grow_period=2, grow_below=8.0)
    scales = []
    for batch in range(1, 11):
        _step(model, opt, scaler)
        guard.check(scaler, batch)
        scales.append(scaler.get_scale())
    assert scales == [1.0, 2.0, 2.0, 4.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0]  # doubled at even batches while below 8


def test_disabled_scaler_and_bad_thresholds():
    model = _model()
    guard = GradScaleGuard(model, 0.01, 1e-5, 100, 8.0)
    v = guard.check(torch.amp.GradScaler("cpu", enabled=False), 1)
    assert not v.stop and not v.save_diagnostic
    with pytest.raises(ValueError, match="fp16_stop_scale"):
        GradScaleGuard(model, 0.01, 0.1, 100, 8.0)
