"""Training-step time of two set-ups relative to each other, interleaved on the same batches.

    nice .venv/bin/python bench/bench_train_step.py                   # bf16 autocast vs float32, conformer_small
    nice .venv/bin/python bench/bench_train_step.py --compare subsampling --vocab-size 128  # factor 8 vs 4
    nice .venv/bin/python bench/bench_train_step.py --compare half-rate --vocab-size 64     # layers 1-4 at half rate
    nice .venv/bin/python bench/bench_train_step.py --compare optimizer --vocab-size 64     # ScaledAdam vs Adam
    nice .venv/bin/python bench/bench_train_step.py --compare foreach --vocab-size 64       # ScaledAdam's two paths
    .venv/bin/python bench/bench_train_step.py --model conformer_l12 --seconds 120 --device cuda
    nice -n 0 .venv/bin/python bench/bench_train_step.py --compare tree --baseline ../base --paper --rounds 3
    nice .venv/bin/python bench/bench_train_step.py --front-end-flops --paper   # FLOPs of lighter front ends, no timing

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

`--compare tree --baseline DIR`: this checkout's code against another checkout's (e.g. `git worktree add --detach
../base <commit>`), each in its own process (PYTHONPATH set to its tree), taking turns step by step (A B, B A, ...)
for --rounds rounds after --warmup steps each; the optimiser is the trainer's Adam (asr.train.optim.build_optimizer,
optim=noam). `--paper` sets the pruned RNN-T paper's batch: conformer_l12, 8 utterances of 10 s (1000 x 80 fbank),
60 random labels each, V = 500, prune range 5, 2 threads; the encoder's dropout is 0 unless `--dropout P` (each tree
builds the model from its own conf/). Besides the times it prints each process's peak RSS (getrusage high-water)
and peak live memory (malloc's in-use bytes, sampled: `LivePeak`), the FLOPs of one step (torch.utils.flop_counter, grouped-convolution backward counted per
group) and the FLOP/s achieved against a large fp32 matmul timed in the same run, and a per-module time table
(bench/step_profile.py) of one more step of each tree.

`--front-end-flops`: no timing; for subsampling_conv full and depthwise, each with subsampling_channels d_model and
d_model / 2, the parameters of the subsampling and the forward FLOPs of the encoder alone and of its subsampling on
one batch (the paper's with `--paper`), counted by torch.utils.flop_counter in eval mode on one thread.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
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


def build(model_name: str, vocab_size: int, device: torch.device, conf: Path = CONF, **encoder) -> torch.nn.Module:
    cfg = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(conf / f"{model_name}.yaml"))
    cfg.vocab_size = vocab_size
    cfg.encoder.dropout = 0.0
    for key, value in encoder.items():
        cfg.encoder[key] = value
    return build_model(OmegaConf.to_object(cfg)).to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", choices=["amp", "subsampling", "half-rate", "optimizer", "foreach", "tree"],
                        default="amp")
    parser.add_argument("--baseline", type=Path, help="for --compare tree: the other checkout's root")
    parser.add_argument("--paper", action="store_true", help="the paper's batch and model (see above)")
    parser.add_argument("--rounds", type=int, default=3, help="for --compare tree: timed steps per tree")
    parser.add_argument("--warmup", type=int, default=1, help="for --compare tree: untimed steps first")
    parser.add_argument("--dropout", type=float, default=0.0,
                        help="for --compare tree: the encoder's dropout (0: the icefall comparison's setting)")
    parser.add_argument("--no-profile", action="store_true", help="for --compare tree: skip FLOPs and module table")
    parser.add_argument("--front-end-flops", action="store_true", help="FLOPs of the subsampling variants (above)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # internal: one tree's process
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
    if args.paper:
        args.model, args.vocab_size, args.threads = "conformer_l12", 500, 2
    if args.worker:
        return tree_worker(args)
    if args.compare == "tree":
        return compare_trees(args)
    if args.front_end_flops:
        return front_end_table(args)

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


# ---------------------------------------------------------------------------------------------- --front-end-flops
def front_end_table(args: argparse.Namespace) -> None:
    """Prints a Markdown table: per subsampling variant, its parameters and its share of the encoder's forward FLOPs."""
    from step_profile import front_end_flops

    torch.set_num_threads(1)  # a count, not a timing: one thread leaves a shared machine alone
    x, x_lens, _, _ = fixed_batch(args)
    d_model = int(OmegaConf.load(CONF / f"{args.model}.yaml").encoder.d_model)
    print(f"model {args.model}, encoder forward, eval mode, batch {tuple(x.shape)} (B, T, F), "
          f"{int(x_lens.sum())} valid frames")
    print("| subsampling_conv | subsampling_channels | subsampling parameters | subsampling GFLOP | encoder GFLOP "
          "| subsampling share | encoder FLOPs vs the first |")
    print("|---|---|---|---|---|---|---|")
    reference = None
    for conv in ("full", "depthwise"):
        for channels in (d_model, d_model // 2):
            encoder = build(args.model, args.vocab_size, torch.device("cpu"), subsampling_conv=conv,
                            subsampling_channels=channels).encoder.eval()
            flops = front_end_flops(encoder, x, x_lens)
            reference = reference or flops["encoder"]
            params = sum(p.numel() for p in encoder.subsampling.parameters())
            print(f"| {conv} | {channels} | {params:,} | {flops['subsampling'] / 1e9:.1f} | "
                  f"{flops['encoder'] / 1e9:.1f} | {flops['subsampling'] / flops['encoder']:.1%} | "
                  f"{flops['encoder'] / reference:.3f} |", flush=True)


# ------------------------------------------------------------------------------------------------ --compare tree
PAPER_BATCH = dict(utterances=8, frames=1000, labels=60)  # 8 x 10 s of 10 ms frames, 60 labels each


def fixed_batch(args: argparse.Namespace) -> tuple:
    """x (B, T, 80), x_lens (B,), y (B, U), y_lens (B,): the paper's batch with --paper, else make_batch's."""
    generator = torch.Generator().manual_seed(args.seed)
    if not args.paper:
        return make_batch(args.seconds, args.vocab_size, generator, *args.utterance_seconds, args.bucketed)
    b, t, u = PAPER_BATCH["utterances"], PAPER_BATCH["frames"], PAPER_BATCH["labels"]
    x = torch.randn(b, t, 80, generator=generator)
    y = torch.randint(1, args.vocab_size, (b, u), generator=generator)
    return x, torch.full((b,), t), y, torch.full((b,), u)


class LivePeak:
    """High-water mark of the bytes malloc has handed out and not taken back (glibc's mallinfo2: in-use arena
    chunks + mmapped blocks), sampled every 2 ms by a thread. Unlike the RSS high-water, it leaves out the heap's
    free fragments, which glibc keeps resident (RSS is about 1.9x this peak on conformer_l12's step, and moves by
    hundreds of MB between identical runs); it is what the step's tensors need. 0 off glibc."""

    def __init__(self) -> None:
        import ctypes
        import threading

        self.peak_mb = 0.0
        try:
            info = ctypes.CDLL("libc.so.6").mallinfo2
        except (OSError, AttributeError):
            return

        class MallInfo2(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in
                        "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

        info.restype = MallInfo2

        def sample() -> None:
            while True:
                m = info()
                self.peak_mb = max(self.peak_mb, (m.uordblks + m.hblkhd) / 2**20)
                time.sleep(0.002)

        threading.Thread(target=sample, daemon=True).start()


def tree_worker(args: argparse.Namespace) -> None:
    """One tree's process: builds the model and the trainer's Adam, then answers commands read from stdin, one JSON
    line each: "step" (a timed step), "rss", "flops", "profile" (module table of one step), "quit"."""
    from asr.train.config import OptimConfig
    from asr.train.optim import build_optimizer

    try:  # the trainer's allocator setting (asr.train.run calls it), where the tree has it
        from asr.train.allocator import keep_freed_memory

        keep_freed_memory()
    except ImportError:
        pass
    torch.set_num_threads(args.threads or torch.get_num_threads())
    torch.manual_seed(args.seed)
    device = torch.device("cpu")
    import asr  # the tree's own package, on PYTHONPATH; its conf/ describes its model (an older tree's fields)

    live = LivePeak()
    model = build(args.model, args.vocab_size, device, Path(asr.__file__).resolve().parents[1] / "conf" / "model",
                  dropout=args.dropout)
    optimizer, _ = build_optimizer(model, OptimConfig(optimizer="adam", schedule="noam"))
    x, x_lens, y, y_lens = fixed_batch(args)
    ids = [str(i) for i in range(x.size(0))]

    def forward():
        return compute_batch_loss(
            model, Batch(x, x_lens, y, y_lens, cut_ids=ids, texts=[""] * len(ids)), prune_range=5, am_scale=0.0,
            lm_scale=0.25, simple_scale=0.5, pruned_scale=1.0, frames_fn=model.encoder.output_lengths,
            device=device, amp="none",
        )  # fmt: skip

    def step() -> dict:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        res = forward()
        optimizer.zero_grad()
        res.loss.backward()
        opt_start = time.perf_counter()
        optimizer.step()
        end = time.perf_counter()
        after = resource.getrusage(resource.RUSAGE_SELF)
        return dict(seconds=end - start, optimizer=end - opt_start, loss=float(res.loss.detach()),
                    cpu=after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime,
                    system=after.ru_stime - usage.ru_stime, faults=after.ru_minflt - usage.ru_minflt)

    def reply(obj: dict) -> None:
        print(json.dumps(obj), flush=True)

    reply(dict(parameters=sum(p.numel() for p in model.parameters()), threads=torch.get_num_threads()))
    for line in sys.stdin:
        command = line.strip()
        if command == "step":
            reply(step())
        elif command == "rss":
            reply(dict(peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, peak_live_mb=live.peak_mb))
        elif command == "flops":
            from step_profile import count_flops

            optimizer.zero_grad()
            reply(count_flops(lambda: forward().loss, lambda loss: loss.backward()))
        elif command == "profile":
            from step_profile import instrument_transducer

            timer = instrument_transducer(model)
            try:
                figures = step()
            finally:
                timer.remove()
            reply(dict(table=timer.table(), **figures))
        elif command == "quit":
            return


def ask_worker(proc: subprocess.Popen, name: str, command: str) -> dict:
    """Sends one command line to a worker process and returns its JSON reply; a dead worker stops the bench."""
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    if not line:
        raise SystemExit(f"the {name} worker died on {command!r}")
    return json.loads(line)


def compare_trees(args: argparse.Namespace) -> None:
    """This checkout against --baseline, alternating steps between their two worker processes."""
    here = Path(__file__).resolve().parents[1]
    if args.baseline is None or not (args.baseline / "asr").is_dir():
        raise SystemExit(f"--compare tree needs --baseline DIR, a checkout with an asr/ package (got {args.baseline})")
    trees = {"this tree": here, "baseline": args.baseline.resolve()}
    forwarded = [a for a in sys.argv[1:] if a != "--worker"] + ["--worker"]
    workers = {}
    for label, root in trees.items():
        env = dict(os.environ, PYTHONPATH=str(root))
        workers[label] = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *forwarded], env=env,
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=root)

    def ask(label: str, command: str) -> dict:
        return ask_worker(workers[label], f"{label} ({trees[label]})", command)

    info = {label: json.loads(proc.stdout.readline()) for label, proc in workers.items()}
    labels = list(trees)
    results: dict[str, list[dict]] = {label: [] for label in labels}
    try:
        for i in range(args.warmup + args.rounds):
            for label in labels if i % 2 == 0 else labels[::-1]:
                r = ask(label, "step")
                print(f"step {i} {label}: {r['seconds']:.2f} s (optimiser {r['optimizer']:.2f} s), CPU {r['cpu']:.2f} s "
                      f"(system {r['system']:.2f} s, {r['faults']} minor faults), loss {r['loss']:.4f}", flush=True)
                if i >= args.warmup:
                    results[label].append(r)
        rss = {label: ask(label, "rss") for label in labels}
        extra = {}
        if not args.no_profile:
            peak = matmul_peak_here(args.threads)
            flops = ask("this tree", "flops")
            profiles = {label: ask(label, "profile") for label in labels}
            extra = dict(peak=peak, flops=flops, profiles=profiles)
    finally:
        for proc in workers.values():
            with contextlib.suppress(OSError):
                proc.stdin.write("quit\n")
                proc.stdin.close()
            proc.wait()
    report_trees(args, trees, info, results, rss, **extra)


