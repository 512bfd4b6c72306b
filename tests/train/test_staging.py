"""asr.train.staging.loss_scales: the two schedules at known steps."""

import pytest

from asr.train.staging import loss_scales


@pytest.mark.parametrize(
    "step, expected",
    [(0, (0.5, 0.0)), (1999, (0.5, 0.0)), (2000, (0.5, 1.0)), (10**6, (0.5, 1.0))],
)
def test_switch(step, expected):
    assert loss_scales(step, "switch", warm_step=2000, simple_loss_scale=0.5) == pytest.approx(expected)


@pytest.mark.parametrize(
    "step, expected",
    [
        (0, (1.0, 0.1)),
        (500, (0.875, 0.325)),  # a quarter of the way: 1 - 0.25 * 0.5, 0.1 + 0.25 * 0.9
        (1000, (0.75, 0.55)),
        (2000, (0.5, 1.0)),
        (5000, (0.5, 1.0)),
    ],
)
def test_ramp(step, expected):
    assert loss_scales(step, "ramp", warm_step=2000, simple_loss_scale=0.5) == pytest.approx(expected)


def test_ramp_is_monotone_and_continuous_at_warm_step():
    scales = [loss_scales(s, "ramp", warm_step=100, simple_loss_scale=0.3) for s in range(0, 150)]
    simple = [s for s, _ in scales]
    pruned = [p for _, p in scales]
    assert all(a >= b for a, b in zip(simple, simple[1:]))
    assert all(a <= b for a, b in zip(pruned, pruned[1:]))
    assert abs(simple[99] - simple[100]) < 0.01 and abs(pruned[99] - pruned[100]) < 0.01


def test_zero_warm_step_is_warm_from_the_start():
    assert loss_scales(0, "ramp", warm_step=0, simple_loss_scale=0.5) == (0.5, 1.0)
    assert loss_scales(0, "switch", warm_step=0, simple_loss_scale=0.5) == (0.5, 1.0)


@pytest.mark.parametrize("kwargs", [dict(schedule="linear"), dict(step=-1), dict(warm_step=-5)])
def test_bad_arguments_raise(kwargs):
    args = dict(step=0, schedule="ramp", warm_step=10, simple_loss_scale=0.5) | kwargs
    with pytest.raises(ValueError):
        loss_scales(**args)
