"""Mixed precision on CUDA: fp16 autocast with torch.amp.GradScaler (scale, unscale_, clip, step, update, as the
trainer does) and bf16 autocast, on a small real Transducer.

Skipped without CUDA. ASR_CUDA_TEST_DEVICE=cpu runs them on CPU (a check of the tests; CPU autocast is slow).
"""

from __future__ import annotations

import copy
import os

import pytest
import torch

from asr.models import ModelConfig, build_model
from asr.models.conformer import ConformerConfig
from asr.models.decoder import DecoderConfig
from asr.models.joiner import JoinerConfig

DEVICE = torch.device(os.environ.get("ASR_CUDA_TEST_DEVICE", "cuda"))
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"),
]
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def small_model() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=40,
        encoder=ConformerConfig(d_model=64, num_heads=4, ff_dim=128, num_layers=2, dropout=0.0,
                                subsampling_channels=16),
        decoder=DecoderConfig(decoder_dim=64),
        joiner=JoinerConfig(joiner_dim=64),
    )  # fmt: skip
    return build_model(cfg).to(DEVICE)


def batch(seed: int = 0):
    """x (3, 200, 80), x_lens (3,), y (3, 12), y_lens (3,) on DEVICE."""
    g = torch.Generator().manual_seed(seed)
    x_lens = torch.tensor([200, 170, 120])
    y_lens = torch.tensor([12, 9, 5])
    x = torch.randn(3, 200, 80, generator=g)
    y = torch.randint(1, 40, (3, 12), generator=g)
    return x.to(DEVICE), x_lens.to(DEVICE), y.to(DEVICE), y_lens.to(DEVICE)


def losses(model, amp: str | None, data):
    x, x_lens, y, y_lens = data
    with torch.autocast(DEVICE.type, dtype=DTYPES[amp] if amp else torch.float32, enabled=amp is not None):
        return model(x, x_lens, y, y_lens, prune_range=5, am_scale=0.0, lm_scale=0.25, reduction="none")


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_autocast_losses_are_float32_and_close_to_float32(amp):
    if DEVICE.type == "cuda" and amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bf16")
    model = small_model().eval()
    data = batch()
    with torch.no_grad():
        ref_simple, ref_pruned = losses(model, None, data)
        simple, pruned = losses(model, amp, data)
    assert simple.dtype == pruned.dtype == torch.float32  # the losses run in float32 under autocast
    assert torch.isfinite(simple).all() and torch.isfinite(pruned).all()
    rtol = 2e-2 if amp == "fp16" else 5e-2  # bf16 keeps 8 bits of mantissa, fp16 11
    torch.testing.assert_close(simple, ref_simple, rtol=rtol, atol=0.5)
    torch.testing.assert_close(pruned, ref_pruned, rtol=rtol, atol=0.5)


def scaler_step(model, optimizer, scaler, data, poison: bool = False) -> float:
    """One step as the trainer takes it; poison puts an inf into one gradient before unscale_."""
    simple, pruned = losses(model, "fp16", data)
    loss = (0.5 * simple + pruned).sum()
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if poison:
        next(p for p in model.parameters() if p.grad is not None).grad.view(-1)[0] = float("inf")
    scaler.unscale_(optimizer)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0))
    scaler.step(optimizer)
    scaler.update()
    return grad_norm


def test_fp16_grad_scaler_steps_and_skips_overflow():
    model = small_model().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(DEVICE.type, init_scale=2.0**4, growth_interval=1)  # small: no overflow at first
    data = batch()
    before = copy.deepcopy(model.state_dict())

    norm = scaler_step(model, optimizer, scaler, data)
    assert 0 < norm < float("inf")
    assert scaler.get_scale() == 2.0**5  # a finite step grows the scale (growth_interval 1)
    changed = [k for k, v in model.state_dict().items() if v.is_floating_point() and not torch.equal(v, before[k])]
    assert changed, "the optimiser step changed no parameter"

    after_first = copy.deepcopy(model.state_dict())
    scaler_step(model, optimizer, scaler, data, poison=True)
    assert scaler.get_scale() == 2.0**4  # the overflow halves the scale ...
    for k, v in model.state_dict().items():  # ... and the step is skipped (BatchNorm statistics aside)
        if v.is_floating_point() and "running" not in k:
            assert torch.equal(v, after_first[k]), f"{k} changed on a skipped step"


def test_fp16_training_lowers_the_loss():
    """A few fp16 steps on one batch lower its loss: the scaled gradients point where the float32 ones do."""
    model = small_model().train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    scaler = torch.amp.GradScaler(DEVICE.type)
    data = batch(1)
    with torch.no_grad():
        start = float(sum(t.sum() for t in losses(model.eval(), None, data)))
    model.train()
    for _ in range(8):
        scaler_step(model, optimizer, scaler, data)
    with torch.no_grad():
        end = float(sum(t.sum() for t in losses(model.eval(), None, data)))
    assert end < start
