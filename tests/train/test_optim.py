import pytest
import torch

from asr.train.config import OptimConfig
from asr.train.optim import EdenSchedule, NoamSchedule, build_optimizer


def _opt():
    return torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=0.0)


@pytest.mark.parametrize(
    "batches_done,expected",
    [
        (0, 1.3810679320049755e-08),  # step 1: 5 / sqrt(256) * 1 * 80000^-1.5
        (39999, 0.0005524271728019902),  # step 40000: half-way up the warm-up line
        (79999, 0.0011048543456039805),  # step 80000 = warm_step: the peak, 5 / sqrt(256 * 80000)
        (319999, 0.0005524271728019902),  # step 320000: 5 / sqrt(256 * 320000), half the peak
    ],
)
def test_noam_against_hand_computed(batches_done, expected):
    opt = _opt()
    sched = NoamSchedule(opt, model_size=256, factor=5.0, warm_step=80000)
    sched.step_batch(batches_done)
    assert opt.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "batch,epoch,expected",
    [
        (0, 0, 0.0015),  # warm-up starts at half the base lr
        (250, 0, 0.002248595943154103),  # 0.003 * 1.0025^-0.25 * 0.75
        (5000, 6, 0.0021213203435596424),  # both factors 2^-0.25: 0.003 / sqrt(2)
    ],
)
def test_eden_against_hand_computed(batch, epoch, expected):
    opt = _opt()
    sched = EdenSchedule(opt, base_lr=0.003, lr_batches=5000, lr_epochs=6, warmup_batches=500)
    sched.step_epoch(epoch)
    sched.step_batch(batch)
    assert sched.get_last_lr()[0] == pytest.approx(expected, rel=1e-12)


def test_schedule_state_round_trip():
    opt = _opt()
    sched = EdenSchedule(opt, base_lr=0.003, lr_batches=5000, lr_epochs=6, warmup_batches=500)
    sched.step_epoch(3)
    sched.step_batch(1234)
    opt2 = _opt()
    sched2 = EdenSchedule(opt2, base_lr=0.003, lr_batches=5000, lr_epochs=6, warmup_batches=500)
    sched2.load_state_dict(sched.state_dict())
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


def test_build_optimizer_is_icefall_adam():
    model = torch.nn.Linear(3, 2)
    opt, sched = build_optimizer(model, OptimConfig(model_size=512))
    assert isinstance(opt, torch.optim.Adam) and isinstance(sched, NoamSchedule)
    assert opt.param_groups[0]["betas"] == (0.9, 0.98)
    assert opt.param_groups[0]["eps"] == 1e-9
    with pytest.raises(ValueError, match="noam or eden"):
        build_optimizer(model, OptimConfig(schedule="cosine"))


def test_cooldown_decays_linearly_to_zero_over_the_last_fraction():
    opt = _opt()
    sched = NoamSchedule(opt, model_size=256, factor=5.0, warm_step=100, cooldown_fraction=0.2)
    sched.step_batch(900)
    plain = sched.rate()
    assert sched.get_last_lr()[0] == plain  # total unknown: no cool-down yet
    sched.set_total_batches(1000)  # the last 200 batches cool down
    assert sched.get_last_lr()[0] == pytest.approx(plain * 0.5, rel=1e-12)
    for batch, factor in [(700, 1.0), (800, 1.0), (850, 0.75), (1000, 0.0), (1100, 0.0)]:
        sched.step_batch(batch)
        assert sched.get_last_lr()[0] == pytest.approx(sched.rate() * factor, rel=1e-12, abs=0.0), batch
    with pytest.raises(ValueError, match="cooldown_fraction"):
        EdenSchedule(_opt(), 0.003, 5000, 6, 500, cooldown_fraction=1.5)


def test_cooldown_follows_the_time_budget_or_the_batches_whichever_ends_first():
    opt = _opt()
    sched = NoamSchedule(opt, model_size=256, factor=5.0, warm_step=100, cooldown_fraction=0.4)
    sched.step_batch(500)
    for fraction, factor in [(0.0, 1.0), (0.6, 1.0), (0.7, 0.75), (0.9, 0.25), (1.0, 0.0)]:
        sched.set_time_fraction(fraction)
        assert sched.get_last_lr()[0] == pytest.approx(sched.rate() * factor, rel=1e-12, abs=0.0), fraction
    sched.set_time_fraction(0.7)  # time says 0.75 ...
    sched.set_total_batches(625)  # ... the batches (625 - 500) / (0.4 * 625) = 0.5: the sooner end wins
    assert sched.get_last_lr()[0] == pytest.approx(sched.rate() * 0.5, rel=1e-12)
    sched.set_total_batches(10_000)  # now the time budget ends first
    assert sched.get_last_lr()[0] == pytest.approx(sched.rate() * 0.75, rel=1e-12)


def test_build_optimizer_passes_the_cooldown():
    _, sched = build_optimizer(torch.nn.Linear(3, 2), OptimConfig(schedule="eden", cooldown_fraction=0.25))
    sched.set_total_batches(400)
    sched.step_batch(350)
    assert sched.get_last_lr()[0] == pytest.approx(sched.rate() * 0.5, rel=1e-12)


def test_adam_is_fused_on_cpu_and_steps_as_the_per_tensor_loop():
    """build_optimizer's Adam runs torch's fused kernel on CPU; its updates equal the default per-tensor loop's
    (the reference) to float rounding over a few steps."""
    torch.manual_seed(0)
    shapes = [(7, 5), (5,), (3, 4, 2)]
    fused_params = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    loop_params = [torch.nn.Parameter(p.detach().clone()) for p in fused_params]
    opt, _ = build_optimizer(torch.nn.ParameterList(fused_params), OptimConfig(optimizer="adam", schedule="noam"))
    assert opt.param_groups[0]["fused"] is True
    group = opt.param_groups[0]
    group["lr"] = 1e-2  # large enough that the updates show (the schedule's first rate is ~1e-8)
    initial = [p.detach().clone() for p in fused_params]
    ref = torch.optim.Adam(loop_params, lr=group["lr"], betas=group["betas"], eps=group["eps"], foreach=False)
    for _ in range(5):
        grads = [torch.randn(s) for s in shapes]
        for p, q, g in zip(fused_params, loop_params, grads):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    for p, q, p0 in zip(fused_params, loop_params, initial):
        assert (p - p0).abs().min() > 1e-3  # every weight moved
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
