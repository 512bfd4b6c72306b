"""The three searches on a real decoder + joiner (asr.models) that has overfit a few utterances.

The encoder output is fixed and marks where each label is spoken (a label's vector on two frames, the blank's
vector elsewhere);
decoder and joiner learn the labels with the full RNN-T loss (asr.loss.rnnt_loss).

Trained on the "regular" lattice (several labels per frame), the model puts labels where a search that stays on the
frame after a label expects them: greedy search with max_sym_per_frame > 1 and beam search find the labels (greedy
with one symbol per frame does not: the encoder here is not trained, so timing stays vague). Trained on the
"modified" lattice (one label per frame), greedy search with one symbol per frame and modified beam search do.
"""

import pytest
import torch

import asr.loss
from asr.decode.beam_search import beam_search
from asr.decode.greedy import greedy_search_batch
from asr.decode.modified_beam_search import modified_beam_search
from asr.models import Decoder, Joiner

pytestmark = pytest.mark.slow  # two small trainings, ~15 s on CPU

LABELS = [[3, 5, 7, 2], [4, 4, 9], [8, 1, 6, 6, 2]]  # repeated labels: one on each of two segments
STEPS = 200
SEGMENT = 2  # frames per label segment; the same number of blank frames between them
DIM, VOCAB, BLANK = 16, 10, 0


class DecoderJoiner(torch.nn.Module):
    """The part of a Transducer the searches use."""

    def __init__(self) -> None:
        super().__init__()
        self.decoder = Decoder(VOCAB, DIM, BLANK, context_size=2)
        self.joiner = Joiner(DIM, DIM, DIM, VOCAB)
        self.blank_id, self.vocab_size, self.context_size = BLANK, VOCAB, 2


def overfit(rnnt_type: str):
    torch.manual_seed(0)
    model = DecoderJoiner()
    protos = 3.0 * torch.randn(VOCAB, DIM)  # protos[BLANK] marks the frames between labels
    lens = torch.tensor([SEGMENT * (2 * len(lab) + 1) for lab in LABELS])
    enc = 0.1 * torch.randn(len(LABELS), int(lens.max()), DIM) + protos[BLANK]  # (B, T, D)
    y = torch.zeros(len(LABELS), max(map(len, LABELS)), dtype=torch.int64)  # (B, U)
    for i, lab in enumerate(LABELS):
        y[i, : len(lab)] = torch.tensor(lab)
        for u, v in enumerate(lab):
            enc[i, SEGMENT * (2 * u + 1) : SEGMENT * (2 * u + 2)] += protos[v] - protos[BLANK]
    y_lens = torch.tensor([len(lab) for lab in LABELS])
    boundary = torch.stack([torch.zeros_like(lens), torch.zeros_like(lens), y_lens, lens], dim=1)  # (B, 4)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(STEPS):
        dec = model.decoder(torch.cat([torch.zeros(len(LABELS), 1, dtype=torch.int64), y], dim=1))  # (B, U+1, D)
        logits = model.joiner(enc.unsqueeze(2), dec.unsqueeze(1))  # (B, T, U + 1, V)
        loss = asr.loss.rnnt_loss(logits, y, BLANK, boundary, rnnt_type=rnnt_type, reduction="sum")
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return model, enc, lens, loss.item()


def test_regular_lattice_model_greedy_equals_beam_search():
    model, enc, lens, final_loss = overfit("regular")
    assert final_loss < 1.0, f"the model did not overfit (loss {final_loss:.3f})"
    greedy = [h.tokens for h in greedy_search_batch(model, enc, lens, max_sym_per_frame=3)]
    assert greedy == LABELS
    for i, n in enumerate(lens.tolist()):
        assert beam_search(model, enc[i : i + 1, :n], beam=4).tokens == greedy[i]


def test_modified_lattice_model_greedy_equals_modified_beam_search():
    model, enc, lens, final_loss = overfit("modified")
    assert final_loss < 1.0, f"the model did not overfit (loss {final_loss:.3f})"
    greedy = [h.tokens for h in greedy_search_batch(model, enc, lens, max_sym_per_frame=1)]
    assert greedy == LABELS
    assert [h.tokens for h in modified_beam_search(model, enc, lens, beam=4)] == LABELS
