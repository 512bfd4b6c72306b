"""Fixtures of the data tests: a tiny corpus and its prepared manifests, features and BPE model (per session), and
a data module over them."""

from __future__ import annotations

from pathlib import Path

import pytest

from asr.data.config import DataConfig
from asr.data.features import TRAIN_ALL
from asr.data.loaders import AsrDataModule
from asr.data.tokenizer import Tokenizer
from asr.models import EncoderFrames
from tests.data.data_fixtures import MAX_DURATION, make_corpus, prepare_corpus


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> tuple[Path, dict[str, dict[str, float]]]:
    root = tmp_path_factory.mktemp("corpus")
    return root, make_corpus(root, {"train-clean-100": 6, "dev-clean": 3})


@pytest.fixture(scope="session")
def prepared(tiny_corpus, tmp_path_factory) -> Path:
    """Manifests, features (with speed perturbation), the train-all-shuf cuts and a 34-unit BPE model."""
    root, _ = tiny_corpus
    return prepare_corpus(root, tmp_path_factory.mktemp("prepared"))


@pytest.fixture()
def module(prepared) -> AsrDataModule:
    cfg = DataConfig(manifest_dir=str(prepared / "fbank"), bpe_model=str(prepared / "lang" / "bpe.model"),
                     train_cuts=TRAIN_ALL, valid_sets=["dev-clean"], test_sets=["dev-clean", "test-other"],
                     max_duration=MAX_DURATION, num_buckets=2, num_workers=0, spec_aug=True,
                     min_cut_duration=1.0, max_cut_duration=20.0)
    return AsrDataModule(cfg, Tokenizer(cfg.bpe_model), frames_fn=EncoderFrames(4))
