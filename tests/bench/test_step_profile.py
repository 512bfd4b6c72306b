"""bench/step_profile.py's front_end_flops against FLOPs counted by hand, for both kinds of subsampling."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # bench/, as bench_train_step.py's imports see it

from asr.models.conformer import Conformer  # noqa: E402
from bench.step_profile import front_end_flops  # noqa: E402


@pytest.mark.parametrize("conv", ["full", "depthwise"])
def test_front_end_flops_by_hand(conv):
    b, t, f, c, d = 2, 50, 20, 4, 8
    enc = Conformer(num_features=f, d_model=d, num_heads=2, ff_dim=16, num_layers=1, cnn_kernel=3, dropout=0.0,
                    subsampling_channels=c, subsampling_conv=conv).eval()  # fmt: skip
    flops = front_end_flops(enc, torch.randn(b, t, f), torch.tensor([t, 30]))
    t1, f1 = 24, 9  # (50 - 3) // 2 + 1, (20 - 3) // 2 + 1
    t2, f2 = 11, 4
    first = 2 * b * t1 * f1 * c * 9  # Conv2d(1, C, 3): a multiply-add per weight and output position
    second = 2 * b * t2 * f2 * c * c * 9 if conv == "full" else 2 * b * t2 * f2 * (c * 9 + c * c)  # dw + pointwise
    linear = 2 * b * t2 * (c * f2) * d
    assert flops["subsampling"] == first + second + linear
    assert flops["encoder"] > flops["subsampling"]
