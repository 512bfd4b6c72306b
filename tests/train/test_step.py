import math

import pytest
import torch
from torch import nn

from asr.data.batch import Batch
from asr.models import subsampled_lengths
from asr.train.step import compute_batch_loss


class PerUtteranceModel(nn.Module):
    """Transducer.forward's signature; loss of utterance b = w^2 * (b's mean feature + 1)^2 * y_lens[b].

    Utterances whose first token is `poison` get a NaN loss, standing in for a loss that blows up inside the model.
    """

    def __init__(self, poison: int = -1):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(1.5))
        self.poison = poison
        self.calls: list[int] = []

    def forward(self, x, x_lens, y, y_lens, prune_range, am_scale, lm_scale, reduction="sum", delay_penalty=0.0):
        assert reduction == "none"
        self.calls.append(x.size(0))
        mask = torch.arange(x.size(1))[None, :] < x_lens[:, None]  # (B, T)
        mean = (x.sum(-1) * mask).sum(1) / x_lens  # (B,)
        loss = self.w**2 * (mean + 1) ** 2 * y_lens
        loss = torch.where(y[:, 0] == self.poison, torch.full_like(loss, math.nan), loss)
        return loss, 2 * loss


def _batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 40, 3, generator=g)
    x_lens = torch.tensor([40, 30, 40, 25])  # 9, 6, 9, 5 encoder frames
    y = torch.tensor([[1, 2, 3, 0, 0, 0, 0], [4, 1, 0, 0, 0, 0, 0], [2, 2, 2, 2, 0, 0, 0], [3, 0, 0, 0, 0, 0, 0]])
    y_lens = torch.tensor([3, 2, 4, 1])
    return x, x_lens, y, y_lens, ["a", "b", "c", "d"]


def _run(model, x, x_lens, y, y_lens, ids):
    batch = Batch(features=x, feature_lens=x_lens, tokens=y, token_lens=y_lens, cut_ids=ids, texts=[""] * len(ids))
    return compute_batch_loss(
        model, batch, prune_range=5, am_scale=0.0, lm_scale=0.25, simple_scale=0.5,
        pruned_scale=1.0, frames_fn=subsampled_lengths, device=torch.device("cpu"),
    )  # fmt: skip


def _expected(model, x, x_lens, y, y_lens, keep):
    with torch.no_grad():
        s, p = model(x[keep], x_lens[keep], y[keep], y_lens[keep], 5, 0.0, 0.25, reduction="none")
    return float((0.5 * s + p).sum())


def test_clean_batch_keeps_everything():
    model = PerUtteranceModel()
    res = _run(model, *_batch())
    assert res.bad_cut_ids == [] and res.utterances == 4
    assert res.frames == 9 + 6 + 9 + 5
    x, x_lens, y, y_lens, _ = _batch()
    assert math.isclose(float(res.loss.detach()), _expected(model, x, x_lens, y, y_lens, [0, 1, 2, 3]), rel_tol=1e-6)


def test_nan_feature_and_impossible_utterance_are_dropped():
    x, x_lens, y, y_lens, ids = _batch()
    x[1, 3, 0] = math.nan  # NaN feature in "b"
    y_lens[3] = 6  # "d": 6 tokens but 5 encoder frames
    y[3] = torch.tensor([3, 1, 2, 1, 2, 1, 0])
    model = PerUtteranceModel()
    res = _run(model, x, x_lens, y, y_lens, ids)
    assert res.bad_cut_ids == ["b", "d"] and res.utterances == 2 and model.calls == [2]
    assert math.isfinite(float(res.loss.detach()))
    assert math.isclose(float(res.loss.detach()), _expected(model, x, x_lens, y, y_lens, [0, 2]), rel_tol=1e-6)
    res.loss.backward()
    assert torch.isfinite(model.w.grad)


def test_non_finite_model_loss_reruns_on_good_utterances():
    x, x_lens, y, y_lens, ids = _batch()
    model = PerUtteranceModel(poison=4)  # "b" starts with token 4
    res = _run(model, x, x_lens, y, y_lens, ids)
    assert res.bad_cut_ids == ["b"] and model.calls == [4, 3]
    res.loss.backward()
    assert torch.isfinite(model.w.grad)


def test_all_bad_batch_gives_no_loss():
    x, x_lens, y, y_lens, ids = _batch()
    x[:, 0, 0] = math.inf
    model = PerUtteranceModel()
    res = _run(model, x, x_lens, y, y_lens, ids)
    assert res.loss is None and res.bad_cut_ids == ids and model.calls == []


def test_zero_loss_reaches_every_parameter_with_zero_gradient():
    from asr.train.step import zero_loss
    from tests.train.tiny import NUM_FEATURES, tiny_model

    model = tiny_model(dropout=0.1)
    model.train()
    loss = zero_loss(model, NUM_FEATURES, prune_range=3, frames_fn=subsampled_lengths, device=torch.device("cpu"))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert model.training  # restored after the eval-mode dummy forward
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and bool((g == 0).all()) for g in grads)


def test_bf16_autocast_keeps_losses_float32_and_close():
    from tests.train.tiny import fixed_batches, make_cuts, tiny_model

    model = tiny_model(dropout=0.0)
    batch = fixed_batches(make_cuts(4), 0, 1)[0]
    out = {}
    for amp in ("none", "bf16"):
        res = compute_batch_loss(
            model, batch, prune_range=3, am_scale=0.0, lm_scale=0.25, simple_scale=0.5,
            pruned_scale=1.0, frames_fn=subsampled_lengths, device=torch.device("cpu"), amp=amp,
        )  # fmt: skip
        assert res.loss.dtype == torch.float32
        out[amp] = float(res.loss.detach())
    assert math.isclose(out["bf16"], out["none"], rel_tol=0.05)


def test_resolve_amp_auto_follows_the_device(monkeypatch):
    import asr.train.step as step

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(step, "cpu_has_native_bf16", lambda: True)
    assert step.resolve_amp("auto", cpu) == "bf16"
    monkeypatch.setattr(step, "cpu_has_native_bf16", lambda: False)
    assert step.resolve_amp("auto", cpu) == "none"  # emulated bfloat16 is slower than float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert step.resolve_amp("auto", cuda) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert step.resolve_amp("auto", cuda) == "fp16"  # pre-Ampere GPUs: fp16 with a GradScaler
    for amp in ("none", "bf16"):
        assert step.resolve_amp(amp, cpu) == amp
    assert step.resolve_amp("fp16", cuda) == "fp16"
    with pytest.raises(ValueError, match="fp16 needs CUDA"):
        step.resolve_amp("fp16", cpu)
    with pytest.raises(ValueError, match="must be one of"):
        step.resolve_amp("fp32", cpu)