def matmul_peak_here(threads: int) -> float:
    from step_profile import matmul_peak

    if threads:
        torch.set_num_threads(threads)
    return matmul_peak()


def report_trees(args, trees, info, results, rss, peak=None, flops=None, profiles=None) -> None:
    this, base = "this tree", "baseline"
    med = {label: statistics.median(r["seconds"] for r in rs) for label, rs in results.items()}
    ratios = [a["seconds"] / b["seconds"] for a, b in zip(results[this], results[base])]
    batch = (f"{PAPER_BATCH['utterances']} x {PAPER_BATCH['frames']} frames, U = {PAPER_BATCH['labels']}"
             if args.paper else f"{args.seconds:.0f} s of {args.utterance_seconds} s utterances")
    print(f"\nmodel {args.model} ({info[this]['parameters']:,} parameters), V = {args.vocab_size}, batch {batch}, "
          f"dropout {args.dropout}, threads {info[this]['threads']}, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}, {args.rounds} alternated rounds after {args.warmup} warm-up")
    print("| tree | path | median step s | median optimiser s | median CPU s (system s) | peak RSS MB | peak live MB |")
    print("|---|---|---|---|---|---|---|")
    for label in (base, this):
        opt = statistics.median(r["optimizer"] for r in results[label])
        cpu = statistics.median(r["cpu"] for r in results[label])
        system = statistics.median(r["system"] for r in results[label])
        print(f"| {label} | {trees[label]} | {med[label]:.2f} | {opt:.2f} | {cpu:.2f} ({system:.2f}) | "
              f"{rss[label]['peak_rss_mb']:.0f} | {rss[label]['peak_live_mb']:.0f} |")
    cpu_ratios = [a["cpu"] / b["cpu"] for a, b in zip(results[this], results[base])]
    print(f"this / baseline step time: per round {', '.join(f'{r:.3f}' for r in ratios)}; "
          f"median {statistics.median(ratios):.3f}; CPU time (user + system): per round "
          f"{', '.join(f'{r:.3f}' for r in cpu_ratios)}; median {statistics.median(cpu_ratios):.3f}")
    if flops is None:
        return
    total = flops["forward"] + flops["backward"]
    print(f"FLOPs per step (this tree): {total / 1e12:.3f} T (forward {flops['forward'] / 1e12:.3f} T, backward "
          f"{flops['backward'] / 1e12:.3f} T); subsampling {flops.get('subsampling', 0) / flops.get('encoder', 1):.0%} "
          f"of the encoder's forward FLOPs")
    print(f"fp32 matmul peak (4096^3, same run): {peak / 1e9:.1f} GFLOP/s; achieved over the median step: "
          f"{total / med[this] / 1e9:.1f} GFLOP/s ({total / med[this] / peak:.0%} of peak); baseline (same FLOPs): "
          f"{total / med[base] / 1e9:.1f} GFLOP/s")
    categories = list(dict.fromkeys(k for p in profiles.values() for k in p["table"]))
    print("| region (one step each) | baseline fwd s | baseline bwd s | this fwd s | this bwd s |")
    print("|---|---|---|---|---|")
    for cat in [*categories, "optimiser", "rest", "step"]:
        row = []
        for label in (base, this):
            p = profiles[label]
            fwd, bwd = p["table"].get(cat, (0.0, 0.0))
            if cat == "optimiser":
                fwd, bwd = p["optimizer"], 0.0
            elif cat == "rest":
                fwd = p["seconds"] - p["optimizer"] - sum(f + b for f, b in p["table"].values())
                bwd = 0.0
            elif cat == "step":
                fwd, bwd = p["seconds"], 0.0
            row += [f"{fwd:.2f}", f"{bwd:.2f}" if cat not in ("optimiser", "rest", "step") else ""]
        print(f"| {cat} | {' | '.join(row)} |")


if __name__ == "__main__":
    main()
