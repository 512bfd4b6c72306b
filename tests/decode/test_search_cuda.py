"""Greedy and modified beam search on CUDA find what they find on CPU, for a small real Transducer in float64
(no argmax ties split by rounding), in a batch of utterances of different lengths.

Skipped without CUDA. ASR_CUDA_TEST_DEVICE=cpu runs the same comparisons CPU against CPU (a check of the tests).
"""

from __future__ import annotations

import copy
import os

import pytest
import torch

from asr.decode.greedy import greedy_search_batch
from asr.decode.modified_beam_search import modified_beam_search
from asr.models import ModelConfig, build_model
from asr.models.conformer import ConformerConfig
from asr.models.decoder import DecoderConfig
from asr.models.joiner import JoinerConfig

DEVICE = torch.device(os.environ.get("ASR_CUDA_TEST_DEVICE", "cuda"))
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(DEVICE.type == "cuda" and not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.fixture(scope="module")
def models():
    """The same small model on CPU and on DEVICE, float64, eval mode; the joiner's blank bias lowered so that a
    random model emits on some frames and not on others."""
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=30,
        encoder=ConformerConfig(d_model=32, num_heads=2, ff_dim=64, num_layers=2, dropout=0.0,
                                subsampling_channels=8),
        decoder=DecoderConfig(decoder_dim=32),
        joiner=JoinerConfig(joiner_dim=32),
    )  # fmt: skip
    cpu = build_model(cfg).double().eval()
    with torch.no_grad():
        cpu.joiner.output_linear.bias[0] += 0.75  # emits on roughly half the frames
    return cpu, copy.deepcopy(cpu).to(DEVICE)


def encoded(model, x, x_lens):
    with torch.inference_mode():
        return model.encode(x.to(next(model.parameters()).device), x_lens.to(next(model.parameters()).device))


@pytest.mark.parametrize("method", ["greedy", "greedy_3_symbols", "modified_beam_search_4"])
def test_search_matches_cpu(models, method):
    cpu, dev = models
    g = torch.Generator().manual_seed(1)
    x_lens = torch.tensor([300, 120, 260, 45, 200])
    x = torch.randn(5, 300, 80, generator=g, dtype=torch.float64)
    searches = {
        "greedy": lambda m, e, n: greedy_search_batch(m, e, n),
        "greedy_3_symbols": lambda m, e, n: greedy_search_batch(m, e, n, max_sym_per_frame=3),
        "modified_beam_search_4": lambda m, e, n: modified_beam_search(m, e, n, beam=4),
    }
    enc_c, lens_c = encoded(cpu, x, x_lens)
    enc_d, lens_d = encoded(dev, x, x_lens)
    assert enc_d.device.type == DEVICE.type
    torch.testing.assert_close(enc_c, enc_d.cpu(), rtol=1e-9, atol=1e-9)
    hyps_c = searches[method](cpu, enc_c, lens_c)
    hyps_d = searches[method](dev, enc_d, lens_d)
    assert [(h.tokens, h.frames) for h in hyps_c] == [(h.tokens, h.frames) for h in hyps_d]
    for c, d in zip(hyps_c, hyps_d):
        assert c.log_probs == pytest.approx(d.log_probs, abs=1e-6) and c.score == pytest.approx(d.score, abs=1e-6)
    emitted = sum(len(h.tokens) for h in hyps_c)
    assert 0 < emitted != int(lens_c.sum())  # the model emits, and not exactly once on every frame


def test_float32_batch_on_device_equals_one_by_one(models):
    """In float32 on the device, decoding a batch gives each utterance's result alone (padding changes nothing)."""
    _, dev = models
    model = copy.deepcopy(dev).float()
    g = torch.Generator().manual_seed(2)
    x_lens = torch.tensor([240, 90, 160])
    x = torch.randn(3, 240, 80, generator=g)
    enc, lens = encoded(model, x, x_lens)
    batch = modified_beam_search(model, enc, lens, beam=4)
    for i in range(3):
        e, n = encoded(model, x[i : i + 1, : x_lens[i]], x_lens[i : i + 1])
        assert modified_beam_search(model, e, n, beam=4)[0].tokens == batch[i].tokens
