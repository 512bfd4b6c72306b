"""Greedy, beam and modified beam search against known answers, brute force and each other."""

import pytest
import torch

from asr.decode.beam_search import beam_search
from asr.decode.greedy import greedy_search_batch
from asr.decode.modified_beam_search import modified_beam_search

from tests.decode.decode_fakes import ScriptTransducer, TinyTransducer, assert_same_hyps, exact_best, one_symbol_path, tokens_of

# per-frame intended labels (0 = blank): the script model emits exactly these labels, in order, once each
SCRIPTS = [
    [1, 0, 2, 2, 0, 3],  # a label held over two frames is emitted once
    [4, 0, 0, 5],
    [0, 0, 0],  # nothing
    [3, 1, 3, 1, 2, 0, 5, 4],
    [2],
]


def _expected(script: list[int]) -> list[int]:
    out: list[int] = []
    for x in script:
        if x != 0 and (not out or out[-1] != x):
            out.append(x)
    return out


def test_greedy_on_script_model(script_model: ScriptTransducer):
    enc, lens = script_model.encoder_out_for(SCRIPTS)
    assert tokens_of(greedy_search_batch(script_model, enc, lens)) == [_expected(s) for s in SCRIPTS]


@pytest.mark.parametrize("beam", [1, 2, 4])
def test_beam_search_equals_greedy_on_peaked_model(script_model: ScriptTransducer, beam: int):
    enc, lens = script_model.encoder_out_for(SCRIPTS)
    greedy = tokens_of(greedy_search_batch(script_model, enc, lens))
    for i, n in enumerate(lens.tolist()):
        assert beam_search(script_model, enc[i : i + 1, :n], beam=beam).tokens == greedy[i]


def test_modified_beam_search_on_script_model(script_model: ScriptTransducer):
    enc, lens = script_model.encoder_out_for(SCRIPTS)
    assert tokens_of(modified_beam_search(script_model, enc, lens, beam=4)) == [_expected(s) for s in SCRIPTS]


def test_greedy_several_symbols_per_frame():
    """A model that wants two labels on one frame: max_sym_per_frame=1 drops the second, 2 keeps it."""
    model = ScriptTransducer(peak=8.0)

    class TwoPerFrame(torch.nn.Module):
        # emits 1 then 2 on frame 0 (context decides), blank afterwards
        def __init__(self, inner):
            super().__init__()
            self.encoder_proj = inner.encoder_proj
            self.decoder_proj = inner.decoder_proj

        def forward(self, enc, dec, project_input=True):
            enc, dec = torch.broadcast_tensors(enc, dec)
            last = dec.argmax(-1)
            logits = torch.zeros_like(enc)
            first_frame = enc[..., 1] > 0.5
            logits[..., 0] = 1.0
            logits[..., 1] += 5.0 * (first_frame & (last == 0))
            logits[..., 2] += 5.0 * (first_frame & (last == 1))
            return logits

    model.joiner = TwoPerFrame(model.joiner)
    enc, lens = model.encoder_out_for([[1, 0, 0], [0, 0]])
    assert tokens_of(greedy_search_batch(model, enc, lens, max_sym_per_frame=1)) == [[1], []]
    assert tokens_of(greedy_search_batch(model, enc, lens, max_sym_per_frame=3)) == [[1, 2], []]
    assert beam_search(model, enc[:1], beam=2).tokens == [1, 2]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("length_norm", [True, False])
def test_modified_beam_search_with_wide_beam_is_exact(seed: int, length_norm: bool):
    """With a beam wider than the number of label sequences, nothing is pruned: the result is the exact best
    sequence over all one-symbol-per-frame alignments (brute force)."""
    model = TinyTransducer(vocab_size=3, seed=seed).eval()
    torch.manual_seed(seed)
    enc = torch.randn(1, 5, 8, dtype=torch.float64)
    want, hyps = exact_best(model, enc[0], length_norm)
    got = tokens_of(modified_beam_search(model, enc, torch.tensor([5]), beam=3**5, length_norm=length_norm))
    assert got == [want]


def test_modified_beam_search_batched_equals_one_at_a_time(tiny_model: TinyTransducer):
    torch.manual_seed(0)
    lens = torch.tensor([7, 12, 1, 9, 12, 0])
    enc = torch.randn(len(lens), 12, 8, dtype=torch.float64)
    batched = modified_beam_search(tiny_model, enc, lens, beam=4)
    single = [
        modified_beam_search(tiny_model, enc[i : i + 1, :n], lens[i : i + 1], beam=4)[0]
        for i, n in enumerate(lens.tolist())
    ]
    assert_same_hyps(batched, single)
    assert batched[-1].tokens == []
    assert any(len(h.tokens) > 1 for h in batched)  # the test is not vacuous


def test_greedy_batched_equals_one_at_a_time(tiny_model: TinyTransducer):
    torch.manual_seed(1)
    lens = torch.tensor([10, 3, 10, 6])
    enc = torch.randn(len(lens), 10, 8, dtype=torch.float64)
    for sym in (1, 3):
        batched = greedy_search_batch(tiny_model, enc, lens, max_sym_per_frame=sym)
        single = [
            greedy_search_batch(tiny_model, enc[i : i + 1, :n], lens[i : i + 1], sym)[0]
            for i, n in enumerate(lens.tolist())
        ]
        assert_same_hyps(batched, single)


