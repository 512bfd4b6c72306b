"""Step 4 of the GPU check: DDP under torchrun gives the loss of one process.

Three runs of the same few SGD steps on the same global batch, each a fresh `torchrun --standalone`:
  1 process, NCCL (on CUDA; gloo in the CPU fallback): the reference;
  2 processes, gloo, CUDA tensors on the one GPU (NCCL refuses two ranks on one device), each rank taking every
  second utterance.
Each rank's loss is its utterances' summed loss over the global frame count, times the world size (DDP averages the
gradients over ranks, so the gradient is that of the whole batch, as the trainer does); the logged loss is the sum
over ranks. The model runs in eval mode (BatchNorm on its running statistics: in train mode each rank would
normalise with its own half batch's statistics, which no DDP run without SyncBatchNorm matches), with TF32 off.

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m bench.gpu.step_distributed --worker \
        --device cuda --backend gloo --out losses.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from bench.gpu import workload

REPO = Path(__file__).resolve().parents[2]


def worker(args: argparse.Namespace) -> None:
    """One rank: builds the model, runs args.steps SGD steps, rank 0 writes the summed losses to args.out."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from bench.gpu.step_train import build

    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.cuda.set_device(0)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    dist.init_process_group(args.backend, rank=rank, world_size=world)
    torch.manual_seed(0)
    model = build(args.model, device, json.loads(args.overrides)).eval()
    ddp = DistributedDataParallel(model, device_ids=[0] if device.type == "cuda" and args.backend == "nccl" else None)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    pool = workload.utterance_pool(args.utts, seed=4, scale=args.scale)
    x, x_lens, y, y_lens = workload.feature_batch(pool, model.vocab_size, device, seed=5)
    total_frames = float(x_lens.sum())
    mine = torch.arange(rank, len(pool), world, device=device)
    xs, xl, ys, yl = x[mine], x_lens[mine], y[mine], y_lens[mine]
    xs, ys = xs[:, : int(xl.max())], ys[:, : int(yl.max())]  # each rank pads to its own longest utterance
    losses = []
    for _ in range(args.steps):
        simple, pruned = ddp(xs, xl, ys, yl, prune_range=5, am_scale=0.0, lm_scale=0.25)
        loss = (0.5 * simple + pruned) / total_frames
        optimizer.zero_grad(set_to_none=True)
        (loss * world).backward()
        optimizer.step()
        summed = loss.detach().clone()
        dist.all_reduce(summed)
        losses.append(float(summed))
    if rank == 0:
        Path(args.out).write_text(json.dumps({"losses": losses, "world_size": world, "backend": args.backend}))
    dist.destroy_process_group()


def torchrun(nproc: int, backend: str, device: torch.device, profile: dict, out: Path, timeout: float) -> dict:
    """Runs `nproc` workers under torchrun; their losses, or an error."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node",
           str(nproc), "-m", "bench.gpu.step_distributed", "--worker", "--device", device.type, "--backend", backend,
           "--model", profile["dist_model"], "--overrides", json.dumps(profile.get("dist_overrides", {})),
           "--utts", str(profile["dist_utts"]), "--steps", str(profile["dist_steps"]), "--scale",
           str(profile["scale"]), "--out", str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not out.is_file():
        return {"status": "failed", "error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-600:]}"}
    return {"status": "ok", **json.loads(out.read_text())}


def run(device: torch.device, profile: dict, emit, workdir: Path) -> None:
    """Emits one row per run; the 2-process row compares its losses with the 1-process one's."""
    runs = [(1, "nccl" if device.type == "cuda" else "gloo"), (2, "gloo")]
    reference = None
    for nproc, backend in runs:
        row = {"processes": nproc, "backend": backend, "device": device.type}
        try:
            res = torchrun(nproc, backend, device, profile, workdir / f"dist_{nproc}.json", profile["dist_timeout"])
        except subprocess.TimeoutExpired:
            res = {"status": "timeout", "error": f"torchrun did not finish in {profile['dist_timeout']} s"}
        row.update(res)
        if row["status"] == "ok":
            if reference is None:
                reference = row["losses"]
            else:
                diff = max(abs(a - b) / max(abs(a), 1e-12) for a, b in zip(reference, row["losses"]))
                row["max_rel_diff_vs_1_process"] = diff
                if diff > profile["dist_rtol"] or len(row["losses"]) != len(reference):
                    row.update(status="failed", error=f"losses differ from 1 process by {diff:.2e} (relative)")
        emit(row)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="gloo")
    parser.add_argument("--model", default="conformer_small")
    parser.add_argument("--overrides", default="{}", help="JSON encoder overrides")
    parser.add_argument("--utts", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    worker(args)


if __name__ == "__main__":
    main()
