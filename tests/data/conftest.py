"""Session fixtures of the data tests: a tiny corpus and its prepared manifests, features and BPE model."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_fixtures import WORDS, make_corpus


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> tuple[Path, dict[str, dict[str, float]]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, make_corpus(root, {"train-clean-100": 6, "dev-clean": 3})


@pytest.fixture(scope="session")
def prepared(tiny_corpus, tmp_path_factory) -> Path:
    """Manifests, features (with speed perturbation), the train-all-shuf cuts and a 34-unit BPE model.

    The BPE model is trained on the transcripts and the whole word list, so that every test sentence is spellable.
    """
    from asr.data.bpe import train_bpe, train_transcripts
    from asr.data.features import combine_train, compute_subset
    from asr.data.prepare import prepare_librispeech_manifests

    root, _ = tiny_corpus
    work = tmp_path_factory.mktemp("prepared")
    prepare_librispeech_manifests(root / "LibriSpeech", work / "manifests")
    for subset in ("train-clean-100", "dev-clean"):
        compute_subset(work / "manifests", work / "fbank", subset, num_jobs=1)
    combine_train(work / "fbank", ["train-clean-100"])
    train_bpe(train_transcripts(work / "manifests") + [" ".join(WORDS)], work / "lang", vocab_size=34)
    return work
