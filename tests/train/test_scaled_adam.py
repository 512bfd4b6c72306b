import copy
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from asr.train.config import OptimConfig
from asr.train.optim import EdenSchedule, build_optimizer
from asr.train.scaled_adam import ScaledAdam

CONF = Path(__file__).resolve().parents[2] / "conf" / "optim" / "scaled_adam.yaml"


def _param(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.nn.Parameter(torch.randn(*shape, generator=g, dtype=torch.float64))


def test_first_step_moves_each_element_by_lr_times_the_tensor_rms():
    # Step 1: the second moment is grad^2 (bias-corrected), so Adam's direction is sign(grad); the momentum
    # holds (1 - beta1) of it; the size is lr * RMS(p). A known value, whatever the gradient's scale.
    p = _param(6, 5)
    before = p.detach().clone()
    rms = before.pow(2).mean().sqrt()
    grad = torch.randn(6, 5, dtype=torch.float64) * 1e3
    opt = ScaledAdam([p], lr=0.05, eps=1e-30, clipping_scale=None)
    p.grad = grad
    opt.step()
    expected = before - 0.05 * (1 - 0.9) * rms * grad.sign()
    torch.testing.assert_close(p.detach(), expected, rtol=1e-12, atol=1e-15)


def test_scalar_takes_a_plain_adam_step_at_the_scalar_rate_and_is_clamped():
    p = torch.nn.Parameter(torch.tensor([2.0], dtype=torch.float64))
    opt = ScaledAdam([p], lr=0.05, eps=1e-30, clipping_scale=None, scalar_lr_scale=0.1, scalar_max=10.0)
    p.grad = torch.tensor([-7.0], dtype=torch.float64)
    opt.step()
    assert float(p.detach()) == pytest.approx(2.0 + 0.05 * 0.1 * 0.1, rel=1e-12)
    q = torch.nn.Parameter(torch.tensor([9.99999], dtype=torch.float64))
    opt = ScaledAdam([q], lr=1.0, clipping_scale=None, scalar_lr_scale=1.0, scalar_max=10.0)
    q.grad = torch.tensor([-1.0], dtype=torch.float64)
    opt.step()
    assert float(q.detach()) == 10.0


def test_updates_are_relative_to_the_tensor_scale():
    # The same gradients on a tensor and on 1/100 of that tensor: the steps differ by exactly 100x (the
    # learnt-scale step is relative too), over several steps; both RMS values lie within [param_min_rms, param_max_rms].
    big, tiny = _param(8, 4), _param(8, 4)
    with torch.no_grad():
        tiny.mul_(0.01)
    opt_b = ScaledAdam([big], lr=0.03, eps=1e-30, clipping_scale=None, size_update_period=2)
    opt_t = ScaledAdam([tiny], lr=0.03, eps=1e-30, clipping_scale=None, size_update_period=2)
    g = torch.Generator().manual_seed(1)
    for _ in range(7):
        grad = torch.randn(8, 4, generator=g, dtype=torch.float64)
        big.grad, tiny.grad = grad.clone(), grad * 100.0  # d loss / d (p / 100) = 100 grad
        opt_b.step()
        opt_t.step()
    torch.testing.assert_close(tiny.detach(), 0.01 * big.detach(), rtol=1e-10, atol=1e-14)


def test_clipping_at_twice_the_median_of_recent_norms():
    p = _param(10, 10)
    opt = ScaledAdam([p], lr=0.01, clipping_scale=2.0, clipping_update_period=100)
    rms = float(p.detach().pow(2).mean().sqrt())
    unit = torch.ones(10, 10, dtype=torch.float64) / 10.0 / rms  # RMS-weighted norm exactly 1
    for _ in range(5):
        p.grad = unit.clone()
        opt.step()
        assert opt.last_clip_factor == 1.0
    p.grad = 100.0 * unit  # norm 100 against a median of 1: clipped to 2 (the RMS has moved by < 0.1%)
    opt.step()
    assert opt.last_clip_factor == pytest.approx(2.0 / 100.0, rel=1e-3)
    p.grad = 1.5 * unit  # below the threshold: untouched
    opt.step()
    assert opt.last_clip_factor == 1.0


def test_learnt_scale_lets_a_tensor_grow_and_a_zero_bias_leave_zero():
    # min ||w - 5 w0||^2 + ||b - 0.5||^2 from w = w0 (RMS about 1) and b = 0: reaching the target needs w's scale
    # to grow 5x (the learnt scale) and b to leave exact zero (the RMS floor, then relative growth).
    w0 = _param(16, 16, seed=3).detach().clone()
    w = torch.nn.Parameter(w0.clone())
    b = torch.nn.Parameter(torch.zeros(16, dtype=torch.float64))
    opt = ScaledAdam([w, b], lr=0.05, clipping_scale=2.0)
    sched = EdenSchedule(opt, base_lr=0.05, lr_batches=1e9, lr_epochs=1e9, warmup_batches=50, cooldown_fraction=0.3)
    sched.set_total_batches(1500)
    initial = float(((w - 5 * w0) ** 2).sum() + ((b - 0.5) ** 2).sum())
    for step in range(1500):
        opt.zero_grad()
        loss = ((w - 5 * w0) ** 2).sum() + ((b - 0.5) ** 2).sum()
        loss.backward()
        opt.step()
        sched.step_batch(step + 1)
    final = float(((w - 5 * w0) ** 2).sum() + ((b - 0.5) ** 2).sum())
    assert final < 1e-3 * initial
    torch.testing.assert_close(b.detach(), torch.full((16,), 0.5, dtype=torch.float64), atol=0.02, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_foreach_steps_equal_the_per_tensor_loop(dtype):
    # Tensors of several shapes, two scalars and an all-zero tensor (RMS floor), learnt-scale updates every 2nd
    # step and one clipped step (10x gradients against a median of 3): the same parameters and state either way.
    shapes = [(7, 5), (5,), (1,), (3, 4, 2), (1,), (9,)]
    gen = torch.Generator().manual_seed(0)
    loop = [torch.nn.Parameter(torch.randn(*shape, generator=gen, dtype=dtype)) for shape in shapes]
    with torch.no_grad():
        loop[1].zero_()
    fused = [torch.nn.Parameter(p.detach().clone()) for p in loop]
    kwargs = dict(lr=0.05, size_update_period=2, clipping_update_period=3)
    opt_loop = ScaledAdam(loop, foreach=False, **kwargs)
    opt_fused = ScaledAdam(fused, foreach=True, **kwargs)
    clipped = []
    for step in range(9):
        for p, q in zip(loop, fused):
            grad = torch.randn(p.shape, generator=gen, dtype=dtype) * (10.0 if step == 5 else 1.0)
            p.grad, q.grad = grad.clone(), grad.clone()
        opt_loop.step()
        opt_fused.step()
        assert opt_fused.last_clip_factor == pytest.approx(opt_loop.last_clip_factor, rel=1e-6)
        clipped.append(opt_loop.last_clip_factor < 1.0)
    assert clipped[5] and not clipped[4]
    tol = dict(rtol=1e-12, atol=1e-15) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    for p, q in zip(loop, fused):
        torch.testing.assert_close(q.detach(), p.detach(), **tol)
    state_loop, state_fused = opt_loop.state_dict()["state"], opt_fused.state_dict()["state"]
    for i in state_loop:
        assert state_fused[i].keys() == state_loop[i].keys()
        for key, value in state_loop[i].items():
            if torch.is_tensor(value):
                torch.testing.assert_close(state_fused[i][key], value, **tol)
            else:
                assert state_fused[i][key] == value


@pytest.mark.parametrize("foreach", [True, False])
def test_state_dict_round_trip_resumes_exactly(foreach):
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.LayerNorm(7), torch.nn.Linear(7, 1))
    x, y = torch.randn(32, 5), torch.randn(32, 1)

    def run(m, opt, steps):
        for _ in range(steps):
            opt.zero_grad()
            torch.nn.functional.mse_loss(m(x), y).backward()
            opt.step()

    kwargs = dict(lr=0.02, size_update_period=3, clipping_update_period=4, foreach=foreach)
    opt = ScaledAdam(model.parameters(), **kwargs)
    run(model, opt, 5)
    resumed = copy.deepcopy(model)
    opt2 = ScaledAdam(resumed.parameters(), **kwargs)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    run(model, opt, 6)
    run(resumed, opt2, 6)
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_conf_builds_scaled_adam_with_eden_and_refuses_double_clipping():
    cfg = OmegaConf.merge(OmegaConf.structured(OptimConfig), OmegaConf.load(CONF))
    obj = OmegaConf.to_object(cfg)
    model = torch.nn.Linear(3, 2)
    opt, sched = build_optimizer(model, obj)
    assert isinstance(opt, ScaledAdam) and isinstance(sched, EdenSchedule)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.045 * 0.5)  # Eden's warm-up starts at half
    obj.clip_grad_norm = 5.0
    with pytest.raises(ValueError, match="clip_grad_norm=0"):
        build_optimizer(model, obj)
    obj.clip_grad_norm, obj.optimizer = 0.0, "sgd"
    with pytest.raises(ValueError, match="adam or scaled_adam"):
        build_optimizer(model, obj)
