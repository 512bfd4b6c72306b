"""data.manifest_prefix: the data tools and the loaders name and find manifests <prefix>_<kind>_<subset>.jsonl.gz."""

from pathlib import Path

import pytest
from lhotse import SupervisionSegment, SupervisionSet

from asr.data.bpe import train_transcripts
from asr.data.config import DataConfig
from asr.data.loaders import AsrDataModule
from asr.data.prepare import manifest_name


def test_manifest_names():
    assert manifest_name("cuts", "dev") == "librispeech_cuts_dev.jsonl.gz"  # the LibriSpeech recipe's, unchanged
    assert manifest_name("supervisions", "train", "custom") == "custom_supervisions_train.jsonl.gz"


def test_transcripts_and_loaders_read_their_prefix(tmp_path: Path):
    sups = SupervisionSet.from_segments([SupervisionSegment("u1", "r1", 0.0, 1.0, text="HELLO")])
    sups.to_file(tmp_path / manifest_name("supervisions", "train", "custom"))
    assert train_transcripts(tmp_path, "custom") == ["HELLO"]
    with pytest.raises(FileNotFoundError, match="librispeech_supervisions_train"):
        train_transcripts(tmp_path)
    (tmp_path / manifest_name("cuts", "dev", "custom")).write_bytes(b"")
    custom = AsrDataModule(DataConfig(manifest_dir=str(tmp_path), manifest_prefix="custom"), tokenizer=None)
    assert custom._has_cuts("dev") and not custom._has_cuts("test")
    assert not AsrDataModule(DataConfig(manifest_dir=str(tmp_path)), tokenizer=None)._has_cuts("dev")
