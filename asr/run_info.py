"""How much training a run got, in what precision, on what CPU: exp_dir/run_info.json and the lines under the WER
table of recipes/librispeech/run.sh.

    python -m asr.run_info --exp-dir exp/demo --write   # after training: (re)write exp/demo/run_info.json
    python -m asr.run_info --exp-dir exp/demo           # print it (written first when missing)

The counts come from the checkpoint with the most training done (asr.checkpoint): batches, epochs (fractional
when a time budget ended one mid-way), training wall time and budget. The precision is the checkpoint's "precision"
(the resolved trainer.amp) when it has one; older checkpoints only hold the config, so trainer.amp is resolved again
here, on this machine (asr.train.step.resolve_amp), and "precision_source" says so. The reason tells "auto: CPU has /
lacks native bf16" (the difference between two machines' demo results) from a precision set explicitly.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from asr.sysinfo import DISABLE_ENV, cpu_facts

FILE = "run_info.json"
PRECISION_NAMES = {"none": "float32", "bf16": "bf16", "fp16": "fp16"}  # resolved trainer.amp -> what is computed in


def _device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def precision(amp: str, resolved: str | None, facts: dict, device: torch.device) -> tuple[str, str]:
    """(precision name, why) for trainer.amp=`amp`; `resolved` is the checkpoint's resolved amp, or None."""
    from asr.train.step import resolve_amp

    if resolved is None:
        resolved = resolve_amp(amp, device)
    name = PRECISION_NAMES.get(resolved, resolved)
    if amp != "auto":
        return name, f"set explicitly (trainer.amp={amp})"
    if device.type == "cuda":
        return name, "auto: CUDA " + ("with" if resolved == "bf16" else "without") + " bf16"
    if resolved == "bf16":
        return name, "auto: CPU has native bf16"
    why = "auto: CPU lacks native bf16"
    return name, why + (f" ({DISABLE_ENV} set)" if facts.get("native_bf16_disabled") else "")


def collect(exp_dir: str | Path) -> dict:
    """run_info of `exp_dir` from its most advanced checkpoint and this machine. Raises FileNotFoundError when the
    folder holds no readable checkpoint."""
    from asr.checkpoint import checkpoints_by_progress, load_checkpoint

    exp_dir = Path(exp_dir)
    found = checkpoints_by_progress(exp_dir)
    path = found[0] if found else None
    if path is None:
        raise FileNotFoundError(f"no readable checkpoint (epoch-E.pt / checkpoint-N.pt) in {exp_dir}")
    state = load_checkpoint(path, mmap=True)
    trainer = (state.get("config") or {}).get("trainer") or {}
    sampler = state.get("sampler") or {}
    batches = int(state.get("batch_idx_train", 0))
    epoch = int(state.get("epoch", sampler.get("epoch", 0)))  # 1-based
    per_epoch = int(state.get("batches_per_epoch") or 0)
    if sampler.get("epoch_finished", True):
        epochs = float(epoch)
    else:
        done = int(sampler.get("batches_done", 0))
        epochs = epoch - 1 + (done / per_epoch if per_epoch else 0.0)
    facts = cpu_facts()
    amp = str(trainer.get("amp", "none"))
    device = _device(str(trainer.get("device", "auto")))
    saved = state.get("precision")
    name, why = precision(amp, saved, facts, device)
    return {
        "checkpoint": path.name,
        "batches": batches,
        "epochs": round(epochs, 2),
        "batches_per_epoch": per_epoch or None,
        "train_minutes": round(float(state.get("train_seconds", 0.0)) / 60, 1),
        "max_minutes": trainer.get("max_minutes"),
        "device": device.type,
        "amp": amp,
        "precision": name,
        "precision_reason": why,
        "precision_source": "checkpoint" if saved is not None else "config, resolved on this machine",
        **facts,
    }


def write(exp_dir: str | Path) -> dict:
    """collect() into exp_dir/run_info.json; returns it."""
    info = collect(exp_dir)
    (Path(exp_dir) / FILE).write_text(json.dumps(info, indent=1) + "\n")
    return info


def read_or_write(exp_dir: str | Path) -> dict:
    """exp_dir/run_info.json as written after training, or written now when missing."""
    path = Path(exp_dir) / FILE
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} is not valid JSON (line {e.lineno}): delete it or rerun with --write") from e
    return write(exp_dir)


def table(info: dict) -> list[str]:
    """The lines printed under the WER table."""
    budget = f" of a {info['max_minutes']:g}-minute budget" if info.get("max_minutes") else ""
    return [
        f"training: {info['batches']} batches, {info['epochs']:g} epochs, {info['train_minutes']:g} min{budget}",
        f"precision: {info['precision']} ({info['precision_reason']})",
        f"cpu: {info['cpu_model']}, {info['cpu_cores']} cores, capability {info['cpu_capability']}, "
        f"native bf16 {'yes' if info['native_bf16'] else 'no'}",
    ]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exp-dir", type=Path, required=True)
    ap.add_argument("--write", action="store_true", help="(re)write run_info.json from the latest checkpoint")
    args = ap.parse_args(argv)
    try:
        info = write(args.exp_dir) if args.write else read_or_write(args.exp_dir)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"asr.run_info: {e}")
    print("\n".join(table(info)))


if __name__ == "__main__":
    main()
