"""asr.run_info and asr.sysinfo: what a run's final table says about its training, precision and CPU."""

import json

import pytest
import torch

import asr.sysinfo
import asr.train.step as step
from asr.run_info import FILE, collect, main, table
from asr.checkpoint import save_checkpoint


def _checkpoint(exp, amp="auto", finished=False, precision=None, batches=2279, epoch=4, done=457, per_epoch=606):
    state = {"model": {}, "epoch": epoch, "batch_idx_train": batches, "batches_per_epoch": per_epoch,
             "train_seconds": 1200.0, "sampler": {"epoch": epoch, "batches_done": done, "epoch_finished": finished},
             "config": {"trainer": {"amp": amp, "device": "cpu", "max_minutes": 20}}}
    if precision is not None:
        state["precision"] = precision
    save_checkpoint(exp / f"epoch-{epoch}.pt", state)


def test_cpu_facts(monkeypatch):
    facts = asr.sysinfo.cpu_facts()
    assert set(facts) == {"cpu_model", "cpu_cores", "cpu_capability", "native_bf16", "native_bf16_disabled"}
    assert facts["cpu_model"] and facts["cpu_cores"] >= 1
    assert facts["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    monkeypatch.setenv("ASR_DISABLE_NATIVE_BF16", "1")
    off = asr.sysinfo.cpu_facts()
    assert off["native_bf16"] is False and off["native_bf16_disabled"] is asr.sysinfo.hardware_bf16()
    monkeypatch.setenv("ASR_DISABLE_NATIVE_BF16", "0")
    assert asr.sysinfo.cpu_facts()["native_bf16"] is asr.sysinfo.hardware_bf16()


def test_auto_on_a_cpu_with_and_without_native_bf16(tmp_path, monkeypatch):
    _checkpoint(tmp_path)
    monkeypatch.setattr(step, "cpu_has_native_bf16", lambda: True)
    info = collect(tmp_path)
    assert (info["precision"], info["precision_reason"]) == ("bf16", "auto: CPU has native bf16")
    assert info["precision_source"] == "config, resolved on this machine"
    assert (info["batches"], info["epochs"], info["train_minutes"]) == (2279, 3.75, 20.0)  # 3 + 457/606
    monkeypatch.setattr(step, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(asr.sysinfo, "hardware_bf16", lambda: False)
    info = collect(tmp_path)
    assert (info["precision"], info["precision_reason"]) == ("float32", "auto: CPU lacks native bf16")
    monkeypatch.setattr(asr.sysinfo, "hardware_bf16", lambda: True)  # the switch hides a CPU's bf16
    assert collect(tmp_path)["precision_reason"] == "auto: CPU lacks native bf16 (ASR_DISABLE_NATIVE_BF16 set)"


def test_the_checkpoints_precision_wins_and_explicit_amp(tmp_path, monkeypatch):
    monkeypatch.setattr(step, "cpu_has_native_bf16", lambda: True)
    _checkpoint(tmp_path / "a", precision="none", finished=True, done=606)
    info = collect(tmp_path / "a")
    assert (info["precision"], info["precision_source"], info["epochs"]) == ("float32", "checkpoint", 4.0)
    _checkpoint(tmp_path / "b", amp="bf16")
    monkeypatch.setattr(step, "cpu_has_native_bf16", lambda: False)
    info = collect(tmp_path / "b")
    assert (info["precision"], info["precision_reason"]) == ("bf16", "set explicitly (trainer.amp=bf16)")


def test_cli_writes_json_and_prints_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(step, "cpu_has_native_bf16", lambda: False)
    monkeypatch.setattr(asr.sysinfo, "hardware_bf16", lambda: False)
    _checkpoint(tmp_path)
    main(["--exp-dir", str(tmp_path), "--write"])
    saved = json.loads((tmp_path / FILE).read_text())
    assert saved["batches"] == 2279 and saved["precision"] == "float32" and saved["checkpoint"] == "epoch-4.pt"
    lines = capsys.readouterr().out.splitlines()
    assert lines == table(saved)
    assert lines[0] == "training: 2279 batches, 3.75 epochs, 20 min of a 20-minute budget"
    assert lines[1] == "precision: float32 (auto: CPU lacks native bf16)"
    assert lines[2].startswith("cpu: ") and "capability" in lines[2] and lines[2].endswith("native bf16 no")
    saved["batches"] = 7  # without --write the file written after training is what is printed
    (tmp_path / FILE).write_text(json.dumps(saved))
    main(["--exp-dir", str(tmp_path)])
    assert capsys.readouterr().out.startswith("training: 7 batches")


def test_no_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no readable checkpoint .* in " + str(tmp_path)):
        main(["--exp-dir", str(tmp_path)])
