"""Two CPU processes under torchrun (gloo) against one process with the same global batches."""

import os
import subprocess
from pathlib import Path

import torch

from tests.train.ports import free_port

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
# Cuts 0 and 2 have NaN features: in the first global batch (cuts 0-3) rank 0 holds only those two, so it has no
# loss at all while rank 1 has one; one process drops them too.
ARGS = ["--loader", "fixed", "--dropout", "0", "--epochs", "1", "--no-batchnorm", "--warm-step", "1000",
        "--nan-ids", "0,2"]


def _run(cmd: list[str]) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]


def test_two_ranks_match_one_process(tmp_path, python_exe):
    torchrun = str(Path(python_exe).parent / "torchrun")
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    _run([torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
          "-m", "tests.train.tiny", "--exp-dir", str(ddp), *ARGS])  # fmt: skip
    _run([python_exe, "-m", "tests.train.tiny", "--exp-dir", str(single), *ARGS])

    p0, p1 = torch.load(ddp / "params-rank0.pt"), torch.load(ddp / "params-rank1.pt")
    ps = torch.load(single / "params-rank0.pt")
    assert all(torch.equal(p0[k], p1[k]) for k in p0), "ranks diverged"
    s_ddp = torch.load(ddp / "stats-rank0.pt", weights_only=False)
    s_one = torch.load(single / "stats-rank0.pt", weights_only=False)
    assert s_ddp["batches"] == s_one["batches"] == 6
    assert s_one["counters"]["bad_utterances"] == 2 and s_one["counters"]["skipped_batches"] == 0
    assert s_ddp["counters"]["bad_utterances"] == 2  # all on rank 0
    # the same global batches: equal losses and gradient norms up to float reduction order
    for key in ("loss", "simple_loss", "pruned_loss", "grad_norm"):
        a, b = s_ddp["stats"][key], s_one["stats"][key]
        assert abs(a - b) <= 1e-5 * abs(b), (key, a, b)
    # Adam turns tiny gradient differences into up to about one lr step (2.8e-4 here) on near-zero gradients
    assert max((p0[k] - ps[k]).abs().max().item() for k in p0) < 1e-3
    # only rank 0 wrote checkpoints
    assert (ddp / "epoch-1.pt").exists() and not list(ddp.glob("*.tmp*"))
