"""Words from hypotheses (asr.decode.words): text from pieces, times from frames, confidence from log-probs."""

import math

import pytest
import torch

from asr.decode.hypothesis import Hypothesis
from asr.decode.words import Word, frame_shift_s, words_of

PIECES = ["<blk>", "\u2581HE", "LLO", "\u2581WORLD", "\u2581", "A", "B", "\u2581C"]


def test_words_from_pieces_frames_and_log_probs():
    hyp = Hypothesis(tokens=[1, 2, 3, 4, 5, 6], frames=[2, 5, 9, 12, 12, 13],
                     log_probs=[-0.1, -0.7, -0.2, -0.05, -0.3, -0.01], score=-3.0)  # fmt: skip
    words = words_of(hyp, PIECES, 0.04)
    assert [w.word for w in words] == ["HELLO", "WORLD", "AB"]  # a lone "▁" starts the word its next pieces spell
    assert [w.start for w in words] == pytest.approx([0.08, 0.36, 0.48])
    assert [w.end for w in words] == pytest.approx([0.24, 0.40, 0.56])  # last frame + 1, capped at the next start
    assert [w.confidence for w in words] == pytest.approx([math.exp(-0.7), math.exp(-0.2), math.exp(-0.3)])
    assert all(isinstance(w, Word) and 0.0 <= w.confidence <= 1.0 for w in words)


def test_words_emitted_on_one_frame_do_not_overlap():
    hyp = Hypothesis(tokens=[7, 3, 7], frames=[4, 4, 6], log_probs=[0.0, -1.0, -2.0], score=-3.0)
    words = words_of(hyp, PIECES, 0.08)
    assert [(w.word, w.start, w.end) for w in words] == [
        ("C", pytest.approx(0.32), pytest.approx(0.32)),
        ("WORLD", pytest.approx(0.32), pytest.approx(0.40)),
        ("C", pytest.approx(0.48), pytest.approx(0.56)),
    ]
    assert all(a.end <= b.start for a, b in zip(words, words[1:]))


def test_first_piece_without_boundary_and_empty_hypothesis():
    assert words_of(Hypothesis([], [], [], 0.0), PIECES, 0.04) == []
    words = words_of(Hypothesis([5, 6, 4], [0, 1, 3], [-0.5, -0.1, -0.2], 0.0), PIECES, 0.04)
    assert [w.word for w in words] == ["AB"]  # the trailing lone "▁" spells no word
    assert words[0].end == pytest.approx(0.08)


def test_bad_hypotheses_are_rejected():
    with pytest.raises(ValueError, match="a frame and a log-prob per token"):
        words_of(Hypothesis([1, 2], [0], [0.0, 0.0], 0.0), PIECES, 0.04)
    with pytest.raises(ValueError, match="token id 9 has no piece"):
        words_of(Hypothesis([9], [0], [0.0], 0.0), PIECES, 0.04)


@pytest.mark.parametrize("factor", [4, 8])
def test_frame_shift_is_the_subsampling_factor_times_10_ms(factor: int):
    from asr.models import ConformerConfig, ModelConfig, build_model

    cfg = ModelConfig(vocab_size=8, encoder=ConformerConfig(d_model=16, num_heads=2, ff_dim=16, num_layers=1,
                                                            subsampling_factor=factor))
    model = build_model(cfg)
    assert frame_shift_s(model) == pytest.approx(factor * 0.01)
    # the shift matches the encoder: 10 s of 10 ms features give about 10 s / shift frames
    frames = int(model.encoder.frames_fn(torch.tensor([1000]))[0])
    assert abs(frames * frame_shift_s(model) - 10.0) < 2 * frame_shift_s(model)
    with pytest.raises(ValueError, match="subsampling_factor"):
        frame_shift_s(torch.nn.Linear(2, 2))


def test_words_are_those_of_the_decoded_text(trained):
    """Property over random token sequences (unknown and control pieces included): the words of words_of are the
    words of sentencepiece's decode of the same tokens, with pieces_of's spelling."""
    import random

    from asr.data.tokenizer import Tokenizer
    from asr.decode.hypothesis import Hypothesis
    from asr.decode.words import pieces_of, words_of

    tok = Tokenizer(trained.bpe_model)
    pieces = pieces_of(tok)
    rng = random.Random(0)
    for _ in range(300):
        ids = [rng.randrange(tok.vocab_size) for _ in range(rng.randrange(0, 12))]
        hyp = Hypothesis(ids, sorted(rng.randrange(50) for _ in ids), [-0.1] * len(ids), 0.0)
        assert [w.word for w in words_of(hyp, pieces, 0.04)] == tok.decode([ids])[0].split(), ids
