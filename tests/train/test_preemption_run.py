"""Graceful preemption end to end: tests/train/tiny.py signals itself mid-epoch, exits 75 after a checkpoint, and
the re-run of the same command ends with the weights of an uninterrupted run, bit for bit (CPU)."""

import os
import signal
import subprocess
from pathlib import Path

import pytest
import torch

from asr.train.preemption import EXIT_PREEMPTED

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BATCHES = 20  # 2 epochs of 10 batches with tiny.py's defaults

pytestmark = pytest.mark.slow


def _run(python_exe: str, exp_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [python_exe, "-m", "tests.train.tiny", "--exp-dir", str(exp_dir), *extra]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run's exp dir, per number of DataLoader workers (made once)."""
    made: dict[str, Path] = {}

    def get(python_exe: str, workers: str) -> Path:
        if workers not in made:
            exp = tmp_path_factory.mktemp(f"ref-{workers}-workers")
            ref = _run(python_exe, exp, "--num-workers", workers)
            assert ref.returncode == 0, ref.stderr[-3000:]
            made[workers] = exp
        return made[workers]

    return get


def _same_final_weights(a_dir: Path, b_dir: Path) -> None:
    a = torch.load(a_dir / "epoch-2.pt", weights_only=False)
    b = torch.load(b_dir / "epoch-2.pt", weights_only=False)
    assert a["batch_idx_train"] == b["batch_idx_train"] == BATCHES
    for key in ("model", "model_avg"):
        for name, t in a[key].items():
            assert torch.equal(t, b[key][name]), f"{key}.{name} differs"


@pytest.mark.parametrize(
    "sig,workers,during_save",
    [("TERM", "0", False), ("USR1", "2", False), ("INT", "0", True)],
    ids=["sigterm", "sigusr1-2-workers", "sigint-then-sigterm-during-save"],
)
def test_signal_mid_epoch_checkpoints_exits_75_and_rerun_is_bit_identical(tmp_path, python_exe, reference, sig,
                                                                           workers, during_save):
    exp = tmp_path / "preempted"
    extra = ["--signal-during-save"] if during_save else []
    stopped = _run(python_exe, exp, "--num-workers", workers, "--signal-at", "7", "--signal", sig, *extra)
    assert stopped.returncode == EXIT_PREEMPTED, stopped.stdout[-2000:] + stopped.stderr[-2000:]
    # batch 7 finished and was saved: a preempted run loses nothing (at most the batch in progress)
    saved = torch.load(exp / "checkpoint-7.pt", weights_only=False)
    assert saved["batch_idx_train"] == 7
    assert not list(exp.glob(".*.tmp-*")), "a temporary checkpoint file was left behind"
    told = f"training stopped by SIG{sig}" + (" (+1 more, ignored)" if during_save else "")
    assert told in stopped.stdout
    rerun = _run(python_exe, exp, "--num-workers", workers)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "checkpoint-7.pt" in rerun.stdout  # resumed from the preemption checkpoint
    _same_final_weights(reference(python_exe, workers), exp)


def test_exit_status_without_the_handler_is_the_signal():
    """The oracle of 'distinct': a plain Python process killed by SIGTERM reports -15 (a shell: 143), not 75."""
    out = subprocess.run(["python3", "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"])
    assert out.returncode == -signal.SIGTERM != EXIT_PREEMPTED
