"""MaskDropout against nn.Dropout: the same outputs, gradients and random stream, with a one-byte saved mask."""

import pytest
import torch
from torch import nn

from asr.models.dropout import MaskDropout


def _run(module: nn.Module, x: torch.Tensor, grad: torch.Tensor, seed: int = 0):
    torch.manual_seed(seed)
    x = x.detach().clone().requires_grad_(True)
    out = module(x)
    out.backward(grad)
    return out.detach(), x.grad, torch.rand(3)  # the next draw: the random stream is left where nn.Dropout leaves it


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("p", [0.1, 0.5])
def test_equals_nn_dropout_bit_for_bit(dtype, p):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(7, 33, 65, generator=gen).to(dtype)
    grad = torch.randn(7, 33, 65, generator=gen).to(dtype)
    ref_out, ref_grad, ref_next = _run(nn.Dropout(p), x, grad)
    out, x_grad, next_draw = _run(MaskDropout(p), x, grad)
    assert torch.equal(out, ref_out) and torch.equal(x_grad, ref_grad) and torch.equal(next_draw, ref_next)
    assert 0 < int((out == 0).sum()) < out.numel()  # something was dropped, something kept


def test_saves_a_quarter_of_the_memory_in_float32():
    def saved_bytes(module: nn.Module) -> int:
        total = []

        def pack(t):
            total.append(t.numel() * t.element_size())
            return t

        x = torch.randn(64, 1000, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            module(x)
        return sum(total)

    ours, theirs = saved_bytes(MaskDropout(0.1)), saved_bytes(nn.Dropout(0.1))
    assert theirs == 64 * 1000 * 4 and ours == 64 * 1000  # a float32 noise tensor against a bool mask


def test_identity_in_eval_without_p_and_without_grad():
    x = torch.randn(4, 5, requires_grad=True)
    assert MaskDropout(0.3).eval()(x) is x
    assert MaskDropout(0.0)(x) is x
    torch.manual_seed(0)
    with torch.no_grad():
        a = MaskDropout(0.3)(x)
    torch.manual_seed(0)
    with torch.no_grad():
        b = nn.Dropout(0.3)(x)
    assert torch.equal(a, b)


def test_conformer_training_step_unchanged_with_dropout():
    """The default encoder with dropout 0.1 in training mode: loss and every gradient equal to those of the same
    model with torch's nn.Dropout in each MaskDropout's place (same seed)."""
    from omegaconf import OmegaConf

    from asr.models import ModelConfig, build_model

    cfg = OmegaConf.structured(ModelConfig)
    cfg.vocab_size = 40
    cfg.encoder.update(d_model=32, num_heads=4, ff_dim=64, num_layers=2, dropout=0.1)
    cfg.decoder.decoder_dim = cfg.joiner.joiner_dim = 32
    torch.manual_seed(0)
    ours = build_model(OmegaConf.to_object(cfg)).train()
    theirs = build_model(OmegaConf.to_object(cfg)).train()
    theirs.load_state_dict(ours.state_dict())
    replaced = 0
    for module in list(theirs.modules()):
        for name, child in module.named_children():
            if isinstance(child, MaskDropout):
                setattr(module, name, nn.Dropout(child.p))
                replaced += 1
    assert replaced >= 8 and not any(isinstance(m, MaskDropout) for m in theirs.modules())
    gen = torch.Generator().manual_seed(1)
    x, x_lens = torch.randn(2, 90, 80, generator=gen), torch.tensor([90, 71])
    y, y_lens = torch.randint(1, 40, (2, 7), generator=gen), torch.tensor([7, 5])
    results = []
    for model in (ours, theirs):
        torch.manual_seed(3)
        simple, pruned = model(x, x_lens, y, y_lens, prune_range=5, am_scale=0.0, lm_scale=0.25)
        (0.5 * simple + pruned).backward()
        results.append((simple.detach(), pruned.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (s1, p1, g1), (s2, p2, g2) = results
    assert torch.equal(s1, s2) and torch.equal(p1, p2)
    assert g1.keys() == g2.keys() and all(torch.equal(g1[n], g2[n]) for n in g1)
