"""Out-of-memory batches in training (asr.train.oom): skipped on every rank, counted, logged, resumed; or fatal with
the batch's cut ids when trainer.skip_oom_batches=false.

The oracle of a skipped batch: the same run in which that batch's utterances all have NaN features, so the loop
drops it as a batch with no loss (no optimiser step, counters advance): the weights must be bit-identical.
"""

import logging
import os
import subprocess
from pathlib import Path

import pytest
import torch

from asr.checkpoint import load_checkpoint
from asr.train.distributed import DistInfo
from asr.train.oom import BatchOutOfMemoryError, OomSkipsExceeded, _buckets, is_out_of_memory, reduce_gradients
from tests.train.ports import free_port
from tests.train.tiny import CPU_OOM_MESSAGE, SyntheticDataset, fixed_batches, inject_oom, make_cuts, make_trainer

REPO = Path(__file__).resolve().parents[2]
N_CUTS = 20  # 5 fixed batches of 4 cuts
OOM_BATCH = 3  # its cuts: 8 to 11


def _batches(nan_batch: int = 0):
    nan_ids = frozenset(range(4 * (nan_batch - 1), 4 * nan_batch)) if nan_batch else frozenset()
    return fixed_batches(make_cuts(N_CUTS), 0, 1, global_batch=4, ds=SyntheticDataset(nan_ids=nan_ids))


def _params(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.raw_model.named_parameters()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, torch.Tensor]:
    """Weights after the 5 batches with batch 3 dropped by the loop (all its utterances bad)."""
    trainer = make_trainer(tmp_path_factory.mktemp("ref"), _batches(nan_batch=OOM_BATCH), save_every_n=0)
    trainer.fit()
    assert trainer.state.counters["skipped_batches"] == 1
    return _params(trainer)


@pytest.mark.parametrize("phase", ["forward", "backward"])
def test_an_oom_batch_is_skipped_counted_and_logged(tmp_path, reference, phase, caplog):
    trainer = make_trainer(tmp_path, _batches(), save_every_n=0)
    injected = inject_oom(trainer, {OOM_BATCH}, phase)
    with caplog.at_level(logging.WARNING, logger="asr.train"):
        trainer.fit()
    assert injected == [OOM_BATCH]
    assert trainer.state.batch_idx_train == 5 and trainer.state.counters["oom_batches"] == 1
    assert trainer.state.counters["skipped_batches"] == 0
    assert "out of memory at batch 3 (epoch 1), cut ids ['dummy-mono-cut-0008', 'dummy-mono-cut-0009'" in caplog.text
    # cuts 8 to 11: 0.30 to 0.45 s, 1 to 4 tokens
    assert "4 utterances x 45 frames padded, 150 frames (1.5 s) in all, 10 tokens (longest 4)" in caplog.text
    assert "batch skipped at batch 3 (epoch 1): out of memory (1 skipped so far, at most 20)" in caplog.text
    got = _params(trainer)
    assert all(torch.equal(got[k], reference[k]) for k in got), "the skipped batch changed the weights"
    assert all(p.grad is None for p in trainer.raw_model.parameters())


def test_the_count_is_saved_and_resumed(tmp_path, reference):
    first = make_trainer(tmp_path, _batches(), save_every_n=1, max_steps=4)
    inject_oom(first, {OOM_BATCH})
    first.fit()
    assert load_checkpoint(tmp_path / "checkpoint-4.pt")["counters"]["oom_batches"] == 1
    second = make_trainer(tmp_path, _batches(), save_every_n=1)  # the same command without the step limit
    second.fit()
    assert second.state.batch_idx_train == 5 and second.state.counters["oom_batches"] == 1
    assert load_checkpoint(tmp_path / "epoch-1.pt")["counters"]["oom_batches"] == 1
    got = _params(second)
    assert all(torch.equal(got[k], reference[k]) for k in got)


def test_without_skipping_the_error_names_the_batch(tmp_path):
    trainer = make_trainer(tmp_path, _batches(), save_every_n=0, skip_oom_batches=False)
    inject_oom(trainer, {OOM_BATCH})
    with pytest.raises(BatchOutOfMemoryError, match=r"out of memory at batch 3 \(epoch 1\): cut ids "
                       r"\['dummy-mono-cut-0008', 'dummy-mono-cut-0009', 'dummy-mono-cut-0010', "
                       r"'dummy-mono-cut-0011'\]; 4 utterances.*DefaultCPUAllocator") as caught:
        trainer.fit()
    assert is_out_of_memory(caught.value) and trainer.state.batch_idx_train == OOM_BATCH - 1


