"""asr.checkpoint: atomic save, safe load (old checkpoints still load, code-running ones are refused on every path),
discovery, pruning, averaging; asr.decode does not import asr.train."""

import os
import random
import shutil
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from asr.checkpoint import (
    CheckpointError,
    UnsafeCheckpointError,
    average_checkpoints,
    average_with_model_avg,
    EPOCH_RE,
    STEP_RE,
    checkpoints_by_progress,
    epoch_checkpoint_name,
    find_checkpoints,
    load_checkpoint,
    numbered_checkpoints,
    remove_old_checkpoints,
    save_checkpoint,
    step_checkpoint_name,
)
from asr.train.averaging import make_model_average, update_model_average

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "checkpoint-v0.1.pt"
TINY = ROOT / "tests" / "train" / "tiny.py"


def _state(step: int, value: float, epoch_finished: bool = False) -> dict:
    return {
        "model": {"w": torch.full((3,), value), "n": torch.tensor(step)},
        "model_avg": None,
        "batch_idx_train": step,
        "sampler": {"epoch_finished": epoch_finished},
    }


def _truncate(path, keep: float = 0.5):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_save_load_round_trip_leaves_no_temp_file(tmp_path):
    save_checkpoint(tmp_path / "checkpoint-5.pt", _state(5, 1.5))
    state = load_checkpoint(tmp_path / "checkpoint-5.pt")
    assert torch.equal(state["model"]["w"], torch.full((3,), 1.5)) and state["batch_idx_train"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-5.pt"]


def test_truncated_checkpoint_raises_clear_error(tmp_path):
    path = tmp_path / "checkpoint-5.pt"
    save_checkpoint(path, _state(5, 1.0))
    _truncate(path)
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(path)


def test_by_progress_skips_truncated_with_warning(tmp_path):
    save_checkpoint(tmp_path / "checkpoint-3.pt", _state(3, 1.0))
    save_checkpoint(tmp_path / "epoch-1.pt", _state(4, 2.0, epoch_finished=True))
    save_checkpoint(tmp_path / "checkpoint-6.pt", _state(6, 3.0))
    assert [p.name for p in checkpoints_by_progress(tmp_path)] == ["checkpoint-6.pt", "epoch-1.pt", "checkpoint-3.pt"]
    _truncate(tmp_path / "checkpoint-6.pt")
    with pytest.warns(UserWarning, match="checkpoint-6.pt"):
        assert [p.name for p in checkpoints_by_progress(tmp_path)] == ["epoch-1.pt", "checkpoint-3.pt"]


def test_epoch_end_is_later_than_same_step_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "checkpoint-4.pt", _state(4, 1.0))
    save_checkpoint(tmp_path / "epoch-1.pt", _state(4, 1.0, epoch_finished=True))
    assert checkpoints_by_progress(tmp_path)[0].name == "epoch-1.pt"


def test_names_and_numbers(tmp_path):
    assert step_checkpoint_name(120) == "checkpoint-120.pt" and STEP_RE.match(step_checkpoint_name(120))
    assert epoch_checkpoint_name(3) == "epoch-3.pt" and EPOCH_RE.match(epoch_checkpoint_name(3))
    assert not STEP_RE.match("epoch-3.pt") and not EPOCH_RE.match(".epoch-3.pt.tmp-12")
    for name in ("epoch-10.pt", "epoch-2.pt", "checkpoint-7.pt", "notes.pt"):
        (tmp_path / name).write_bytes(b"")
    assert numbered_checkpoints(tmp_path) == {2: tmp_path / "epoch-2.pt", 10: tmp_path / "epoch-10.pt"}
    assert numbered_checkpoints(tmp_path, STEP_RE) == {7: tmp_path / "checkpoint-7.pt"}
    assert [p.name for p in find_checkpoints(tmp_path)] == ["checkpoint-7.pt", "epoch-2.pt", "epoch-10.pt"]


def test_remove_old_keeps_last_k_and_epochs(tmp_path):
    for step in (2, 4, 6, 8):
        save_checkpoint(tmp_path / f"checkpoint-{step}.pt", _state(step, 0.0))
    save_checkpoint(tmp_path / "epoch-1.pt", _state(5, 0.0, True))
    remove_old_checkpoints(tmp_path, keep_last_k=2)
    assert [p.name for p in find_checkpoints(tmp_path)] == ["checkpoint-6.pt", "checkpoint-8.pt", "epoch-1.pt"]


