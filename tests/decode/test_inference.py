"""The inference entry: choosing and averaging checkpoints (epoch/avg, iter, model_avg, one file), the BPE-model rule,
the whole load, and that decoding does not import the training code."""

import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from asr.checkpoint import CheckpointError, save_checkpoint
from asr.decode.config import DecodeConfig, SearchConfig
from asr.decode.inference import InferenceConfig, InferenceError, find_bpe_model, load_inference, load_model
from asr.models import ConformerConfig, DecoderConfig, JoinerConfig, ModelConfig, build_model
from decode_fakes import make_exp_dir

ROOT = Path(__file__).resolve().parents[2]

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


def test_bpe_model_rule(tmp_path: Path, monkeypatch):
    """1. the override; 2. the training config's path from the current directory, else from the exp dir upwards;
    3. an error naming both."""
    recipe = tmp_path / "recipe"
    (recipe / "data" / "lang").mkdir(parents=True)
    (recipe / "data" / "lang" / "bpe.model").write_bytes(b"x")
    exp = recipe / "exp" / "run1"
    exp.mkdir(parents=True)
    saved = {"data": {"bpe_model": "data/lang/bpe.model"}}
    monkeypatch.chdir(tmp_path)  # the saved relative path does not exist from here: found from exp upwards
    assert find_bpe_model("", saved, exp) == recipe / "data" / "lang" / "bpe.model"
    monkeypatch.chdir(recipe)  # from the recipe folder, as training ran: as it is
    assert find_bpe_model("", saved, exp) == Path("data/lang/bpe.model")
    other = tmp_path / "other.model"
    other.write_bytes(b"y")
    assert find_bpe_model(str(other), saved, exp) == other  # the override wins
    with pytest.raises(FileNotFoundError, match="no BPE model at"):
        find_bpe_model(str(tmp_path / "missing.model"), saved, exp)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="give bpe_model"):
        find_bpe_model("", {"data": {"bpe_model": "data/lang_bpe_9/bpe.model"}}, exp)
    with pytest.raises(FileNotFoundError, match="names no BPE model"):
        find_bpe_model("", {}, exp)


def test_load_inference(tmp_path: Path, monkeypatch):
    exp = make_exp_dir(tmp_path)  # its config names the BPE model by an absolute path
    inf = load_inference(InferenceConfig(exp_dir=str(exp), device="cpu"))
    assert inf.description == "epoch-1-avg-1" and inf.fusion is None and inf.fusion_name == ""
    assert inf.tokenizer.vocab_size == inf.model.vocab_size and inf.num_features == 80
    assert inf.device == torch.device("cpu") and not inf.model.training
    assert inf.setting(SearchConfig(method="modified_beam_search", beam=8)) == "modified_beam_search_beam_8_epoch-1-avg-1"
    with pytest.raises(InferenceError, match="cannot load the model: .*tokens, the model"):
        load_inference(InferenceConfig(exp_dir=str(exp), device="cpu", bpe_model=str(_other_bpe(tmp_path))))
    with pytest.raises(InferenceError, match="cannot load the LM: no lexicon at"):
        load_inference(InferenceConfig(exp_dir=str(exp), device="cpu", lexicon=str(tmp_path / "none.txt")))


def _other_bpe(tmp_path: Path) -> Path:
    from asr.data.bpe import train_bpe
    from decode_fakes import SENTENCES

    return train_bpe(SENTENCES, tmp_path / "lang_other", vocab_size=25)


def test_inference_config_from_decode_config():
    d = DecodeConfig(exp_dir="e", epoch=3, avg=2, iter=0, use_averaged_model=True, checkpoint="", bpe_model="b",
                     device="cpu", decode=SearchConfig(method="modified_beam_search", lm="x.arpa", lm_scale=0.7,
                                                       lexicon="w.txt", word_lm="w.arpa", word_lm_bonus=1.5))
    c = InferenceConfig.from_decode_config(d)
    assert (c.exp_dir, c.epoch, c.avg, c.use_averaged_model, c.bpe_model, c.device) == ("e", 3, 2, True, "b", "cpu")
    assert (c.lm, c.lm_scale, c.lexicon, c.word_lm, c.word_lm_bonus) == ("x.arpa", 0.7, "w.txt", "w.arpa", 1.5)
    assert InferenceConfig().lm_scale == SearchConfig().lm_scale  # one default


def test_decoding_does_not_import_training():
    code = ("import sys, asr.decode, asr.decode.inference, asr.decode.transcribe, asr.checkpoint; "
            "print(sorted(m for m in sys.modules if m == 'asr.train' or m.startswith('asr.train.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
