"""What a graceful stop (preemption) costs for a model: the checkpoint write, and signal-to-exit through the Trainer.

    nice .venv/bin/python bench/bench_preemption.py --model conformer_l12 --exp-dir /tmp/asr-preemption-bench

1. The checkpoint write alone: the model of conf/model/MODEL.yaml with Adam and its state (one step on zero
   gradients) and the float64 running average, written as the trainer writes it (asr.checkpoint.save_checkpoint:
   temporary file, fsync, rename) `--repeat` times; prints the size and the times.
2. The graceful stop: the Trainer on random batches (`--batch` utterances of `--seconds` s of 80-bin features, random
   labels) sends itself SIGTERM as batch 2 starts; prints the time from the signal to fit() returning (the rest of
   the batch, the all-reduce, the checkpoint) and the batch time without a signal for comparison.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asr.checkpoint import save_checkpoint  # noqa: E402
from asr.data.batch import Batch  # noqa: E402
from asr.loss.config import LossConfig  # noqa: E402
from asr.models import ModelConfig, build_model  # noqa: E402
from asr.train.averaging import make_model_average  # noqa: E402
from asr.train.config import OptimConfig, TrainerConfig  # noqa: E402
from asr.train.distributed import DistInfo  # noqa: E402
from asr.train.optim import build_optimizer  # noqa: E402
from asr.train.trainer import Trainer  # noqa: E402


def _model(name: str) -> torch.nn.Module:
    conf = Path(__file__).resolve().parents[1] / "conf" / "model" / f"{name}.yaml"
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(conf)))
    return build_model(cfg)


def write_times(name: str, out: Path, repeat: int) -> None:
    model = _model(name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    state = {"model": model.state_dict(), "model_avg": make_model_average(model).state_dict(),
             "optimizer": opt.state_dict()}  # fmt: skip
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        save_checkpoint(out / "bench.pt", state)
        times.append(time.perf_counter() - t0)
    size = (out / "bench.pt").stat().st_size
    (out / "bench.pt").unlink()
    n = sum(p.numel() for p in model.parameters())
    print(f"{name}: {n:,} parameters; checkpoint {size / 2**20:.0f} MiB (model, Adam state, float64 average); "
          f"write {min(times):.2f} to {max(times):.2f} s, median {statistics.median(times):.2f} s of {repeat} "
          f"({', '.join(f'{t:.2f}' for t in times)})")  # fmt: skip


def graceful_stop(name: str, out: Path, batch: int, seconds: float) -> None:
    torch.manual_seed(0)
    model = _model(name)
    optimizer, schedule = build_optimizer(model, OptimConfig(model_size=512))
    T, U = int(seconds * 100), int(seconds * 3)
    batches = [Batch(features=torch.randn(batch, T, 80), feature_lens=torch.full((batch,), T),
                     tokens=torch.randint(1, 500, (batch, U)), token_lens=torch.full((batch,), U),
                     cut_ids=[f"b{i}-u{j}" for j in range(batch)], texts=[""] * batch)
               for i in range(4)]  # fmt: skip
    cfg = TrainerConfig(exp_dir=str(out / "exp"), num_epochs=1, device="cpu", log_interval=1, valid_interval=0,
                        save_every_n=0, average_period=1, tensorboard=False)  # fmt: skip
    trainer = Trainer(model=model, optimizer=optimizer, schedule=schedule, cfg=cfg, loss=LossConfig(),
                      dist=DistInfo(0, 1, 0, torch.device("cpu")), make_train_loader=lambda s: batches,
                      valid_loader=None, clip_grad_norm=5.0, config={})  # fmt: skip
    step, marks = trainer.train_step, {}

    def timed(b):
        if b.cut_ids[0].startswith("b1-"):
            marks["signal"] = time.perf_counter()
            os.kill(os.getpid(), signal.SIGTERM)
        t0 = time.perf_counter()
        res = step(b)
        marks.setdefault("batches", []).append(time.perf_counter() - t0)
        return res

    trainer.train_step = timed
    trainer.fit()
    stop = time.perf_counter() - marks["signal"]
    assert trainer.stopped_by == "SIGTERM", trainer.stopped_by
    print(f"{name}: graceful stop {stop:.1f} s from SIGTERM at the start of batch 2 to fit() returning "
          f"(batch 1 took {marks['batches'][0]:.1f} s, batch 2 {marks['batches'][1]:.1f} s; {batch} x {seconds:g} s "
          f"utterances, 1 process)")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="conformer_l12")
    p.add_argument("--exp-dir", default="/tmp/asr-preemption-bench")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seconds", type=float, default=4.0)
    args = p.parse_args()
    out = Path(args.exp_dir)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    write_times(args.model, out, args.repeat)
    graceful_stop(args.model, out, args.batch, args.seconds)
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