def test_average_checkpoints_hand_computed(tmp_path):
    paths = []
    for i, (w, n) in enumerate([([1.0, 2.0, 4.0], 3), ([2.0, 2.0, 0.0], 4), ([0.0, 5.0, 2.0], 6)]):
        p = tmp_path / f"epoch-{i + 1}.pt"
        save_checkpoint(p, {"model": {"w": torch.tensor(w), "n": torch.tensor(n)}, "batch_idx_train": i})
        paths.append(p)
    avg = average_checkpoints(paths)
    assert torch.allclose(avg["w"], torch.tensor([1.0, 3.0, 2.0]))  # column means
    assert avg["w"].dtype == torch.float32
    assert int(avg["n"]) == 4  # (3 + 4 + 6) // 3


def test_running_average_is_mean_of_period_snapshots_and_differences():
    model = torch.nn.Linear(2, 1, bias=False)
    avg = make_model_average(model)
    snapshots = []
    for k, value in enumerate([1.0, 3.0, 8.0, 4.0], start=1):  # period 5: batches 5, 10, 15, 20
        with torch.no_grad():
            model.weight.fill_(value)
        snapshots.append(value)
        update_model_average(avg, model, batch_idx_train=5 * k, average_period=5)
        assert torch.allclose(avg.weight, torch.full((1, 2), sum(snapshots) / k, dtype=torch.float64))


def test_average_with_model_avg(tmp_path):
    # running means after 10 and 30 batches: 2.0 and 3.0 -> the mean over batches 11..30 is (3*30 - 2*10) / 20
    for name, n, mean in (("checkpoint-10.pt", 10, 2.0), ("checkpoint-30.pt", 30, 3.0)):
        save_checkpoint(
            tmp_path / name,
            {"model": {"w": torch.zeros(2)}, "model_avg": {"w": torch.full((2,), mean, dtype=torch.float64)},
             "batch_idx_train": n},
        )  # fmt: skip
    out = average_with_model_avg(tmp_path / "checkpoint-10.pt", tmp_path / "checkpoint-30.pt")
    assert torch.allclose(out["w"], torch.full((2,), 3.5)) and out["w"].dtype == torch.float32


# ------------------------------------------------------------------------------------------------- safe loading
class _RunsCode:
    """Unpickling it calls exec, which creates `marker`: what a checkpoint from an untrusted source may do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _malicious(path: Path, marker: Path, batches: int = 5) -> Path:
    """A checkpoint-shaped file whose pickle runs code (torch.save of an object with __reduce__)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {"w": torch.zeros(2)}, "model_avg": None, "batch_idx_train": batches,
                "sampler": {"epoch_finished": True}, "payload": _RunsCode(marker)}, path)  # fmt: skip
    return path


def test_the_malicious_file_does_run_code_when_loaded_unsafely(tmp_path):
    """The oracle of the refusal tests: without weights_only the file runs its code."""
    marker = tmp_path / "ran"
    torch.load(_malicious(tmp_path / "evil.pt", marker), weights_only=False)
    assert marker.exists()


def test_load_refuses_code_and_names_the_file(tmp_path):
    marker = tmp_path / "ran"
    path = _malicious(tmp_path / "epoch-1.pt", marker)
    with pytest.raises(UnsafeCheckpointError, match=r"refused to load checkpoint .*epoch-1\.pt.*run code.*builtins\.exec"):
        load_checkpoint(path)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(path, mmap=True)
    assert not marker.exists()


def test_scan_for_resume_stops_at_an_unsafe_file(tmp_path):
    """A truncated file is skipped (an accident); an unsafe one stops everything (nothing of the dir is trusted)."""
    marker = tmp_path / "ran"
    save_checkpoint(tmp_path / "exp" / "checkpoint-3.pt", _state(3, 1.0))
    _malicious(tmp_path / "exp" / "checkpoint-6.pt", marker, batches=6)
    with pytest.raises(UnsafeCheckpointError, match="checkpoint-6.pt"):
        checkpoints_by_progress(tmp_path / "exp")
    assert not marker.exists()


