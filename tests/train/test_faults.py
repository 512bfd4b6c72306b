"""Faults in one process on fixed batches: a full disk while writing checkpoints, a collapsing fp16 grad scale."""

import errno
import logging

import pytest
import torch

from asr.checkpoint import load_checkpoint
from asr.train.fp16_guard import GradScaleCollapsed
from asr.train.save_retry import CheckpointWriteError
from tests.train.tiny import fixed_batches, make_cuts, make_trainer


def _disk_full_on(monkeypatch, failing: set[int]) -> list[int]:
    """torch.save fails with ENOSPC, after writing part of the file, on the calls numbered in `failing` (1-based)."""
    real_save, calls = torch.save, []

    def save(obj, f, *args, **kwargs):
        calls.append(len(calls) + 1)
        if calls[-1] in failing:
            f.write(b"\0" * 1000)  # a partial temporary file, as a disk filling up leaves
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    return calls


def test_enospc_on_one_write_keeps_the_run_and_the_previous_checkpoint(tmp_path, monkeypatch, caplog):
    batches = fixed_batches(make_cuts(20), 0, 1, global_batch=4)  # 5 batches, a checkpoint after each
    trainer = make_trainer(tmp_path, batches, num_epochs=1, save_every_n=1, max_save_failures=2)
    _disk_full_on(monkeypatch, failing={3})
    with caplog.at_level(logging.ERROR, logger="asr.train"):
        trainer.fit()
    assert trainer.state.batch_idx_train == 5
    assert "could not write" in caplog.text and "ENOSPC" in caplog.text and "checkpoint-3.pt" in caplog.text
    assert not (tmp_path / "checkpoint-3.pt").exists()
    assert load_checkpoint(tmp_path / "checkpoint-2.pt")["batch_idx_train"] == 2  # the previous one is intact
    assert load_checkpoint(tmp_path / "checkpoint-4.pt")["batch_idx_train"] == 4  # the next save succeeded
    assert not list(tmp_path.glob(".*.tmp-*"))
    assert trainer.save_retry.total == 1 and trainer.save_retry.consecutive == 0


def test_consecutive_write_failures_stop_the_run(tmp_path, monkeypatch):
    batches = fixed_batches(make_cuts(20), 0, 1, global_batch=4)
    trainer = make_trainer(tmp_path, batches, num_epochs=1, save_every_n=1, max_save_failures=2)
    _disk_full_on(monkeypatch, failing={2, 3, 4, 5, 6})
    with pytest.raises(CheckpointWriteError, match="2 consecutive checkpoint writes failed.*ENOSPC"):
        trainer.fit()
    assert trainer.state.batch_idx_train == 3  # stopped at the second failure in a row
    assert load_checkpoint(tmp_path / "checkpoint-1.pt")["batch_idx_train"] == 1


def test_collapsing_grad_scale_saves_a_diagnostic_checkpoint_then_stops(tmp_path, caplog):
    batches = fixed_batches(make_cuts(40), 0, 1, global_batch=4)  # 10 batches
    trainer = make_trainer(tmp_path, batches, save_every_n=0, fp16_warn_scale=0.3, fp16_stop_scale=0.05,
                           fp16_grow_period=0)  # fmt: skip
    # fp16 is CUDA-only in the trainer: a CPU GradScaler (float32 here) and an overflowing loss stand in for it
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=1.0, growth_interval=10**6)
    batch_loss = trainer.batch_loss

    def overflowing(model, batch):
        res = batch_loss(model, batch)
        res.loss = res.loss * float("inf")
        return res

    trainer.batch_loss = overflowing
    before = {k: v.detach().clone() for k, v in trainer.raw_model.named_parameters()}
    with caplog.at_level(logging.WARNING, logger="asr.train"), pytest.raises(GradScaleCollapsed, match="batch 5"):
        trainer.fit()
    # scale 2^-k after batch k: below 0.3 at batch 2 (diagnostic checkpoint), below 0.05 at batch 5 (stop)
    assert [p.name for p in tmp_path.glob("bad-model-*.pt")] == ["bad-model-2.pt"]
    assert "fp16 guard: grad scale 0.25 at batch 2" in caplog.text and "inf/nan in the" in caplog.text
    # every overflowing step was skipped
    assert all(torch.equal(before[k], v) for k, v in trainer.raw_model.named_parameters())


def test_unreadable_cuts_from_the_loader_are_counted_and_named(tmp_path, caplog):
    batches = fixed_batches(make_cuts(12), 0, 1, global_batch=4)  # 3 batches
    batches[1].unreadable_cut_ids = ["cut-on-a-bad-sector"]  # what asr.data.unreadable puts in a batch
    trainer = make_trainer(tmp_path, batches, save_every_n=0)
    with caplog.at_level(logging.WARNING, logger="asr.train"):
        trainer.fit()
    assert trainer.state.counters["unreadable_cuts"] == 1
    assert "batch 2: 1 cut(s) skipped, their features cannot be loaded: ['cut-on-a-bad-sector']" in caplog.text
    assert load_checkpoint(tmp_path / "epoch-1.pt")["counters"]["unreadable_cuts"] == 1