def test_too_many_skips_stop_the_run(tmp_path):
    trainer = make_trainer(tmp_path, _batches(), save_every_n=0, max_oom_skips=2)
    inject_oom(trainer, {1, 2, 4})
    with pytest.raises(OomSkipsExceeded, match="3 batches ran out of memory, more than trainer.max_oom_skips=2"):
        trainer.fit()
    assert trainer.state.batch_idx_train == 3  # batch 4 ran out of memory, and was the third


def test_out_of_memory_errors_are_recognised():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(torch.cuda.OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError(CPU_OOM_MESSAGE))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert not is_out_of_memory(ValueError("out of memory"))  # not an allocator's error type


def test_buckets_keep_order_and_split_by_dtype_and_size():
    ts = [torch.zeros(10), torch.zeros(300), torch.zeros(5, dtype=torch.int64), torch.zeros(3), torch.zeros(2)]
    buckets = list(_buckets(ts, bucket_bytes=400))
    assert [len(b) for b in buckets] == [2, 1, 2]  # 40 + 1200 bytes, then the int64, then float32 again
    assert [t for b in buckets for t in b] == ts
    assert all(len({t.dtype for t in b}) == 1 for b in buckets)


def test_reduce_gradients_is_a_no_op_in_one_process():
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    reduce_gradients([p], DistInfo(0, 1, 0, torch.device("cpu")))
    assert torch.equal(p.grad, torch.full((3,), 2.0))


# ------------------------------------------------------------------------------------------- two ranks (gloo)
ARGS = ["--loader", "fixed", "--dropout", "0", "--epochs", "1", "--no-batchnorm", "--warm-step", "1000",
        "--collective-timeout", "60"]


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def _torchrun(python_exe: str, exp: Path, *extra: str) -> subprocess.CompletedProcess:
    torchrun = str(Path(python_exe).parent / "torchrun")
    return _run([torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port",
                 str(free_port()), "-m", "tests.train.tiny", "--exp-dir", str(exp), *ARGS, *extra])  # fmt: skip


def test_two_ranks_skip_the_same_batch_and_stay_in_step(tmp_path, python_exe):
    """Rank 1 alone runs out of memory half-way through backward of batch 3 (of 6): both ranks drop it, neither
    hangs, and they end with the same weights and counters, those of one process in which batch 3 had no loss."""
    ddp, single = tmp_path / "ddp", tmp_path / "single"
    out = _torchrun(python_exe, ddp, "--oom-at", "3", "--oom-rank", "1", "--oom-in", "backward")
    log = out.stdout + out.stderr
    assert out.returncode == 0, log[-3000:]
    assert "rank 1: out of memory at batch 3 (epoch 1), cut ids ['dummy-mono-cut-0009', 'dummy-mono-cut-0011']" in log
    assert "rank 0: out of memory" not in log
    one = _run([python_exe, "-m", "tests.train.tiny", "--exp-dir", str(single), *ARGS, "--nan-ids", "8,9,10,11"])
    assert one.returncode == 0, one.stdout[-3000:] + one.stderr[-3000:]

    p0, p1 = torch.load(ddp / "params-rank0.pt"), torch.load(ddp / "params-rank1.pt")
    assert all(torch.equal(p0[k], p1[k]) for k in p0), "ranks diverged"
    s0, s1 = (torch.load(ddp / f"stats-rank{r}.pt", weights_only=False) for r in (0, 1))
    assert s0["batches"] == s1["batches"] == 6
    assert s0["counters"]["oom_batches"] == s1["counters"]["oom_batches"] == 1
    assert load_checkpoint(ddp / "epoch-1.pt")["counters"]["oom_batches"] == 1
    ps = torch.load(single / "params-rank0.pt")
    assert max((p0[k] - ps[k]).abs().max().item() for k in p0) < 1e-3  # float reduction order (test_distributed)


def test_two_ranks_without_skipping_end_naming_the_batch(tmp_path, python_exe):
    """trainer.skip_oom_batches=false (DDP's overlapped all-reduce): rank 1's error in forward ends the job."""
    out = _torchrun(python_exe, tmp_path / "exp", "--oom-at", "3", "--oom-rank", "1", "--no-skip-oom")
    log = out.stdout + out.stderr
    assert out.returncode != 0, log[-3000:]
    assert "BatchOutOfMemoryError: out of memory at batch 3 (epoch 1): cut ids ['dummy-mono-cut-0009'" in log
