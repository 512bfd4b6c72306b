"""Staging of the two transducer losses during training: total = simple_scale * simple + pruned_scale * pruned.

The pruned loss depends on prune ranges read off the simple loss; early in training those ranges are poor, so the
pruned loss is kept small (or off) until the simple loss has trained for `warm_step` batches.

Schedules:
    "switch": simple_scale = simple_loss_scale throughout; pruned_scale = 0 before warm_step, then 1.
        icefall's first recipe (pruned_transducer_stateless) used a constant simple_loss_scale * simple + pruned;
        pruned_transducer_stateless2 introduced the warm-up: pruned scale 0 before model_warm_step, 0.1 until twice
        that, then 1. "switch" is that warm-up reduced to its two essential states (off, then fully on), with the
        simple scale constant as in both recipes.
    "ramp": simple_scale goes linearly from 1.0 to simple_loss_scale and pruned_scale from 0.1 to 1.0 over
        warm_step batches, then stays (icefall's pruned_transducer_stateless7 and later).
"""

SCHEDULES = ("switch", "ramp")
# "ramp" starts the simple loss at full weight and the pruned loss at a tenth (icefall's later recipes).
_RAMP_SIMPLE_START = 1.0
_RAMP_PRUNED_START = 0.1


def loss_scales(step: int, schedule: str, warm_step: int, simple_loss_scale: float) -> tuple[float, float]:
    """(simple_scale, pruned_scale) at training batch `step` (0-based count of batches already trained).

    Args:
        step: batches trained so far, >= 0.
        schedule: "switch" or "ramp".
        warm_step: batches until the pruned loss is fully on (>= 0; 0 means on from the start).
        simple_loss_scale: weight of the simple loss once warm (icefall: 0.5).
    Returns:
        (simple_scale, pruned_scale) as floats.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if step < 0 or warm_step < 0:
        raise ValueError(f"step and warm_step must be >= 0, got step={step}, warm_step={warm_step}")
    warm = step >= warm_step
    if schedule == "switch":
        return float(simple_loss_scale), 1.0 if warm else 0.0
    if warm:
        return float(simple_loss_scale), 1.0
    frac = step / warm_step
    simple = _RAMP_SIMPLE_START + frac * (simple_loss_scale - _RAMP_SIMPLE_START)
    pruned = _RAMP_PRUNED_START + frac * (1.0 - _RAMP_PRUNED_START)
    return simple, pruned
