"""The Conformer and the transducer's losses on CUDA equal those on CPU (float64), padding included.

Skipped without CUDA. ASR_CUDA_TEST_DEVICE=cpu runs the same comparisons CPU against CPU (a check of the tests).
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


@pytest.mark.parametrize("half_rate_layers", [[], [1, 3]])
@pytest.mark.parametrize("train", [False, True])
def test_transducer_matches_cpu(half_rate_layers, train):
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=50,
        encoder=ConformerConfig(d_model=32, num_heads=2, ff_dim=64, num_layers=4, dropout=0.0,
                                subsampling_channels=8, half_rate_layers=half_rate_layers),
        decoder=DecoderConfig(decoder_dim=32),
        joiner=JoinerConfig(joiner_dim=32),
    )  # fmt: skip
    cpu = build_model(cfg).double().train(train)
    dev = copy.deepcopy(cpu).to(DEVICE)
    g = torch.Generator().manual_seed(1)
    x_lens = torch.tensor([230, 100, 180])
    x = torch.randn(3, 230, 80, generator=g, dtype=torch.float64)
    y_lens = torch.tensor([10, 4, 7])
    y = torch.randint(1, 50, (3, 10), generator=g)
    outs = []
    for model in (cpu, dev):
        args = [t.to(DEVICE if model is dev else "cpu") for t in (x, x_lens, y, y_lens)]
        enc, enc_lens = model.encode(args[0], args[1])
        simple, pruned = model(*args, prune_range=5, am_scale=0.0, lm_scale=0.25, reduction="none")
        (simple.sum() + pruned.sum()).backward()
        outs.append((enc, enc_lens, simple, pruned))
    for a, b in zip(*outs):
        torch.testing.assert_close(a.detach(), b.detach().cpu(), rtol=1e-8, atol=1e-8)
    for (name, p), q in zip(cpu.named_parameters(), dev.parameters()):
        torch.testing.assert_close(p.grad, q.grad.cpu(), rtol=1e-7, atol=1e-8, msg=name)
