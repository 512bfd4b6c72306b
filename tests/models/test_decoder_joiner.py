"""Stateless decoder (training vs decoding mode) and joiner (projection before or inside)."""

import pytest
import torch

from asr.models.decoder import Decoder
from asr.models.joiner import Joiner

V, DD = 11, 6


@pytest.mark.parametrize("context_size", [1, 2, 3])
def test_decoding_mode_equals_training_mode(context_size):
    dec = Decoder(vocab_size=V, decoder_dim=DD, blank_id=0, context_size=context_size)
    labels = torch.randint(1, V, (3, 7))
    y = torch.cat([torch.zeros(3, 1, dtype=torch.int64), labels], dim=1)  # [blank] + labels
    train_out = dec(y, need_pad=True)
    assert train_out.shape == (3, 8, DD)
    padded = torch.cat([torch.zeros(3, context_size - 1, dtype=torch.int64), y], dim=1)
    for u in range(y.size(1)):
        context = padded[:, u : u + context_size]  # the context_size labels ending at u
        step_out = dec(context, need_pad=False)
        assert step_out.shape == (3, 1, DD)
        torch.testing.assert_close(step_out[:, 0], train_out[:, u])


def test_output_depends_only_on_the_last_context_labels():
    dec = Decoder(vocab_size=V, decoder_dim=DD, blank_id=0, context_size=2)
    y1 = torch.tensor([[0, 3, 5, 7, 2]])
    y2 = torch.tensor([[0, 9, 4, 7, 2]])  # differs only before the last two labels
    torch.testing.assert_close(dec(y1)[:, -1], dec(y2)[:, -1])
    assert not torch.allclose(dec(y1)[:, 2], dec(y2)[:, 2])


def test_blank_embedding_is_zero_and_relu_applied():
    dec = Decoder(vocab_size=V, decoder_dim=DD, blank_id=0, context_size=2)
    assert torch.all(dec.embedding.weight[0] == 0)
    assert torch.all(dec(torch.zeros(1, 2, dtype=torch.int64), need_pad=False) == 0)
    assert torch.all(dec(torch.randint(0, V, (4, 9))) >= 0)


def test_decoder_bad_inputs():
    dec = Decoder(vocab_size=V, decoder_dim=DD, blank_id=0, context_size=2)
    with pytest.raises(ValueError, match="exactly context_size"):
        dec(torch.zeros(1, 3, dtype=torch.int64), need_pad=False)
    with pytest.raises(ValueError, match="blank_id"):
        Decoder(vocab_size=V, decoder_dim=DD, blank_id=V, context_size=2)


def test_joiner_projection_before_equals_inside_and_broadcasts():
    joiner = Joiner(encoder_dim=5, decoder_dim=DD, joiner_dim=7, vocab_size=V)
    enc = torch.randn(2, 4, 5)
    dec = torch.randn(2, 3, DD)
    full = joiner(enc.unsqueeze(2), dec.unsqueeze(1))  # (B, T, U + 1, V)
    assert full.shape == (2, 4, 3, V)
    pre = joiner(joiner.encoder_proj(enc).unsqueeze(2), joiner.decoder_proj(dec).unsqueeze(1), project_input=False)
    torch.testing.assert_close(full, pre)
    manual = joiner.output_linear(torch.tanh(joiner.encoder_proj(enc)[:, 1] + joiner.decoder_proj(dec)[:, 2]))
    torch.testing.assert_close(full[:, 1, 2], manual)
