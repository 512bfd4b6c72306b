"""Two CPU ranks under torchrun (gloo): a rank that raises ends the job within the bound, naming itself and the
batch; torchrun's elastic restart resumes from the last checkpoint; a signal on one rank stops both together."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.train.ports import free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# 2 epochs of 6 fixed global batches of 4 cuts, 2 per rank; a checkpoint every 3 batches
ARGS = ["--loader", "fixed", "--dropout", "0.1", "--epochs", "2", "--no-batchnorm", "--collective-timeout", "20"]
PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv" / "bin" / "python").exists() else sys.executable
BOUND_S = 60  # the bound on how long the job may linger after a rank fails

pytestmark = pytest.mark.slow


def _torchrun(python_exe: str, exp: Path, *extra: str, restarts: int = 0) -> tuple[subprocess.CompletedProcess, float]:
    torchrun = str(Path(python_exe).parent / "torchrun")
    # c10d rendezvous with a fresh store per round: a restart's ranks must not read the failed round's addresses
    # from a store shared across restarts (pytorch/pytorch#135712; the static rendezvous always shares it)
    cmd = [torchrun, "--nproc_per_node", "2", "--max-restarts", str(restarts), "--rdzv-backend", "c10d",
           "--rdzv-endpoint", f"127.0.0.1:{free_port()}", "-m", "tests.train.tiny", "--exp-dir", str(exp), *ARGS,
           *extra]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")
    start = time.monotonic()
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=180)
    return out, time.monotonic() - start


def _processes_mentioning(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The uninterrupted 2-rank run (made once for the module)."""
    exp = tmp_path_factory.mktemp("ddp-ref")
    out, _ = _torchrun(PYTHON, exp)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return exp


def _same_weights(a: Path, b: Path) -> None:
    pa, pb = torch.load(a / "params-rank0.pt"), torch.load(b / "params-rank0.pt")
    assert all(torch.equal(pa[k], pb[k]) for k in pa)


def test_one_rank_raises_every_rank_exits_within_the_bound(tmp_path, python_exe):
    exp = tmp_path / "failed"
    out, seconds = _torchrun(python_exe, exp, "--raise-at", "5", "--raise-rank", "1")
    log = out.stdout + out.stderr
    assert out.returncode != 0, log[-3000:]
    assert seconds < BOUND_S, f"the job took {seconds:.0f} s to end after a rank failed"
    assert "rank 1 of 2 failed at batch 5 (epoch 1, batch 5 of it), cut ids ['dummy-mono-cut-0017'" in log, log[-3000:]
    assert "RuntimeError: injected failure at batch 5" in log
    assert not _processes_mentioning(str(exp)), "a rank outlived the job"
    assert (exp / "checkpoint-3.pt").exists() and not (exp / "checkpoint-6.pt").exists()


def test_elastic_restart_resumes_from_the_last_checkpoint(tmp_path, python_exe, reference):
    exp = tmp_path / "restarted"
    out, _ = _torchrun(python_exe, exp, "--raise-at", "5", "--raise-rank", "1", restarts=1)
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert "injected failure at batch 5" in log and "resumed from" in log and "checkpoint-3.pt" in log
    _same_weights(reference, exp)  # the restart redid batches 4 and 5 exactly


def test_signal_on_one_rank_stops_both_after_the_same_batch(tmp_path, python_exe, reference):
    exp = tmp_path / "preempted"
    out, _ = _torchrun(python_exe, exp, "--signal-at", "5", "--signal-rank", "1")
    log = out.stdout + out.stderr
    assert out.returncode != 0 and "exitcode  : 75" in log, log[-3000:]  # torchrun reports its workers' status
    assert torch.load(exp / "checkpoint-5.pt", weights_only=False)["batch_idx_train"] == 5
    rerun, _ = _torchrun(python_exe, exp)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    _same_weights(reference, exp)
