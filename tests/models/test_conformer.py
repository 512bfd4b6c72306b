"""Conformer encoder: lengths, shapes, masking, and the relative-position attention against a loop oracle."""

import math

import pytest
import torch

from asr.models.conformer import (
    MIN_INPUT_FRAMES,
    Conformer,
    ConformerConfig,
    Conv2dSubsampling,
    MaskedBatchNorm1d,
    RelPositionMultiheadAttention,
    min_input_frames,
    relative_positions,
    subsampled_lengths,
    utterance_norm,
)

F = 20  # feature dim of the tiny encoders here


def tiny_conformer(**kw) -> Conformer:
    args = dict(num_features=F, d_model=16, num_heads=2, ff_dim=32, num_layers=2, cnn_kernel=5, dropout=0.0) | kw
    return Conformer(**args)


SUBSAMPLING_CONVS = ["full", "depthwise"]


@pytest.mark.parametrize("factor", [4, 8])
@pytest.mark.parametrize("conv", SUBSAMPLING_CONVS)
def test_subsampled_lengths_match_the_convolutions_for_every_length(conv, factor):
    sub = Conv2dSubsampling(num_features=F, d_model=4, channels=3, factor=factor, conv=conv)
    # full: one Conv2d per stride-2 step; depthwise: the first, then a depthwise + pointwise pair per later step
    steps = {4: 2, 8: 3}[factor]
    convs = [m for m in sub.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == (steps if conv == "full" else 2 * steps - 1)
    assert [c.groups for c in convs] == ([1] * steps if conv == "full" else [1] + [3, 1] * (steps - 1))
    lens = torch.arange(min_input_frames(factor), 300)
    expected = torch.tensor([sub(torch.zeros(1, int(t), F)).size(1) for t in lens])
    assert torch.equal(subsampled_lengths(lens, factor), expected)
    assert sub(torch.zeros(2, 299, F)).shape == (2, int(subsampled_lengths(torch.tensor(299), factor)), 4)


def test_subsampled_lengths_known_values():
    # Factor 4: 7 -> 1, 8 -> 1, 11 -> 2, 100 -> 24, 1000 -> 249.
    assert subsampled_lengths(torch.tensor([7, 8, 11, 100, 1000])).tolist() == [1, 1, 2, 24, 249]
    # Factor 8: 15 -> 1 (14 -> 0), 100 -> 11, 1000 -> 124: about T / 8.
    assert subsampled_lengths(torch.tensor([14, 15, 100, 1000]), factor=8).tolist() == [0, 1, 11, 124]
    assert (min_input_frames(4), min_input_frames(8)) == (MIN_INPUT_FRAMES, 15)
    with pytest.raises(ValueError, match="subsampling_factor must be one of"):
        subsampled_lengths(torch.tensor([100]), factor=6)


@pytest.mark.parametrize("conv", SUBSAMPLING_CONVS)
def test_factor_8_encoder_halves_the_frames_and_stays_padding_invariant(conv):
    enc = tiny_conformer(subsampling_factor=8, subsampling_conv=conv).eval()
    x = torch.randn(2, 90, F)
    x_lens = torch.tensor([90, 61])
    out, out_lens = enc(x, x_lens)
    assert torch.equal(out_lens, enc.output_lengths(x_lens)) and out_lens.tolist() == [10, 6]
    assert out.shape == (2, 10, 16)
    out_p, _ = enc(torch.cat([x, 100 * torch.randn(2, 40, F)], dim=1), x_lens)
    for b, n in enumerate(out_lens.tolist()):
        torch.testing.assert_close(out_p[b, :n], out[b, :n], atol=1e-5, rtol=1e-5)
        assert torch.all(out[b, n:] == 0)
    with pytest.raises(ValueError, match=r"x_lens must lie in \[15, "):
        enc(x[:, :14], torch.tensor([14, 14]))


@pytest.mark.parametrize("conv", SUBSAMPLING_CONVS)
def test_output_shapes_lengths_and_zero_padding(conv):
    enc = tiny_conformer(subsampling_conv=conv).eval()
    x_lens = torch.tensor([50, 37, 7])
    out, out_lens = enc(torch.randn(3, 50, F), x_lens)
    assert out.shape == (3, subsampled_lengths(torch.tensor(50)).item(), 16)
    assert torch.equal(out_lens, subsampled_lengths(x_lens))
    for b, n in enumerate(out_lens.tolist()):
        assert torch.all(out[b, n:] == 0)
        assert out[b, :n].abs().sum() > 0


@pytest.mark.parametrize("conv", SUBSAMPLING_CONVS)
def test_padding_does_not_change_valid_frames(conv):
    enc = tiny_conformer(subsampling_conv=conv).eval()
    x = torch.randn(2, 41, F)
    x_lens = torch.tensor([41, 29])
    out, out_lens = enc(x, x_lens)
    # Same utterances padded with 23 more frames of large garbage.
    x_padded = torch.cat([x, 100 * torch.randn(2, 23, F)], dim=1)
    x_padded[1, 29:] = 100 * torch.randn(x_padded.size(1) - 29, F)
    out_p, out_lens_p = enc(x_padded, x_lens)
    assert torch.equal(out_lens, out_lens_p)
    for b, n in enumerate(out_lens.tolist()):
        torch.testing.assert_close(out_p[b, :n], out[b, :n], atol=1e-5, rtol=1e-5)
        alone, _ = enc(x[b : b + 1, : x_lens[b]], x_lens[b : b + 1])
        torch.testing.assert_close(out[b, :n], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("conv", SUBSAMPLING_CONVS)
@pytest.mark.parametrize("half_rate_layers", [[], [0, 1]])
@pytest.mark.parametrize("training", [False, True])
def test_padding_does_not_change_valid_frames_in_either_mode(training, half_rate_layers, conv):
    """Without dropout, train mode (masked BatchNorm statistics) is padding-invariant too; so is a layer at half
    the frame rate (its pair average never takes a padded frame)."""
    enc = tiny_conformer(half_rate_layers=half_rate_layers, subsampling_conv=conv).train(training)
    x = torch.randn(2, 41, F)
    x_lens = torch.tensor([41, 29])
    out, out_lens = enc(x, x_lens)
    out_p, _ = enc(torch.cat([x, 100 * torch.randn(2, 30, F)], dim=1), x_lens)
    for b, n in enumerate(out_lens.tolist()):
        torch.testing.assert_close(out_p[b, :n], out[b, :n], atol=1e-5, rtol=1e-5)


def test_depthwise_subsampling_parameters_by_hand():
    c, d = 8, 16  # channels, d_model; F = 20 features -> 9 -> 4 (factor 4) -> 1 (factor 8)
    first = c * 9 + c  # Conv2d(1, C, 3)
    depthwise = c * 9 + c  # Conv2d(C, C, 3, groups=C)
    pointwise = c * c + c  # Conv2d(C, C, 1)
    norm = 2 * d  # LayerNorm(D)

    def count(m):
        return sum(p.numel() for p in m.parameters())

    assert count(Conv2dSubsampling(F, d, c, 4, "depthwise")) == first + depthwise + pointwise + (c * 4 * d + d) + norm
    assert count(Conv2dSubsampling(F, d, c, 4, "depthwise")) == 792
    assert count(Conv2dSubsampling(F, d, c, 8, "depthwise")) == first + 2 * (depthwise + pointwise) + (c * d + d) + norm
    assert count(Conv2dSubsampling(F, d, c, 4, "full")) == first + (c * c * 9 + c) + (c * 4 * d + d) + norm


def test_subsampling_conv_names_the_tensors_and_default_is_the_old_layout():
    """"full" keeps the state_dict of checkpoints written before the option; "depthwise" has NeMo's indexes."""
    full = [k for k in tiny_conformer().state_dict() if k.startswith("subsampling.conv.")]
    assert full == ["subsampling.conv.0.weight", "subsampling.conv.0.bias", "subsampling.conv.2.weight",
                    "subsampling.conv.2.bias"]  # fmt: skip
    dw = tiny_conformer(subsampling_conv="depthwise").state_dict()
    assert [k for k in dw if k.startswith("subsampling.conv.")] == [
        f"subsampling.conv.{i}.{p}" for i in (0, 2, 3) for p in ("weight", "bias")]
    assert dw["subsampling.conv.2.weight"].shape == (16, 1, 3, 3)  # depthwise
    assert dw["subsampling.conv.3.weight"].shape == (16, 16, 1, 1)  # pointwise


def test_subsampling_conv_reaches_the_encoder_from_the_config():
    cfg = ConformerConfig(num_features=F, d_model=16, num_heads=2, ff_dim=32, num_layers=1, cnn_kernel=5,
                          subsampling_conv="depthwise")  # fmt: skip
    assert Conformer.from_config(cfg).subsampling.conv[2].groups == 16
    assert ConformerConfig().subsampling_conv == "full"
    with pytest.raises(ValueError, match=r"subsampling_conv must be one of \('full', 'depthwise'\), got 'dw'"):
        tiny_conformer(subsampling_conv="dw")


def test_utterance_norm_matches_per_utterance_statistics_and_ignores_padding():
    x = 3.0 + 5.0 * torch.randn(3, 50, F)
    x_lens = torch.tensor([50, 31, 7])
    x[1, 31:] = 1e4  # padding garbage must not reach the statistics
    out = utterance_norm(x, x_lens)
    for b, n in enumerate(x_lens.tolist()):
        valid = x[b, :n]
        expected = (valid - valid.mean(0)) / valid.var(0, unbiased=False).add(1e-5).sqrt()
        torch.testing.assert_close(out[b, :n], expected, atol=1e-5, rtol=1e-5)
        assert torch.all(out[b, n:] == 0)
    # Invariant to a per-bin offset and scale of the whole utterance (channel / gain changes).
    torch.testing.assert_close(utterance_norm(2.0 * x - 7.0, x_lens)[0], out[0], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("training", [False, True])
def test_utterance_input_norm_keeps_padding_invariance(training):
    enc = tiny_conformer(input_norm="utterance").train(training)
    x = torch.randn(2, 41, F) - 10.0
    x_lens = torch.tensor([41, 29])
    out, out_lens = enc(x, x_lens)
    out_p, _ = enc(torch.cat([x, 100 * torch.randn(2, 30, F)], dim=1), x_lens)
    for b, n in enumerate(out_lens.tolist()):
        torch.testing.assert_close(out_p[b, :n], out[b, :n], atol=1e-5, rtol=1e-5)
    # A constant offset of the input changes nothing once normalised.
    out_shift, _ = enc(x + 4.0, x_lens)
    torch.testing.assert_close(out_shift, out, atol=1e-4, rtol=1e-4)


def test_masked_batch_norm_equals_batch_norm_over_valid_frames():
    d = 6
    masked, plain = MaskedBatchNorm1d(d), torch.nn.BatchNorm1d(d)
    with torch.no_grad():
        for bn in (masked, plain):
            bn.weight.copy_(torch.linspace(0.5, 2.0, d))
            bn.bias.copy_(torch.linspace(-1.0, 1.0, d))
    lens = [9, 4, 7]
    x = 3 * torch.randn(3, d, 9) + 2
    mask = torch.arange(9)[None, :] >= torch.tensor(lens)[:, None]  # (B, T)
    x = x.masked_fill(mask[:, None, :], 1e3)  # padding far off: any leak into the statistics shows
    out = masked(x, mask)
    valid = torch.cat([x[b, :, :n] for b, n in enumerate(lens)], dim=1).unsqueeze(0)  # (1, D, sum of lens)
    expected = plain(valid)
    torch.testing.assert_close(torch.cat([out[b, :, :n] for b, n in enumerate(lens)], dim=1).unsqueeze(0), expected)
    torch.testing.assert_close(masked.running_mean, plain.running_mean)
    torch.testing.assert_close(masked.running_var, plain.running_var)
    assert masked.num_batches_tracked.item() == 1
    masked.eval(), plain.eval()
    torch.testing.assert_close(masked(x, mask), plain(x))
    assert set(masked.state_dict()) == set(plain.state_dict())


def test_attention_matches_loop_oracle():
    torch.manual_seed(1)
    d, h, t = 8, 2, 5
    att = RelPositionMultiheadAttention(d, h, dropout=0.0)
    x = torch.randn(2, t, d, requires_grad=True)
    mask = torch.tensor([[False] * t, [False] * 3 + [True] * 2])
    pos = relative_positions(t, d, x.device, x.dtype)
    out = att(x, pos, mask)

    dh = d // h
    q, k, v = att.in_proj(x).view(2, t, 3, h, dh).unbind(dim=2)
    expected = torch.zeros(2, t, h, dh)
    for b in range(2):
        for hd in range(h):
            for i in range(t):
                scores = torch.full((t,), float("-inf"))
                for j in range(t):
                    if mask[b, j]:
                        continue
                    rel = relative_positions(t, d, x.device, x.dtype)[t - 1 - (i - j)]  # position i - j
                    assert torch.allclose(rel[0::2], torch.sin((i - j) * torch.exp(
                        torch.arange(0, d, 2) * (-math.log(10000.0) / d))))
                    p = att.linear_pos(rel).view(h, dh)[hd]
                    scores[j] = ((q[b, i, hd] + att.pos_bias_u[hd]) @ k[b, j, hd]
                                 + (q[b, i, hd] + att.pos_bias_v[hd]) @ p) / math.sqrt(dh)
                expected[b, i, hd] = torch.softmax(scores, 0) @ v[b, :, hd]
    expected = att.out_proj(expected.reshape(2, t, d))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # The backward too: the relative-position scores are read through a strided view of (T, 2T-1), whose gradient
    # must land on the right relative positions (and on every parameter) exactly as the loop's does.
    inputs = [x] + list(att.parameters())
    got = torch.autograd.grad(out.square().sum(), inputs, retain_graph=True)
    want = torch.autograd.grad(expected.square().sum(), inputs)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-4)


def test_bad_inputs_raise_clear_errors():
    enc = tiny_conformer()
    with pytest.raises(ValueError, match="x_lens must lie"):
        enc(torch.randn(2, 20, F), torch.tensor([20, 6]))
    with pytest.raises(ValueError, match="x_lens must lie"):
        enc(torch.randn(2, 20, F), torch.tensor([21, 10]))
    with pytest.raises(ValueError, match="expected x of shape"):
        enc(torch.randn(2, 20, F + 1), torch.tensor([20, 10]))
    with pytest.raises(ValueError, match="divisible"):
        tiny_conformer(num_heads=3)
    with pytest.raises(ValueError, match="input_norm"):
        tiny_conformer(input_norm="global")


def test_gradients_reach_every_parameter():
    enc = tiny_conformer().train()
    out, _ = enc(torch.randn(2, 30, F), torch.tensor([30, 20]))
    out.sum().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_fused_attention_in_inference_equals_the_explicit_path():
    """Without gradients (decoding, validation) the attention runs torch's fused kernel with the position term as
    its mask; it must give the explicit path's outputs, padding included, and must not run in training."""
    from asr.models.conformer import RelPositionMultiheadAttention, padding_mask, relative_positions

    torch.manual_seed(0)
    mha = RelPositionMultiheadAttention(32, 4, dropout=0.1).eval()
    x = torch.randn(3, 23, 32)
    mask = padding_mask(torch.tensor([23, 17, 5]), 23)
    pos = relative_positions(23, 32, x.device, x.dtype)
    with torch.no_grad():
        assert mha._fused_attention_applies()
        fused = mha(x, pos, mask)
    explicit = mha(x, pos, mask)  # gradients on: the explicit path
    assert not mha._fused_attention_applies()
    torch.testing.assert_close(fused, explicit.detach(), rtol=1e-5, atol=1e-6)
    mha.train()
    with torch.no_grad():
        assert not mha._fused_attention_applies()  # dropout 0.1 is drawn in training: explicit path
    mha.dropout.p = 0.0
    with torch.no_grad():
        assert mha._fused_attention_applies()
