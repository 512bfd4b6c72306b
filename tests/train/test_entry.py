"""recipes/librispeech/train.py end to end on a tiny prepared corpus: trains, writes the exp dir, resumes."""

import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    from tests.data.data_fixtures import make_corpus, prepare_corpus

    root = tmp_path_factory.mktemp("corpus")
    make_corpus(root, {"train-clean-100": 6, "dev-clean": 2})
    return prepare_corpus(root, tmp_path_factory.mktemp("prepared"))


def _train(prepared: Path, exp_dir: Path, python_exe: str, *extra: str) -> subprocess.CompletedProcess:
    overrides = [
        "model=conformer_small", "model.vocab_size=34", "model.encoder.d_model=16", "model.encoder.num_heads=2",
        "model.encoder.ff_dim=32", "model.encoder.num_layers=1", "model.decoder.decoder_dim=16",
        "model.joiner.joiner_dim=16", "data=demo", f"data.manifest_dir={prepared / 'fbank'}",
        f"data.bpe_model={prepared / 'lang' / 'bpe.model'}", "data.max_duration=8", "data.num_buckets=2",
        "data.num_workers=0", "data.spec_aug=false", "data.drop_last=false", "trainer=demo",
        f"trainer.exp_dir={exp_dir}", "trainer.log_interval=1", "trainer.save_every_n=1", "trainer.num_epochs=1",
        "optim.warm_step=100", *extra,
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [python_exe, str(REPO / "recipes" / "librispeech" / "train.py"), *overrides]
    return subprocess.run(cmd, cwd=exp_dir.parent, env=env, capture_output=True, text=True, timeout=300)


def test_train_entry_point_writes_exp_dir_and_resumes(prepared, tmp_path, python_exe):
    exp = tmp_path / "exp"
    first = _train(prepared, exp, python_exe, "trainer.max_steps=2")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    cfg = yaml.safe_load((exp / "config.yaml").read_text())
    assert cfg["model"]["encoder"]["d_model"] == 16 and cfg["optim"]["model_size"] == 16  # resolved interpolation
    assert (exp / "checkpoint-2.pt").is_file() and list((exp / "log").glob("log-train-*.txt"))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(exp / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/simple_loss", "train/pruned_loss", "train/lr", "train/grad_norm",
            "train/frames_per_s"} <= tags, tags  # fmt: skip
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
    assert not list(tmp_path.glob("outputs")) and not list(tmp_path.glob(".hydra"))  # no Hydra run dirs

    second = _train(prepared, exp, python_exe)  # the same command without the step limit: finishes the epoch
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resumed from" in second.stdout and "checkpoint-2.pt" in second.stdout
    events = EventAccumulator(str(exp / "tensorboard"))
    events.Reload()
    assert "valid/loss" in events.Tags()["scalars"]  # validation at the epoch end
    state = torch.load(exp / "epoch-1.pt", weights_only=False)
    assert state["epoch"] == 1 and state["batch_idx_train"] > 2 and state["sampler"]["epoch_finished"]
    assert set(state) >= {"model", "model_avg", "optimizer", "scheduler", "grad_scaler", "sampler", "rng",
                          "epoch", "batch_idx_train", "config"}  # fmt: skip
    assert all(bool(torch.isfinite(v).all()) for v in state["model"].values() if v.is_floating_point())


def test_train_entry_point_with_a_time_budget_and_subsampling_by_8(prepared, tmp_path, python_exe):
    """trainer.max_minutes ends the run after its first batch with that epoch's epoch-E.pt (partial); the encoder's
    subsampling factor reaches the model, the data filter and the loss (frames_fn)."""
    exp = tmp_path / "exp"
    run = _train(prepared, exp, python_exe, "trainer.max_minutes=0.0001", "model.encoder.subsampling_factor=8")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "time budget of 0.0001 min spent after 1 batches" in run.stdout
    state = torch.load(exp / "epoch-1.pt", weights_only=False)
    assert state["batch_idx_train"] == 1 and not state["sampler"]["epoch_finished"] and state["train_seconds"] > 0
    assert state["config"]["model"]["encoder"]["subsampling_factor"] == 8
    assert sum(1 for k in state["model"] if k.startswith("encoder.subsampling.conv.") and k.endswith(".weight")) == 3


@pytest.mark.slow
def test_entry_point_resume_is_bit_identical_with_spec_augment(prepared, tmp_path, python_exe):
    """Through the real data module (SpecAugment on, num_workers=0): stopping after 3 and 5 batches and re-running
    gives the weights of an uninterrupted run, bit for bit."""
    common = ("trainer.num_epochs=2", "data.spec_aug=true")
    ref = _train(prepared, tmp_path / "ref", python_exe, *common)
    assert ref.returncode == 0, ref.stderr[-3000:]
    exp = tmp_path / "stopped"
    for extra in (("trainer.max_steps=3",), ("trainer.max_steps=5",), ()):
        out = _train(prepared, exp, python_exe, *common, *extra)
        assert out.returncode == 0, out.stderr[-3000:]
    a, b = (torch.load(d / "epoch-2.pt", weights_only=False) for d in (tmp_path / "ref", exp))
    assert a["batch_idx_train"] == b["batch_idx_train"] > 5
    assert all(torch.equal(t, b["model"][k]) for k, t in a["model"].items())
