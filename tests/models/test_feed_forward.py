"""FeedForward's training path (activations recomputed in the backward) against the plain modules' autograd."""

import pytest
import torch

from asr.models.feed_forward import FeedForward, _SwishDropoutLinear


def _step(ff: FeedForward, x: torch.Tensor, grad: torch.Tensor, plain: bool, seed: int = 0):
    torch.manual_seed(seed)
    x = x.detach().clone().requires_grad_(True)
    for p in ff.parameters():
        p.grad = None
    out = ff.net(x) if plain else ff(x)
    out.backward(grad)
    return out.detach(), x.grad, [p.grad.clone() for p in ff.parameters()], torch.rand(2)


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("p", [0.0, 0.1])
def test_equals_the_plain_modules(dtype, rtol, p):
    torch.manual_seed(0)
    ff = FeedForward(16, 64, dropout=p).to(dtype).train()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(3, 11, 16, generator=gen).to(dtype)
    grad = torch.randn(3, 11, 16, generator=gen).to(dtype)
    out, x_grad, grads, next_draw = _step(ff, x, grad, plain=False)
    ref_out, ref_x_grad, ref_grads, ref_next = _step(ff, x, grad, plain=True)
    assert torch.equal(out, ref_out)  # same dropout draws, same forward ops
    assert torch.equal(next_draw, ref_next)  # the random stream is left where the plain modules leave it
    torch.testing.assert_close(x_grad, ref_x_grad, rtol=rtol, atol=rtol * 1e-2)
    for g, ref in zip(grads, ref_grads):
        torch.testing.assert_close(g, ref, rtol=rtol, atol=rtol * 1e-2)


def test_gradcheck_without_dropout():
    gen = torch.Generator().manual_seed(2)
    h = torch.randn(2, 5, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h, w, b: _SwishDropoutLinear.apply(h, w, b, 0.0), (h, w, b))


def test_keeps_less_for_the_backward():
    def saved_bytes(plain: bool) -> int:
        total = []

        def pack(t):
            total.append(t.numel() * t.element_size())
            return t

        ff = FeedForward(64, 256, dropout=0.1).train()
        x = torch.randn(8, 100, 64, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            ff.net(x) if plain else ff(x)
        return sum(total)

    ff_elems = 8 * 100 * 256
    # plain modules: silu's input h, the dropout's one-byte mask and the second Linear's input (float32);
    # ours: h and the mask
    assert saved_bytes(True) - saved_bytes(False) == 4 * ff_elems


def test_plain_modules_without_gradients_and_under_autocast():
    torch.manual_seed(0)
    ff = FeedForward(16, 32, dropout=0.0).train()
    x = torch.randn(2, 4, 16, requires_grad=True)
    with torch.no_grad():
        assert ff(x).grad_fn is None and torch.equal(ff(x), ff.net(x))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ff(x)
    assert out.dtype == torch.bfloat16 and "SwishDropoutLinear" not in type(out.grad_fn).__name__
    assert "SwishDropoutLinear" in type(ff(x).grad_fn).__name__
