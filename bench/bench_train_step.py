"""Training-step time of two set-ups relative to each other, interleaved on the same batches.

    nice .venv/bin/python bench/bench_train_step.py                   # bf16 autocast vs float32, conformer_small
    nice .venv/bin/python bench/bench_train_step.py --compare subsampling --vocab-size 128  # factor 8 vs 4
    nice .venv/bin/python bench/bench_train_step.py --compare half-rate --vocab-size 64     # layers 1-4 at half rate
    nice .venv/bin/python bench/bench_train_step.py --compare optimizer --vocab-size 64     # ScaledAdam vs Adam
    nice .venv/bin/python bench/bench_train_step.py --compare foreach --vocab-size 64       # ScaledAdam's two paths
    .venv/bin/python bench/bench_train_step.py --model conformer_l12 --seconds 120 --device cuda

A step is the transducer's forward (simple + pruned loss, as the trainer runs it), backward and an Adam step, on
random 80-bin features of LibriSpeech-like lengths with random labels. The two set-ups alternate batch by batch in
one process, so a load change on a shared machine hits both alike; the ratio is the median over the batches of
the second's time / the first's.
- `--compare amp`: float32 against bf16 autocast. `trainer.amp=auto` picks bf16 where this ratio is below 1: on
  CUDA with bf16, and on CPUs with native bfloat16 (AVX512-BF16 or AMX).
- `--compare subsampling`: the model's encoder at subsampling factor 4 against 8 (FastConformer's 80 ms frames,
  with the depthwise kernel halved to keep its span in seconds), both in the precision `trainer.amp=auto` picks.
- `--compare half-rate`: the model as it is against the same with `half_rate_layers` (default [1, 5]: of six
  layers, the middle four at half the frame rate), in that precision too.
- `--compare optimizer`: Adam against ScaledAdam (`optim=scaled_adam`, the demo's), on two copies of the model
  (the step includes the optimiser's, which is all that differs).
- `--compare foreach`: ScaledAdam's per-tensor loop (`foreach=False`) against its `torch._foreach_*` path (the
  default), two copies of the model.
The table also gives the median time of the optimiser step alone.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from asr.data.batch import Batch
from asr.models import ModelConfig, build_model
from asr.train.scaled_adam import ScaledAdam
from asr.train.step import compute_batch_loss, cpu_has_native_bf16, resolve_amp

CONF = Path(__file__).resolve().parents[1] / "conf" / "model"
FRAMES_PER_SECOND = 100  # 10 ms fbank frame shift
# Mean BPE tokens per second of speech on the demo corpus's training set (sessions 5-6), by vocabulary size.
TOKENS_PER_SECOND = {32: 14.4, 64: 10.2, 128: 7.7}


def tokens_per_second(vocab_size: int) -> float:
    """The measured rate, else a power law through the measured points (about 4.5 for 500 pieces)."""
    return TOKENS_PER_SECOND.get(vocab_size, 14.4 * (32 / vocab_size) ** 0.42)


def make_batch(seconds: float, vocab_size: int, generator: torch.Generator, lo: float = 2.0, hi: float = 16.0,
               bucketed: bool = False) -> tuple:
    """Utterances of lo-hi s filling `seconds` of audio: x (B, T, 80), x_lens (B,), y (B, U), y_lens (B,).

    bucketed: the utterances of a batch are within 10% of one length drawn from lo-hi, as a bucketing sampler
    (the trainer's) makes them, with little padding; else each length is drawn alone.
    """
    durations: list[float] = []
    center = float(torch.empty(1).uniform_(lo, hi, generator=generator))
    while sum(durations) < seconds:
        a, b = (0.9 * center, 1.1 * center) if bucketed else (lo, hi)
        durations.append(float(torch.empty(1).uniform_(a, b, generator=generator)))
    x_lens = torch.tensor([int(d * FRAMES_PER_SECOND) for d in durations])
    y_lens = torch.tensor([max(1, int(d * tokens_per_second(vocab_size))) for d in durations])
    x = torch.randn(len(durations), int(x_lens.max()), 80, generator=generator)
    y = torch.randint(1, vocab_size, (len(durations), int(y_lens.max())), generator=generator)
    return x, x_lens, y, y_lens


def build(model_name: str, vocab_size: int, device: torch.device, **encoder) -> torch.nn.Module:
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(CONF / f"{model_name}.yaml"))
    cfg.vocab_size = vocab_size
    cfg.encoder.dropout = 0.0
    for key, value in encoder.items():
        cfg.encoder[key] = value
    return build_model(OmegaConf.to_object(cfg)).to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", choices=["amp", "subsampling", "half-rate", "optimizer", "foreach"], default="amp")
    parser.add_argument("--half-rate-layers", type=int, nargs=2, default=[1, 5], help="for --compare half-rate")
    parser.add_argument("--model", default="conformer_small", help="a conf/model/*.yaml")
    parser.add_argument("--vocab-size", type=int, default=32, help="units (README: 32; the demo: 64)")
    parser.add_argument("--seconds", type=float, default=60.0, help="audio per batch (the demo: 60)")
    parser.add_argument("--batches", type=int, default=12, help="timed batches per set-up")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--utterance-seconds", type=float, nargs=2, default=[2.0, 16.0],
                        help="range of utterance lengths (the demo corpus: 1.5-16.5, mean 6.2)")
    parser.add_argument("--bucketed", action="store_true", help="batches of similar lengths, as the trainer's")
    args = parser.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    amp = resolve_amp("auto", device)  # the precision of the architecture comparisons
    if args.compare == "amp":
        model = build(args.model, args.vocab_size, device)
        setups = [("float32", model, "none"), ("bf16 autocast", model, "bf16")]
    elif args.compare == "half-rate":
        setups = [("full rate", build(args.model, args.vocab_size, device), amp),
                  (f"half_rate_layers {args.half_rate_layers}", build(args.model, args.vocab_size, device,
                                                                     half_rate_layers=args.half_rate_layers), amp)]
    elif args.compare == "optimizer":
        setups = [("Adam", build(args.model, args.vocab_size, device), amp),
                  ("ScaledAdam", build(args.model, args.vocab_size, device), amp)]
    elif args.compare == "foreach":
        setups = [("ScaledAdam per-tensor loop", build(args.model, args.vocab_size, device), amp),
                  ("ScaledAdam foreach", build(args.model, args.vocab_size, device), amp)]
    else:
        kernel = int(OmegaConf.load(CONF / f"{args.model}.yaml").encoder.cnn_kernel)
        setups = [(f"factor 4, kernel {kernel}", build(args.model, args.vocab_size, device), amp),
                  (f"factor 8, kernel {kernel // 2}", build(args.model, args.vocab_size, device, subsampling_factor=8,
                                                         cnn_kernel=kernel // 2), amp)]  # fmt: skip
    def make_optimizer(label: str, model: torch.nn.Module) -> torch.optim.Optimizer:
        if label.startswith("ScaledAdam"):
            return ScaledAdam(model.parameters(), lr=1e-3, foreach="loop" not in label)
        return torch.optim.Adam(model.parameters(), lr=1e-4)

    optimizers = {label: make_optimizer(label, model) for label, model, _ in setups}
    generator = torch.Generator().manual_seed(args.seed)
    lo, hi = args.utterance_seconds
    batches = [make_batch(args.seconds, args.vocab_size, generator, lo, hi, args.bucketed)
               for _ in range(args.batches + 2)]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step(batch: tuple, label: str, model: torch.nn.Module, amp: str) -> tuple[float, float]:
        """(whole step s, optimiser step s)"""
        x, x_lens, y, y_lens = (t.to(device) for t in batch)
        ids = [str(i) for i in range(x.size(0))]
        sync()
        start = time.perf_counter()
        res = compute_batch_loss(
            model, Batch(x, x_lens, y, y_lens, cut_ids=ids, texts=[""] * len(ids)), prune_range=5, am_scale=0.0,
            lm_scale=0.25, simple_scale=0.5, pruned_scale=1.0, frames_fn=model.encoder.output_lengths,
            device=device, amp=amp,
        )  # fmt: skip
        optimizers[label].zero_grad()
        res.loss.backward()
        sync()
        opt_start = time.perf_counter()
        optimizers[label].step()
        sync()
        end = time.perf_counter()
        return end - start, end - opt_start

    times: dict[str, list[float]] = {label: [] for label, _, _ in setups}
    opt_times: dict[str, list[float]] = {label: [] for label, _, _ in setups}
    for i, batch in enumerate(batches):
        for label, model, amp in setups if i % 2 == 0 else setups[::-1]:
            seconds, opt_seconds = step(batch, label, model, amp)
            if i >= 2:  # the first two batches warm up the allocator and oneDNN's kernel caches
                times[label].append(seconds)
                opt_times[label].append(opt_seconds)
    (first, _, _), (second, _, _) = setups
    ratios = [b / a for a, b in zip(times[first], times[second])]
    native = cpu_has_native_bf16() if device.type == "cpu" else torch.cuda.is_bf16_supported()
    print(f"device {device}, threads {torch.get_num_threads()}, native bf16 {native}, model {args.model} "
          f"({sum(p.numel() for p in setups[0][1].parameters()):,} parameters, vocab {args.vocab_size}), "
          f"{args.seconds:.0f} s batches of {lo:g}-{hi:g} s utterances{' (bucketed)' if args.bucketed else ''}, "
          f"{args.batches} timed steps each")
    print(f"| set-up | median step s | ratio to {first} (median of per-batch ratios) | median optimiser step ms |")
    print("|---|---|---|---|")
    for label, ratio in ((first, 1.0), (second, statistics.median(ratios))):
        print(f"| {label} | {statistics.median(times[label]):.3f} | {ratio:.3f} | "
              f"{1e3 * statistics.median(opt_times[label]):.1f} |")


if __name__ == "__main__":
    main()
