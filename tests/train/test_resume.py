"""kill -9 at a random batch, re-run the same command: bit-identical final weights (CPU, deterministic)."""

import os
import random
import signal
import subprocess
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BATCHES = 20  # 2 epochs of 10 batches with tiny.py's defaults
SAVE_EVERY = 3  # tiny.py's default --save-every-n


def _run(python_exe: str, exp_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [python_exe, "-m", "tests.train.tiny", "--exp-dir", str(exp_dir), *extra]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _load(path: Path) -> dict:
    return torch.load(path, weights_only=False)


def test_kill_and_rerun_is_bit_identical(tmp_path, python_exe):
    ref = _run(python_exe, tmp_path / "ref")
    assert ref.returncode == 0, ref.stderr[-3000:]
    kill_at = random.Random().randint(2, BATCHES - 1)
    exp = tmp_path / "killed"
    killed = _run(python_exe, exp, "--kill-at", str(kill_at))
    assert killed.returncode == -signal.SIGKILL, f"expected SIGKILL at batch {kill_at}: {killed.stderr[-2000:]}"
    assert not (exp / "epoch-2.pt").exists()
    rerun = _run(python_exe, exp)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    # killed while fetching batch k: batches 1..k-1 are done, the last checkpoint is after a multiple of 3 of them
    if kill_at > SAVE_EVERY:
        assert "resumed from" in rerun.stdout

    a, b = _load(tmp_path / "ref" / "epoch-2.pt"), _load(exp / "epoch-2.pt")
    assert a["batch_idx_train"] == b["batch_idx_train"] == BATCHES
    for key in ("model", "model_avg"):
        for name, t in a[key].items():
            assert torch.equal(t, b[key][name]), f"{key}.{name} differs after a kill at batch {kill_at}"
    # tiny.py cools the rate down over the second epoch: it reaches 0 at the last batch, resumed or not
    assert a["optimizer"]["param_groups"][0]["lr"] == b["optimizer"]["param_groups"][0]["lr"] == 0.0
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
