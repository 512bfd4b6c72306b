"""Training-step time with bfloat16 autocast relative to float32, interleaved on the same batches.

    nice .venv/bin/python bench/bench_train_step.py                   # conformer_small (the demo's model), CPU
    .venv/bin/python bench/bench_train_step.py --model conformer_l12 --seconds 120 --device cuda

A step is the transducer's forward (simple + pruned loss, as the trainer runs it), backward and an Adam step, on
random 80-bin features of LibriSpeech-like lengths with random labels. The two precisions alternate batch by
batch in one process, so a load change on a shared machine hits both alike; the ratio is the median over the
batches of bf16 time / float32 time. `trainer.amp=auto` picks bf16 where this ratio is below 1: on CUDA with
bf16, and on CPUs with native bfloat16 (AVX512-BF16 or AMX).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from asr.models import ModelConfig, build_model, subsampled_lengths
from asr.train.step import compute_batch_loss, cpu_has_native_bf16

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
FRAMES_PER_SECOND = 100  # 10 ms fbank frame shift
LETTERS_PER_SECOND = 15  # tokens per second of speech for a letter-like vocabulary (32-64 units)


def make_batch(seconds: float, vocab_size: int, generator: torch.Generator) -> tuple:
    """Utterances of 2-16 s filling `seconds` of audio: x (B, T, 80), x_lens (B,), y (B, U), y_lens (B,)."""
    durations = []
    while sum(durations) < seconds:
        durations.append(float(torch.empty(1).uniform_(2.0, 16.0, generator=generator)))
    x_lens = torch.tensor([int(d * FRAMES_PER_SECOND) for d in durations])
    y_lens = torch.tensor([max(1, int(d * LETTERS_PER_SECOND)) for d in durations])
    x = torch.randn(len(durations), int(x_lens.max()), 80, generator=generator)
    y = torch.randint(1, vocab_size, (len(durations), int(y_lens.max())), generator=generator)
    return x, x_lens, y, y_lens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="conformer_small", help="a conf/model/*.yaml")
    parser.add_argument("--vocab-size", type=int, default=32, help="units (README: 32; the demo: 64)")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per batch (the demo: 60)")
    parser.add_argument("--batches", type=int, default=12, help="timed batches per precision")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(CONF / f"{args.model}.yaml"))
    cfg.vocab_size = args.vocab_size
    cfg.encoder.dropout = 0.0
    torch.manual_seed(args.seed)
    model = build_model(OmegaConf.to_object(cfg)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(args.seed)
    batches = [make_batch(args.seconds, args.vocab_size, generator) for _ in range(args.batches + 2)]

    def step(batch: tuple, amp: str) -> float:
        x, x_lens, y, y_lens = (t.to(device) for t in batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        res = compute_batch_loss(
            model, x, x_lens, y, y_lens, [str(i) for i in range(x.size(0))], prune_range=5, am_scale=0.0,
            lm_scale=0.25, simple_scale=0.5, pruned_scale=1.0, frames_fn=subsampled_lengths, device=device, amp=amp,
        )  # fmt: skip
        optimizer.zero_grad()
        res.loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    times: dict[str, list[float]] = {"none": [], "bf16": []}
    for i, batch in enumerate(batches):
        for amp in ("none", "bf16") if i % 2 == 0 else ("bf16", "none"):
            seconds = step(batch, amp)
            if i >= 2:  # the first two batches warm up the allocator and oneDNN's kernel caches
                times[amp].append(seconds)
    ratios = [b / a for a, b in zip(times["none"], times["bf16"])]
    native = cpu_has_native_bf16() if device.type == "cpu" else torch.cuda.is_bf16_supported()
    print(f"device {device}, threads {torch.get_num_threads()}, native bf16 {native}, model {args.model} "
          f"({sum(p.numel() for p in model.parameters()):,} parameters, vocab {args.vocab_size}), "
          f"{args.seconds:.0f} s batches, {args.batches} timed steps each")
    print("| precision | median step s | ratio to float32 (median of per-batch ratios) |")
    print("|---|---|---|")
    print(f"| float32 | {statistics.median(times['none']):.3f} | 1.000 |")
    print(f"| bf16 autocast | {statistics.median(times['bf16']):.3f} | {statistics.median(ratios):.3f} |")


if __name__ == "__main__":
    main()
