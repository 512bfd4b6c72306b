"""What a graceful stop (preemption) costs: the time to write one training checkpoint of a model.

    nice .venv/bin/python bench/bench_checkpoint_save.py --model conformer_l12 --exp-dir /tmp/ckpt-bench

Builds the model of conf/model/MODEL.yaml with Adam and its state (one step on zero gradients), the float64
running average the trainer keeps, and writes the checkpoint dict as the trainer does (asr's save_checkpoint:
torch.save to a temporary file, fsync, rename), `--repeat` times; prints the size and the median time. After a
signal the run finishes the batch in progress (at most one batch of work) and then writes exactly this.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asr.models import ModelConfig, build_model  # noqa: E402
from asr.train.averaging import make_model_average  # noqa: E402

try:
    from asr.checkpoint import save_checkpoint  # noqa: E402
except ImportError:  # before the move of asr/train/checkpoint.py
    from asr.train.checkpoint import save_checkpoint  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="conformer_l12")
    p.add_argument("--exp-dir", default="/tmp/asr-ckpt-bench")
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    conf = Path(__file__).resolve().parents[1] / "conf" / "model" / f"{args.model}.yaml"
    cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(conf)))
    model = build_model(cfg)
    n = sum(p.numel() for p in model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    for p_ in model.parameters():
        p_.grad = torch.zeros_like(p_)
    opt.step()
    avg = make_model_average(model)
    state = {"model": model.state_dict(), "model_avg": avg.state_dict(), "optimizer": opt.state_dict()}
    out = Path(args.exp_dir)
    out.mkdir(parents=True, exist_ok=True)
    times = []
    for i in range(args.repeat):
        t0 = time.perf_counter()
        save_checkpoint(out / "bench.pt", state)
        times.append(time.perf_counter() - t0)
    size = (out / "bench.pt").stat().st_size
    (out / "bench.pt").unlink()
    print(f"{args.model}: {n:,} parameters, checkpoint {size / 2**20:.0f} MiB (model, Adam state, float64 average), "
          f"write {statistics.median(times):.2f} s median of {args.repeat} ({', '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    main()
