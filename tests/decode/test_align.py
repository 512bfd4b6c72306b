"""Forced alignment (asr.decode.align): Viterbi against brute force over every path of small lattices."""

import itertools

import pytest
import torch

from asr.decode import align as align_fn
from asr.decode.align import align_encoded, viterbi
from asr.decode.greedy import greedy_search_batch

from tests.decode.decode_fakes import TinyTransducer


def _paths(T: int, U: int):
    """Every path of the regular RNN-T lattice: T blanks and U labels in any order, ending with a blank."""
    for labels_at in itertools.combinations(range(T + U - 1), U):
        yield ["label" if i in labels_at else "blank" for i in range(T + U - 1)] + ["blank"]


def _brute_force(label_lp, blank_lp, T: int, U: int) -> tuple[float, list[int]]:
    """(score, frames) of the best path, by enumeration. label_lp (T, U), blank_lp (T, U + 1) as lists."""
    best = (float("-inf"), [])
    for path in _paths(T, U):
        t = u = 0
        score, frames = 0.0, []
        for arc in path:
            if arc == "label":
                score += label_lp[t][u]
                frames.append(t)
                u += 1
            else:
                score += blank_lp[t][u]
                t += 1
        best = max(best, (score, frames))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_viterbi_equals_brute_force_on_random_lattices(seed: int):
    """Random (unnormalised) arc scores, a batch of lattices of different sizes padded together."""
    g = torch.Generator().manual_seed(seed)
    sizes = [(4, 3), (1, 0), (3, 3), (2, 1), (4, 0), (1, 3)]
    label_lp = torch.randn(len(sizes), 4, 3, generator=g, dtype=torch.float64) * 2
    blank_lp = torch.randn(len(sizes), 4, 4, generator=g, dtype=torch.float64) * 2
    frames, lps, scores = viterbi(label_lp, blank_lp, [t for t, _ in sizes], [u for _, u in sizes])
    for b, (T, U) in enumerate(sizes):
        want_score, want_frames = _brute_force(label_lp[b].tolist(), blank_lp[b].tolist(), T, U)
        assert scores[b] == pytest.approx(want_score, abs=1e-9)
        assert frames[b] == want_frames
        u_at = list(range(U))
        assert lps[b] == pytest.approx([label_lp[b, t, u].item() for t, u in zip(frames[b], u_at)])


def _lattice_of(model, enc, seq):
    """Joiner log-probs of one utterance's lattice, cell by cell. enc: (T, D)."""
    c, blank = model.context_size, model.blank_id
    label_lp, blank_lp = [], []
    for t in range(enc.size(0)):
        row_l, row_b = [], []
        for u in range(len(seq) + 1):
            ctx = ([blank] * c + seq[:u])[-c:]
            dec = model.joiner.decoder_proj(model.decoder(torch.tensor([ctx]), need_pad=False))[:, 0]
            lp = model.joiner(model.joiner.encoder_proj(enc[t : t + 1]), dec, project_input=False).log_softmax(-1)[0]
            row_b.append(lp[blank].item())
            if u < len(seq):
                row_l.append(lp[seq[u]].item())
        label_lp.append(row_l)
        blank_lp.append(row_b)
    return label_lp, blank_lp


@pytest.mark.parametrize("seed", range(3))
def test_align_on_a_model_equals_brute_force(seed: int):
    """align_encoded builds the lattice from the model's decoder and joiner; batched, padded utterances."""
    model = TinyTransducer(vocab_size=4, seed=seed).eval()
    g = torch.Generator().manual_seed(seed)
    enc = torch.randn(3, 4, 8, generator=g, dtype=torch.float64)
    lens = torch.tensor([4, 2, 3])
    tokens = [[1, 3, 2], [2], []]
    hyps = align_encoded(model, enc, lens, tokens)
    with torch.no_grad():
        for h, seq, e, n in zip(hyps, tokens, enc, lens.tolist()):
            label_lp, blank_lp = _lattice_of(model, e[:n], seq)
            score, frames = _brute_force(label_lp, blank_lp, n, len(seq))
            assert h.tokens == seq and h.frames == frames
            assert h.score == pytest.approx(score, abs=1e-9)
            assert h.log_probs == pytest.approx([label_lp[t][u] for u, t in enumerate(frames)], abs=1e-9)


def test_align_of_a_greedy_hypothesis_is_at_least_as_probable(tiny_model: TinyTransducer):
    """Greedy's path (with enough symbols per frame to end every frame with a blank, as the lattice does) is one
    path of its own tokens' lattice: the best path scores at least as much, and the same when Viterbi picks it."""
    torch.manual_seed(6)
    lens = torch.tensor([12, 7])
    enc = torch.randn(2, 12, 8, dtype=torch.float64)
    with torch.no_grad():
        tiny_model.joiner.output_linear.bias[tiny_model.blank_id] += 3.0  # frames end with a blank, not the limit
    greedy = greedy_search_batch(tiny_model, enc, lens, max_sym_per_frame=100)
    assert all(max(map(g.frames.count, g.frames), default=0) < 100 for g in greedy)
    assert sum(len(g.tokens) for g in greedy) > 3  # not vacuous
    aligned = align_encoded(tiny_model, enc, lens, [h.tokens for h in greedy])
    for g, a in zip(greedy, aligned):
        assert a.tokens == g.tokens and a.score >= g.score - 1e-9
        assert a.frames == sorted(a.frames)
        if a.frames == g.frames:
            assert a.score == pytest.approx(g.score, abs=1e-9)


def test_align_rejects_bad_input(tiny_model: TinyTransducer):
    enc = torch.randn(2, 5, 8, dtype=torch.float64)
    with pytest.raises(ValueError, match="2 token sequences|got 1 token"):
        align_encoded(tiny_model, enc, torch.tensor([5, 5]), [[1]])
    with pytest.raises(ValueError, match="not be blank"):
        align_encoded(tiny_model, enc, torch.tensor([5, 5]), [[1], [0]])
    with pytest.raises(ValueError, match="0 encoder frames"):
        align_encoded(tiny_model, enc, torch.tensor([5, 0]), [[1], [2]])


def test_align_is_exported_as_a_function():
    assert callable(align_fn)
