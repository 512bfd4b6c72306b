"""asr.data.audio: reading any rate and channel count, and the features of training (lhotse's, for a cut of the
same file)."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import Fbank, FbankConfig, Recording

from asr.data.audio import AudioError, fbank, read_audio
from tests.decode.decode_fakes import tone


def test_resampling(tmp_path: Path):
    sf.write(tmp_path / "a.wav", tone(1.0, 8000, channels=2), 8000)
    samples = read_audio(tmp_path / "a.wav")
    assert samples.dtype == np.float32 and samples.shape == (16000,)


def test_features_match_lhotse_recording(tmp_path: Path):
    """The features of a 16 kHz file are those lhotse computes for a cut of it (the training pipeline)."""
    sf.write(tmp_path / "a.flac", tone(1.3, 16000), 16000)
    ours = fbank(read_audio(tmp_path / "a.flac"), 80)
    cut = Recording.from_file(tmp_path / "a.flac").to_cut()
    theirs = torch.from_numpy(cut.compute_features(Fbank(FbankConfig(num_filters=80))))
    assert ours.shape == theirs.shape == (130, 80)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_unreadable(tmp_path: Path):
    with pytest.raises(AudioError, match="no such file"):
        read_audio(tmp_path / "missing.wav")
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="cannot read"):
        read_audio(tmp_path / "bad.wav")