def test_averaging_refuses_code(tmp_path):
    marker = tmp_path / "ran"
    good = tmp_path / "epoch-1.pt"
    save_checkpoint(good, {"model": {"w": torch.ones(2)}, "model_avg": {"w": torch.ones(2, dtype=torch.float64)},
                           "batch_idx_train": 1})  # fmt: skip
    evil = _malicious(tmp_path / "epoch-2.pt", marker)
    with pytest.raises(UnsafeCheckpointError, match="epoch-2.pt"):
        average_checkpoints([good, evil])
    with pytest.raises(UnsafeCheckpointError, match="epoch-2.pt"):
        average_with_model_avg(good, evil)
    assert not marker.exists()


def _tiny_exp_with_malicious(tmp_path: Path, marker: Path) -> Path:
    """An exp dir whose epoch-1.pt is a real tiny model checkpoint and whose epoch-2.pt and checkpoint-20.pt run
    code."""
    from asr.models import ConformerConfig, DecoderConfig, JoinerConfig, ModelConfig, build_model

    cfg = ModelConfig(vocab_size=10, encoder=ConformerConfig(num_features=8, d_model=16, num_heads=2, ff_dim=32,
                                                             num_layers=1, cnn_kernel=3),
                      decoder=DecoderConfig(decoder_dim=16), joiner=JoinerConfig(joiner_dim=16))  # fmt: skip
    exp = tmp_path / "exp"
    save_checkpoint(exp / "epoch-1.pt", {"model": build_model(cfg).state_dict(), "model_avg": None,
                                         "batch_idx_train": 10, "config": {"model": asdict(cfg)}})  # fmt: skip
    _malicious(exp / "epoch-2.pt", marker, batches=20)
    _malicious(exp / "checkpoint-20.pt", marker, batches=20)
    return exp


def test_decoding_paths_refuse_code(tmp_path):
    """epoch/avg, iter/avg, use_averaged_model, one checkpoint file, and the inference entry."""
    from asr.decode.inference import InferenceConfig, InferenceError, load_inference, load_model

    marker = tmp_path / "ran"
    exp = _tiny_exp_with_malicious(tmp_path, marker)
    assert load_model(exp, epoch=1).description == "epoch-1-avg-1"  # the safe one still loads
    for kwargs in (dict(epoch=2), dict(epoch=2, avg=2), dict(epoch=2, avg=1, use_averaged_model=True),
                   dict(iteration=20, avg=1), dict(checkpoint=exp / "epoch-2.pt")):  # fmt: skip
        with pytest.raises(UnsafeCheckpointError, match="refused"):
            load_model(exp, **kwargs)
    with pytest.raises(InferenceError, match=r"cannot load the model: refused to load checkpoint .*epoch-2\.pt"):
        load_inference(InferenceConfig(exp_dir=str(exp), epoch=2, device="cpu"))
    assert not marker.exists()


def test_transcribe_refuses_code(tmp_path):
    marker = tmp_path / "ran"
    exp = _tiny_exp_with_malicious(tmp_path, marker)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for args in (["--epoch", "2"], ["--checkpoint", str(exp / "checkpoint-20.pt")]):
        proc = subprocess.run([sys.executable, "-m", "asr.decode.transcribe", "--exp-dir", str(exp), *args,
                               str(tmp_path / "a.wav")], capture_output=True, text=True, timeout=120, env=env)  # fmt: skip
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert "cannot load the model: refused to load checkpoint" in proc.stderr and "run code" in proc.stderr
    assert not marker.exists()


def test_export_refuses_code(tmp_path, capsys):
    """asr-export loads through the same safe loader: refused, exit 2, no code run, nothing written."""
    from asr.export.cli import main as export_main

    marker = tmp_path / "ran"
    exp = _tiny_exp_with_malicious(tmp_path, marker)
    for args in (["--epoch", "2"], ["--checkpoint", str(exp / "checkpoint-20.pt")]):
        assert export_main(["--exp-dir", str(exp), *args, "--out", str(tmp_path / "onnx")]) == 2
        assert "refused to load checkpoint" in capsys.readouterr().err
    assert not marker.exists() and not (tmp_path / "onnx").exists()


