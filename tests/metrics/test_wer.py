"""WER against hand-computed cases and the content of the result files."""

from pathlib import Path

import pytest

from asr.metrics.wer import EPS, ErrorStats, Result, align, compute_wer, count_errors, write_results


def test_identical_is_zero():
    s = compute_wer([Result("a", "THE CAT SAT".split(), "THE CAT SAT".split())])
    assert (s.ref_words, s.errors, s.wer) == (3, 0, 0.0)


@pytest.mark.parametrize(
    ("ref", "hyp", "ins", "dels", "subs"),
    [
        # one substitution
        ("THE CAT SAT", "THE HAT SAT", 0, 0, 1),
        # one deletion, at the end
        ("THE CAT SAT", "THE CAT", 0, 1, 0),
        # one insertion, at the start
        ("THE CAT", "OH THE CAT", 1, 0, 0),
        # everything deleted
        ("A B C D", "", 0, 4, 0),
        # one of each: A B C D -> A X C D E is sub B->X and ins E
        ("A B C D", "A X C D E", 1, 0, 1),
        # 2 deletions + 1 substitution beat 3 substitutions + 2 deletions? min edits = 3
        ("A B C D E", "A C X", 0, 2, 1),
    ],
)
def test_hand_computed(ref, hyp, ins, dels, subs):
    s = count_errors(align(ref.split(), hyp.split()))
    assert (s.insertions, s.deletions, s.substitutions) == (ins, dels, subs)
    assert s.ref_words == len(ref.split())


def test_corpus_wer_sums_counts_not_rates():
    # utt1: 1 error / 2 words, utt2: 0 errors / 8 words -> 1 / 10 = 10%, not the mean of rates (25%).
    results = [
        Result("u1", "A B".split(), "A C".split()),
        Result("u2", "A B C D E F G H".split(), "A B C D E F G H".split()),
    ]
    assert compute_wer(results).wer == pytest.approx(10.0)


def test_empty_reference():
    assert ErrorStats().wer == 0.0
    assert compute_wer([Result("u", [], ["X"])]).wer == float("inf")


def test_reserved_eps_is_rejected():
    with pytest.raises(ValueError, match="reserved"):
        align(["A", EPS], ["A"])


def test_files(tmp_path: Path):
    results = [
        Result("u2", "THE CAT SAT".split(), "THE HAT SAT".split()),
        Result("u1", "A B C".split(), "A C".split()),
        Result("u3", "HELLO".split(), "HELLO WORLD".split()),
    ]
    stats = write_results(tmp_path, "test-clean", "greedy", results)
    assert (stats.errors, stats.ref_words) == (3, 7)

    recogs = (tmp_path / "recogs-test-clean-greedy.txt").read_text().splitlines()
    assert recogs[0] == "u1:\tref=['A', 'B', 'C']"
    assert recogs[1] == "u1:\thyp=['A', 'C']"
    assert len(recogs) == 6

    errs = (tmp_path / "errs-test-clean-greedy.txt").read_text()
    assert errs.startswith("%WER 42.86 [ 3 / 7, 1 ins, 1 del, 1 sub ]")
    assert "u2:\tTHE (CAT->HAT) SAT" in errs
    assert "u1:\tA (B->*) C" in errs
    assert "u3:\tHELLO (*->WORLD)" in errs
    sub_block = errs.split("SUBSTITUTIONS: count ref -> hyp\n")[1]
    assert sub_block.startswith("1   CAT -> HAT\n")
    assert "DELETIONS: count ref\n1   B\n" in errs
    assert "INSERTIONS: count hyp\n1   WORLD\n" in errs

    summary = (tmp_path / "wer-summary-test-clean-greedy.txt").read_text().splitlines()
    assert summary == ["settings\tWER", "greedy\t42.86"]


def test_most_frequent_error_first(tmp_path: Path):
    results = [Result(f"u{i}", ["A", "B"], ["A", "X" if i < 3 else "Y"]) for i in range(4)]
    write_results(tmp_path, "s", "m", results)
    errs = (tmp_path / "errs-s-m.txt").read_text()
    block = errs.split("SUBSTITUTIONS: count ref -> hyp\n")[1].split("\n\n")[0].splitlines()
    assert block == ["3   B -> X", "1   B -> Y"]
