"""Half-rate layers: pair averaging, repeat-and-bypass, and a Conformer that uses them (shapes, padding, config)."""

import pytest
import torch

from asr.models.conformer import Conformer
from asr.models.time_reduction import BypassUpsample, PairDownsample, halved_lengths

F = 20


def test_halved_lengths_round_up():
    assert halved_lengths(torch.tensor([1, 2, 3, 4, 61, 90])).tolist() == [1, 1, 2, 2, 31, 45]


def test_pair_downsample_averages_pairs_and_pairs_an_odd_last_frame_with_itself():
    down = PairDownsample()  # zero logits: equal weights
    x = torch.arange(2 * 5 * 1, dtype=torch.float32).view(2, 5, 1)  # frames 0..4 and 5..9
    x[1, 3:] = 1e6  # padding of the second utterance (3 valid frames)
    out, lens = down(x, torch.tensor([5, 3]))
    assert lens.tolist() == [3, 2]
    assert out[0, :, 0].tolist() == [0.5, 2.5, 4.0]  # (0+1)/2, (2+3)/2, 4 with itself
    assert out[1, :2, 0].tolist() == [5.5, 7.0]  # (5+6)/2, 7 with itself: the padding never enters
    with torch.no_grad():
        down.logits.copy_(torch.tensor([0.0, 1e4]))  # all weight on the second frame of each pair
    out, _ = down(x, torch.tensor([5, 3]))
    assert out[0, :, 0].tolist() == [1.0, 3.0, 4.0]


def test_bypass_upsample_repeats_trims_and_mixes_with_the_skip():
    up = BypassUpsample(d_model=1)  # scale 0.5
    half = torch.tensor([[[2.0], [4.0]]])  # (1, 2, 1)
    skip = torch.tensor([[[0.0], [2.0], [8.0]]])  # (1, 3, 1): odd T
    out = up(half, skip)
    assert out[0, :, 0].tolist() == [1.0, 2.0, 6.0]  # skip + 0.5 * ([2, 2, 4] - skip)


def _encoder(**kw) -> Conformer:
    args = dict(num_features=F, d_model=16, num_heads=2, ff_dim=32, num_layers=4, cnn_kernel=5, dropout=0.0,
                half_rate_layers=[1, 3]) | kw  # fmt: skip
    return Conformer(**args)


def test_half_rate_encoder_keeps_its_frames_and_equals_each_utterance_alone():
    enc = _encoder().eval()
    x = torch.randn(2, 90, F)
    x_lens = torch.tensor([90, 61])
    out, out_lens = enc(x, x_lens)
    assert out.shape == (2, 21, 16) and out_lens.tolist() == [21, 14]  # the frames of subsampling by 4
    assert torch.all(out[1, 14:] == 0)
    alone, _ = enc(x[1:, :61], x_lens[1:])  # 61 frames -> 14 -> 7 at half rate: an odd pair at the end
    torch.testing.assert_close(alone[0], out[1, :14], atol=1e-5, rtol=1e-5)


def test_half_rate_encoder_trains_its_reduction_and_differs_from_full_rate():
    torch.manual_seed(0)
    enc = _encoder()
    out, _ = enc(torch.randn(2, 60, F), torch.tensor([60, 45]))
    out.square().sum().backward()
    assert enc.downsample.logits.grad.abs().sum() > 0 and enc.upsample.scale.grad.abs().sum() > 0
    torch.manual_seed(0)
    full = _encoder(half_rate_layers=[])
    assert not hasattr(full, "downsample")
    assert set(enc.state_dict()) - set(full.state_dict()) == {"downsample.logits", "upsample.scale"}


@pytest.mark.parametrize("bad", [[1], [2, 2], [3, 1], [1, 4], [-1, 2]])
def test_half_rate_layers_are_checked(bad):
    with pytest.raises(ValueError, match="half_rate_layers must be"):
        _encoder(half_rate_layers=bad)
