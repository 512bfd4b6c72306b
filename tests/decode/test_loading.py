"""Choosing and averaging checkpoints for decoding (epoch/avg, iter, model_avg, one file)."""

from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from asr.decode.loading import load_model
from asr.models import ConformerConfig, DecoderConfig, JoinerConfig, ModelConfig, build_model
from asr.train.checkpoint import CheckpointError, save_checkpoint

TINY = ModelConfig(
    vocab_size=10,
    encoder=ConformerConfig(num_features=8, d_model=16, num_heads=2, ff_dim=32, num_layers=1, cnn_kernel=3),
    decoder=DecoderConfig(decoder_dim=16),
    joiner=JoinerConfig(joiner_dim=16),
)


def _filled(value: float) -> dict:
    model = build_model(TINY)
    return {k: (torch.full_like(v, value) if v.is_floating_point() else v) for k, v in model.state_dict().items()}


def _save(path: Path, value: float, avg_value: float | None, batches: int) -> None:
    save_checkpoint(
        path,
        {
            "model": _filled(value),
            "model_avg": None if avg_value is None else _filled(avg_value),
            "batch_idx_train": batches,
            "config": {"model": asdict(TINY)},
        },
    )


@pytest.fixture
def exp_dir(tmp_path: Path) -> Path:
    # epoch e: weights all e; running average all 10*e after 100*e batches; checkpoint-N: weights N/100
    for e in (1, 2, 3):
        _save(tmp_path / f"epoch-{e}.pt", float(e), 10.0 * e, 100 * e)
    for n in (50, 150, 250):
        _save(tmp_path / f"checkpoint-{n}.pt", n / 100, n / 10, n)
    return tmp_path


def _value(loaded) -> float:
    w = loaded.model.joiner.output_linear.weight
    assert torch.all(w == w.flatten()[0])
    return float(w.flatten()[0])


def test_epoch_avg(exp_dir: Path):
    assert _value(load_model(exp_dir, epoch=3, avg=2)) == pytest.approx(2.5)
    assert _value(load_model(exp_dir, epoch=2, avg=1)) == pytest.approx(2.0)
    loaded = load_model(exp_dir)  # newest epoch, avg 1
    assert _value(loaded) == pytest.approx(3.0)
    assert loaded.description == "epoch-3-avg-1"
    assert not loaded.model.training


def test_iter_avg(exp_dir: Path):
    assert _value(load_model(exp_dir, iteration=200, avg=2)) == pytest.approx((1.5 + 0.5) / 2)


def test_averaged_model(exp_dir: Path):
    # window epochs 2..3: (avg_3 * 300 - avg_1 * 100) / 200 = (30 * 300 - 10 * 100) / 200 = 40
    assert _value(load_model(exp_dir, epoch=3, avg=2, use_averaged_model=True)) == pytest.approx(40.0)
    # window from the start of training: the running average itself
    assert _value(load_model(exp_dir, epoch=2, avg=2, use_averaged_model=True)) == pytest.approx(20.0)


def test_one_file(exp_dir: Path):
    assert _value(load_model(exp_dir, checkpoint=exp_dir / "checkpoint-150.pt")) == pytest.approx(1.5)


def test_errors(exp_dir: Path, tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="epoch-"):
        load_model(exp_dir, epoch=2, avg=3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="N <= 10"):
        load_model(exp_dir, iteration=10)
    (exp_dir / "epoch-4.pt").write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="truncated"):
        load_model(exp_dir, epoch=4)
