"""Training's fbank (lhotse) and the Kaldi-compatible fbank sherpa-onnx computes (its settings, torchaudio's Kaldi
implementation) agree: same frames, log-mel values within 1e-3, digital silence included (the log floor)."""

import numpy as np
import pytest

from asr.export.frontend import AudioError, fbank_difference, kaldi_fbank, read_audio, training_fbank


@pytest.mark.parametrize("seconds", [0.5, 1.234, 3.0])
def test_fbanks_agree(seconds):
    rng = np.random.default_rng(0)
    n = int(seconds * 16000)
    t = np.arange(n) / 16000
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) * (t > 0.2) + 0.01 * rng.standard_normal(n) * (t > 0.1))
    audio = audio.astype(np.float32)  # the first 0.1 s digital silence
    d = fbank_difference(audio)
    assert d["frames_training"] == d["frames_kaldi"] == training_fbank(audio).shape[0]
    assert d["max_abs"] < 1e-3, d
    assert kaldi_fbank(audio).shape[1] == 80
    silence = training_fbank(audio)[:5]
    assert float(silence.max()) < -15.0  # the float-epsilon log floor, in both


def test_read_audio_errors(tmp_path):
    with pytest.raises(AudioError, match="no such file"):
        read_audio(tmp_path / "missing.wav")
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    with pytest.raises(AudioError, match="cannot read"):
        read_audio(tmp_path / "bad.wav")
