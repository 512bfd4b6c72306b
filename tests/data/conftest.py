"""Session fixtures of the data tests: a tiny corpus and its prepared manifests, features and BPE model."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.data.data_fixtures import make_corpus, prepare_corpus


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> tuple[Path, dict[str, dict[str, float]]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, make_corpus(root, {"train-clean-100": 6, "dev-clean": 3})


@pytest.fixture(scope="session")
def prepared(tiny_corpus, tmp_path_factory) -> Path:
    """Manifests, features (with speed perturbation), the train-all-shuf cuts and a 34-unit BPE model."""
    root, _ = tiny_corpus
    return prepare_corpus(root, tmp_path_factory.mktemp("prepared"))