def _tiny(python_exe: str, exp_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", PYTHONPATH=str(ROOT))
    cmd = [python_exe, str(TINY), "--exp-dir", str(exp_dir), "--epochs", "1", *extra]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_training_resume_refuses_code(tmp_path):
    marker = tmp_path / "ran"
    exp = tmp_path / "exp"
    _malicious(exp / "checkpoint-3.pt", marker, batches=3)
    proc = _tiny(sys.executable, exp)
    assert proc.returncode != 0
    assert "UnsafeCheckpointError" in proc.stderr and "checkpoint-3.pt" in proc.stderr
    assert not marker.exists() and not (exp / "epoch-1.pt").exists()


def test_package_loads_checkpoints_only_through_asr_checkpoint():
    """The only torch.load of the library, recipes, scripts and benchmarks is asr/checkpoint.py's, weights only."""
    calls = []
    for folder in ("asr", "recipes", "scripts", "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if "torch.load(" in line:
                    calls.append((path.relative_to(ROOT).as_posix(), n, line))
    assert calls and all(p == "asr/checkpoint.py" for p, _, _ in calls), calls
    assert all("weights_only=True" in line for _, _, line in calls), calls


# ---------------------------------------------------------------------------------- checkpoints of older versions
def test_old_checkpoint_loads_with_its_numpy_rng_state():
    """tests/fixtures/checkpoint-v0.1.pt (written at 56abf94) holds NumPy's RNG state as an array: it still loads,
    and restoring it gives the generators the state it recorded (also once re-captured in today's format)."""
    from asr.train.resume import capture_rng, restore_rng

    state = load_checkpoint(FIXTURE)
    assert state["batch_idx_train"] == 3 and state["sampler"]["batches_done"] == 3
    assert state["sampler"]["lhotse"]["diagnostics"]["current_epoch"] == 1
    old = state["rng"]["states"][0]
    assert isinstance(old["numpy"][1], np.ndarray)  # the old format
    restore_rng(old)
    want = (random.random(), np.random.randn(4).tolist(), torch.rand(3))
    assert np.random.get_state()[0] == "MT19937"
    restore_rng(old)
    again = capture_rng()  # today's format: tensors and plain containers only
    assert isinstance(again["numpy"]["key"], torch.Tensor)
    random.random(), np.random.randn(7), torch.rand(5)
    restore_rng(again)
    got = (random.random(), np.random.randn(4).tolist(), torch.rand(3))
    assert got[0] == want[0] and got[1] == want[1] and torch.equal(got[2], want[2])


def test_new_checkpoint_holds_only_weights_only_types(tmp_path):
    """What capture_rng stores loads with torch's plain weights_only=True, no allow-list needed."""
    from asr.train.resume import capture_rng

    save_checkpoint(tmp_path / "c.pt", {"model": {}, "rng": {"world_size": 1, "states": [capture_rng()]}})
    assert torch.serialization.get_unsafe_globals_in_checkpoint(tmp_path / "c.pt") == []
    torch.load(tmp_path / "c.pt", weights_only=True)


@pytest.mark.slow
def test_resume_from_old_checkpoint_is_exact(tmp_path):
    """Resuming tiny.py's run from the old fixture (its batch 3) ends with the weights and optimiser state of an
    uninterrupted run of today's code, bitwise. The fixture's steps were taken by the per-tensor Adam of its day, so
    both runs use it (optim.fused_adam=false): torch's fused Adam, today's default, rounds differently."""
    ref = _tiny(sys.executable, tmp_path / "ref", "--no-fused-adam")
    assert ref.returncode == 0, ref.stderr[-3000:]
    exp = tmp_path / "old"
    exp.mkdir()
    shutil.copy(FIXTURE, exp / "checkpoint-3.pt")
    resumed = _tiny(sys.executable, exp, "--no-fused-adam")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout + resumed.stderr and "checkpoint-3.pt" in resumed.stdout + resumed.stderr
    a, b = load_checkpoint(tmp_path / "ref" / "epoch-1.pt"), load_checkpoint(exp / "epoch-1.pt")
    assert a["batch_idx_train"] == b["batch_idx_train"] == 10
    for name, t in a["model"].items():
        assert torch.equal(t, b["model"][name]), name
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(sa[k], sb[k]) if torch.is_tensor(sa[k]) else sa[k] == sb[k] for k in sa)