def test_greedy_equals_modified_beam_one(tiny_model: TinyTransducer):
    """Modified beam search with beam 1 is greedy search with one symbol per frame."""
    torch.manual_seed(2)
    lens = torch.tensor([10, 4, 8])
    enc = torch.randn(3, 10, 8, dtype=torch.float64)
    assert tokens_of(modified_beam_search(tiny_model, enc, lens, beam=1)) == tokens_of(greedy_search_batch(tiny_model, enc, lens))


def test_beam_search_not_worse_than_greedy_on_random_model():
    """Beam search keeps the greedy path among its candidates often enough that its best hypothesis scores at least
    as well under the search's own objective; checked via the exact score of both label sequences."""
    for seed in range(3):
        model = TinyTransducer(vocab_size=3, seed=seed).eval()
        torch.manual_seed(seed)
        enc = torch.randn(1, 5, 8, dtype=torch.float64)
        _, hyps = exact_best(model, enc[0], length_norm=False)
        g = greedy_search_batch(model, enc, torch.tensor([5]))[0].tokens
        m = modified_beam_search(model, enc, torch.tensor([5]), beam=8, length_norm=False)[0].tokens
        c = (0, 0)
        assert hyps[c + tuple(m)] >= hyps[c + tuple(g)] - 1e-12


def test_modified_beam_search_decoder_work_is_not_repeated(tiny_model: TinyTransducer):
    """Decoder rows computed = 1 start context + at most one per slot that grew; far fewer than K per frame."""
    torch.manual_seed(3)
    lens = torch.tensor([20, 20])
    enc = torch.randn(2, 20, 8, dtype=torch.float64)
    tiny_model.decoder.calls = 0
    modified_beam_search(tiny_model, enc, lens, beam=4)
    assert 1 <= tiny_model.decoder.calls <= 1 + 2 * 20 * 4
    calls = tiny_model.decoder.calls
    tiny_model.decoder.calls = 0
    greedy_search_batch(tiny_model, enc, lens)
    hyps = greedy_search_batch(tiny_model, enc, lens)
    assert tiny_model.decoder.calls == 2 * (1 + sum(len(h.tokens) for h in hyps))  # two runs
    assert calls > 0


def test_bad_input_is_rejected(tiny_model: TinyTransducer):
    enc = torch.randn(2, 5, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="encoder_out_lens"):
        greedy_search_batch(tiny_model, enc, torch.tensor([5, 6]))
    with pytest.raises(ValueError, match="one utterance"):
        beam_search(tiny_model, enc)
    with pytest.raises(ValueError, match="beam"):
        modified_beam_search(tiny_model, enc, torch.tensor([5, 5]), beam=0)
    with pytest.raises(ValueError, match="max_sym_per_frame"):
        greedy_search_batch(tiny_model, enc, torch.tensor([5, 5]), max_sym_per_frame=0)


def _onsets(script: list[int]) -> list[int]:
    """Frame on which each label of _expected(script) starts."""
    return [t for t, x in enumerate(script) if x != 0 and (t == 0 or script[t - 1] != x)]


def test_every_search_gives_the_frame_and_log_prob_of_each_token(script_model: ScriptTransducer):
    """On the script model each label is emitted on the first frame of its run, with the joiner's log-probability
    there; the greedy score is the log-probability of the whole path (every frame's symbol)."""
    enc, lens = script_model.encoder_out_for(SCRIPTS)
    found = {
        "greedy": greedy_search_batch(script_model, enc, lens),
        "greedy_3": greedy_search_batch(script_model, enc, lens, max_sym_per_frame=3),
        "modified": modified_beam_search(script_model, enc, lens, beam=4),
        "beam": [beam_search(script_model, enc[i : i + 1, :n], beam=2) for i, n in enumerate(lens.tolist())],
    }
    for name, hyps in found.items():
        for script, h in zip(SCRIPTS, hyps):
            assert h.tokens == _expected(script), name
            assert h.frames == _onsets(script), name
            assert len(h.log_probs) == len(h.tokens) and all(-1.0 < lp <= 0.0 for lp in h.log_probs), name


def test_greedy_and_modified_beam_log_probs_are_the_joiners(tiny_model: TinyTransducer):
    """Each token's log-probability is the joiner's at its frame and context; greedy's score is its path's."""
    torch.manual_seed(4)
    lens = torch.tensor([9, 5])
    enc = torch.randn(2, 9, 8, dtype=torch.float64)
    with torch.no_grad():
        for h, n, e in zip(greedy_search_batch(tiny_model, enc, lens), lens.tolist(), enc):
            lps, total = one_symbol_path(tiny_model, e[:n], h.tokens, h.frames)
            assert h.log_probs == pytest.approx(lps, abs=1e-9) and h.score == pytest.approx(total, abs=1e-9)
            assert len(set(h.frames)) == len(h.frames) and h.frames == sorted(h.frames)
        for h, n, e in zip(modified_beam_search(tiny_model, enc, lens, beam=4, length_norm=False), lens.tolist(), enc):
            lps, total = one_symbol_path(tiny_model, e[:n], h.tokens, h.frames)
            assert h.log_probs == pytest.approx(lps, abs=1e-9)
            assert h.score >= total - 1e-9  # merged alignments add up: at least the kept path's probability
