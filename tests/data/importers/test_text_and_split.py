"""Text normalisation does what its settings say and nothing more; the seeded split is deterministic and disjoint."""

from __future__ import annotations

import pytest
from lhotse import SupervisionSegment

from asr.data.importers import SplitConfig, TextNormalizer, split_supervisions
from asr.data.importers.config import ImportConfig, TextNormConfig


@pytest.mark.parametrize("cfg,raw,expected", [
    (TextNormConfig(), "Hello, World! It's 5 o'clock.", "HELLO WORLD IT'S 5 O'CLOCK"),
    (TextNormConfig(case="lower"), "Hello, World!", "hello world"),
    (TextNormConfig(case="keep"), "Hello, World!", "Hello World"),
    (TextNormConfig(punctuation="keep"), "hello,  world!", "HELLO, WORLD!"),
    (TextNormConfig(keep_apostrophes=False), "it's 'quoted'", "IT S QUOTED"),
    (TextNormConfig(), "'quoted' rock'n'roll", "QUOTED ROCK'N'ROLL"),
    (TextNormConfig(), "well-known co-op", "WELL KNOWN CO OP"),
    (TextNormConfig(), "50% of $3, R&D.", "50% OF $3 R&D"),  # symbols and numbers left alone
    (TextNormConfig(keep_chars=""), "50% of $3, R&D.", "50 OF $3 R D"),
    (TextNormConfig(), "ｆｕｌｌ width ﬁne", "FULL WIDTH FINE"),  # NFKC
    (TextNormConfig(unicode_nfkc=False, case="keep"), "ﬁne", "ﬁne"),
    (TextNormConfig(case="keep"), "Ça va? Größe «x»", "Ça va Größe x"),
    (TextNormConfig(), " \t ...!? ", ""),
])
def test_text_normalisation(cfg, raw, expected):
    assert TextNormalizer(cfg)(raw) == expected


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="case"):
        TextNormConfig(case="title")
    with pytest.raises(ValueError, match="numbers"):
        TextNormConfig(numbers="spell")
    with pytest.raises(ValueError, match="min_duration"):
        ImportConfig(min_duration=5, max_duration=2)
    with pytest.raises(ValueError, match="dev_fraction"):
        SplitConfig(dev_fraction=0.6, test_fraction=0.5)


def _sups(n_speakers: int, per_speaker: int, with_speaker: bool = True) -> list[SupervisionSegment]:
    return [SupervisionSegment(f"s{s}-u{u}", f"s{s}-u{u}", 0, 1.0, text="x",
                               speaker=f"s{s}" if with_speaker else None)
            for s in range(n_speakers) for u in range(per_speaker)]


def _ids(parts):
    return {k: [s.id for s in v] for k, v in parts.items()}


def test_split_by_speaker_is_deterministic_and_disjoint():
    sups = _sups(20, 10)
    cfg = SplitConfig(dev_fraction=0.1, test_fraction=0.1, seed=3)
    parts, info = split_supervisions(sups, cfg)
    assert info["by"] == "speaker"
    assert _ids(split_supervisions(list(reversed(sups)), cfg)[0]) == _ids(parts)  # order does not matter
    spk = {k: {s.speaker for s in v} for k, v in parts.items()}
    assert not spk["train"] & spk["dev"] and not spk["train"] & spk["test"] and not spk["dev"] & spk["test"]
    assert sorted(s.id for v in parts.values() for s in v) == sorted(s.id for s in sups)  # nothing lost
    assert len(parts["dev"]) == 20 and len(parts["test"]) == 20  # 2 whole speakers each
    other = split_supervisions(sups, SplitConfig(dev_fraction=0.1, test_fraction=0.1, seed=4))[0]
    assert _ids(other) != _ids(parts)


def test_split_by_utterance_without_speakers():
    sups = _sups(1, 100, with_speaker=False)
    parts, info = split_supervisions(sups, SplitConfig(dev_fraction=0.05, test_fraction=0.1, seed=0))
    assert info["by"] == "utterance" and "no speaker" in info["why"]
    assert (len(parts["train"]), len(parts["dev"]), len(parts["test"])) == (85, 5, 10)
    assert _ids(parts) == _ids(split_supervisions(sups, SplitConfig(dev_fraction=0.05, test_fraction=0.1))[0])


def test_split_too_few_speakers_falls_back_to_utterances():
    parts, info = split_supervisions(_sups(2, 20), SplitConfig(dev_fraction=0.1, test_fraction=0.1))
    assert info["by"] == "utterance" and "2 speaker" in info["why"]
    assert len(parts["dev"]) == 4 and len(parts["test"]) == 4


def test_split_keeps_train_and_gives_each_held_out_set_one_group():
    parts, _ = split_supervisions(_sups(3, 1), SplitConfig(dev_fraction=0.01, test_fraction=0.01))
    assert [len(parts[k]) for k in ("train", "dev", "test")] == [1, 1, 1]
    parts, _ = split_supervisions(_sups(1, 1, with_speaker=False), SplitConfig(dev_fraction=0.3, test_fraction=0.3))
    assert [len(parts[k]) for k in ("train", "dev", "test")] == [1, 0, 0]
