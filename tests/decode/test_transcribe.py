"""asr-transcribe: audio reading, features as training computes them, and the CLI's handling of bad files."""

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from lhotse import Fbank, FbankConfig, Recording

from asr.data.bpe import train_bpe
from asr.decode.transcribe import AudioError, features, main, read_audio
from asr.models import ConformerConfig, DecoderConfig, JoinerConfig, ModelConfig, build_model
from asr.train.checkpoint import save_checkpoint

SENTENCES = ["THE CAT SAT ON THE MAT", "A DOG RAN IN THE PARK", "HELLO WORLD AND GOOD DAY TO YOU"] * 20


def _tone(seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(t.size)
    return np.stack([x] * channels, axis=1).astype(np.float32)


def test_resampling(tmp_path: Path):
    sf.write(tmp_path / "a.wav", _tone(1.0, 8000, channels=2), 8000)
    samples = read_audio(tmp_path / "a.wav")
    assert samples.dtype == np.float32 and samples.shape == (16000,)


def test_features_match_lhotse_recording(tmp_path: Path):
    """The features of a 16 kHz file are those lhotse computes for a cut of it (the training pipeline)."""
    sf.write(tmp_path / "a.flac", _tone(1.3, 16000), 16000)
    ours = features(read_audio(tmp_path / "a.flac"), 80)
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


@pytest.fixture
def exp_dir(tmp_path: Path) -> Path:
    bpe = train_bpe(SENTENCES, tmp_path / "lang", vocab_size=30)
    from asr.data.tokenizer import Tokenizer

    cfg = ModelConfig(
        vocab_size=Tokenizer(bpe).vocab_size,
        encoder=ConformerConfig(num_features=80, d_model=16, num_heads=2, ff_dim=32, num_layers=1, cnn_kernel=3),
        decoder=DecoderConfig(decoder_dim=16),
        joiner=JoinerConfig(joiner_dim=16),
    )
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():
        model.joiner.output_linear.bias[0] -= 3.0  # emit some labels, so that the text is not empty
    exp = tmp_path / "exp"
    state = {"model": model.state_dict(), "model_avg": None, "batch_idx_train": 10,
             "config": {"model": asdict(cfg), "data": {"bpe_model": str(bpe)}}}
    save_checkpoint(exp / "epoch-1.pt", state)
    return exp


def test_cli_bad_file_does_not_stop_the_others(exp_dir: Path, tmp_path: Path, capsys):
    good1, good2 = tmp_path / "one.wav", tmp_path / "two.flac"
    sf.write(good1, _tone(1.0, 22050), 22050)
    sf.write(good2, _tone(0.8, 16000), 16000)
    missing, bad = tmp_path / "missing.wav", tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF garbage")
    rc = main(["--exp-dir", str(exp_dir), str(good1), str(missing), str(bad), str(good2)])
    out, err = capsys.readouterr()
    assert rc == 1
    lines = out.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(good1), str(good2)]
    for line in lines:
        path, text = line.split("\t")
        assert text == text.upper() and text.strip()
    assert f"{missing}: no such file" in err
    assert f"{bad}: cannot read audio" in err
    assert "2 of 4 files" in err


@pytest.mark.parametrize("method", ["greedy", "beam_search", "modified_beam_search"])
def test_cli_all_good_exits_zero(exp_dir: Path, tmp_path: Path, capsys, method: str):
    sf.write(tmp_path / "a.wav", _tone(1.0, 16000), 16000)
    assert main(["--exp-dir", str(exp_dir), "--method", method, str(tmp_path / "a.wav")]) == 0
    assert capsys.readouterr().out.startswith(f"{tmp_path / 'a.wav'}\t")


def test_cli_bad_exp_dir(tmp_path: Path, capsys):
    assert main(["--exp-dir", str(tmp_path / "nope"), str(tmp_path / "a.wav")]) == 2
    assert "cannot load the model" in capsys.readouterr().err
