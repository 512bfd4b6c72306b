"""Benchmark: full-lattice RNN-T (joiner on (B, T, U + 1) + torchaudio) against the pruned path (ours, fast_rnnt).

    .venv/bin/python bench/bench_pruned_loss.py                 # B=8 T=250 U=60 V=500 dims 512 s_range 5

Each path runs in its own subprocess (so peak RSS is its own): forward + backward of
  (a) full:      joiner (tanh + Linear(512, V)) on the whole (B, T, U + 1) lattice, then torchaudio's rnnt_loss;
  (b) torch:     smoothed simple loss (lm_only_scale 0.25, am_only_scale 0) + prune ranges (s_range) + pruning +
                 joiner on (B, T, S) + pruned loss, with asr.loss's PyTorch backend;
  (c) fast_rnnt: the same pruned path with asr.loss.set_backend("fast_rnnt").
With --scope loss, (b) and (c) time the loss functions' own work only: the same calls on leaf inputs, with a fixed
gradient into the pruned (B, T, S, D) outputs and no joiner (whose Linear layers and tanh both backends share).
The paths take turns for --rounds rounds (a fresh process each time, so that load from other programs hits them
alike); each process times --runs steps after --warmup. Prints the median and the minimum over all timed steps,
peak RSS, and peak RSS above the RSS reached after set-up (torch itself takes ~0.5 GB here), and the ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

PATHS = ("full", "torch", "fast_rnnt")


def run_one(args: argparse.Namespace) -> dict:
    """Times one path in this process; returns its figures."""
    import torch

    import asr.loss as L

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    B, T, U, V, D = args.B, args.T, args.U, args.V, args.dim
    enc = torch.randn(B, T, D, requires_grad=True)  # stands for the encoder output
    dec = torch.randn(B, U + 1, D, requires_grad=True)  # stands for the decoder output
    symbols = torch.randint(1, V, (B, U))
    boundary = torch.tensor([[0, 0, U, T]] * B, dtype=torch.int64)
    simple_am_proj, simple_lm_proj = torch.nn.Linear(D, V), torch.nn.Linear(D, V)
    encoder_proj, decoder_proj, output_linear = torch.nn.Linear(D, D), torch.nn.Linear(D, D), torch.nn.Linear(D, V)
    params = [enc, dec, *simple_am_proj.parameters(), *simple_lm_proj.parameters(), *encoder_proj.parameters(),
              *decoder_proj.parameters(), *output_linear.parameters()]

    def full_step() -> float:
        import torchaudio

        hidden = torch.tanh(encoder_proj(enc).unsqueeze(2) + decoder_proj(dec).unsqueeze(1))  # (B, T, U + 1, D)
        logits = output_linear(hidden)  # (B, T, U + 1, V)
        loss = torchaudio.functional.rnnt_loss(logits, symbols.int(), boundary[:, 3].int(), boundary[:, 2].int(),
                                               blank=0, reduction="sum")
        loss.backward()
        return loss.item()

    # --scope loss: the loss functions' own work only. Their inputs are leaves (the simple loss's lm / am logits,
    # the joiner's projected encoder / decoder outputs, the pruned logits) and the pruned (B, T, S, D) outputs get a
    # fixed gradient, as the joiner would send back; no Linear, tanh or their backward, which both backends share.
    lm_leaf = torch.randn(B, U + 1, V, requires_grad=True)  # (B, U + 1, V)
    am_leaf = torch.randn(B, T, V, requires_grad=True)  # (B, T, V)
    enc_j, dec_j = torch.randn(B, T, D, requires_grad=True), torch.randn(B, U + 1, D, requires_grad=True)
    logits_leaf = torch.randn(B, T, min(args.s_range, U + 1), V, requires_grad=True)  # (B, T, S, V)
    pruned_grad = torch.randn(B, T, min(args.s_range, U + 1), D)  # (B, T, S, D)
    if args.scope == "loss":
        params = [lm_leaf, am_leaf, enc_j, dec_j, logits_leaf]

    def loss_only_step() -> float:
        simple_loss, (px_grad, py_grad) = L.rnnt_loss_smoothed(
            lm_leaf, am_leaf, symbols, 0, lm_only_scale=args.lm_only_scale, am_only_scale=args.am_only_scale,
            boundary=boundary, reduction="sum", return_grad=True)
        ranges = L.get_rnnt_prune_ranges(px_grad, py_grad, boundary, args.s_range)  # (B, T, S)
        am_pruned, lm_pruned = L.do_rnnt_pruning(enc_j, dec_j, ranges)  # (B, T, S, D)
        pruned_loss = L.rnnt_loss_pruned(logits_leaf, symbols, ranges, 0, boundary, reduction="sum")
        loss = 0.5 * simple_loss + pruned_loss
        torch.autograd.backward([loss, am_pruned, lm_pruned], [None, pruned_grad, pruned_grad])
        return loss.item()

    def pruned_step() -> float:
        lm, am = simple_lm_proj(dec), simple_am_proj(enc)  # (B, U + 1, V), (B, T, V)
        simple_loss, (px_grad, py_grad) = L.rnnt_loss_smoothed(
            lm, am, symbols, 0, lm_only_scale=args.lm_only_scale, am_only_scale=args.am_only_scale,
            boundary=boundary, reduction="sum", return_grad=True)
        ranges = L.get_rnnt_prune_ranges(px_grad, py_grad, boundary, args.s_range)  # (B, T, S)
        am_pruned, lm_pruned = L.do_rnnt_pruning(encoder_proj(enc), decoder_proj(dec), ranges)  # (B, T, S, D)
        logits = output_linear(torch.tanh(am_pruned + lm_pruned))  # (B, T, S, V)
        pruned_loss = L.rnnt_loss_pruned(logits, symbols, ranges, 0, boundary, reduction="sum")
        loss = 0.5 * simple_loss + pruned_loss
        loss.backward()
        return loss.item()

    if args.path == "fast_rnnt":
        L.set_backend("fast_rnnt")
    if args.scope == "loss" and args.path == "full":
        raise SystemExit("--scope loss measures the pruned paths only: pass --paths torch,fast_rnnt")
    step = full_step if args.path == "full" else loss_only_step if args.scope == "loss" else pruned_step
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    times, value = [], 0.0
    for i in range(args.warmup + args.runs):
        for p in params:
            p.grad = None
        start = time.perf_counter()
        value = step()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return dict(path=args.path, times=times, peak_rss_mb=peak, rss_before_mb=rss_before, loss=value,
                threads=torch.get_num_threads())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--B", type=int, default=8)
    parser.add_argument("--T", type=int, default=250)
    parser.add_argument("--U", type=int, default=60)
    parser.add_argument("--V", type=int, default=500)
    parser.add_argument("--dim", type=int, default=512, help="encoder, decoder and joiner dim")
    parser.add_argument("--s-range", type=int, default=5)
    parser.add_argument("--lm-only-scale", type=float, default=0.25)
    parser.add_argument("--am-only-scale", type=float, default=0.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--scope", choices=("step", "loss"), default="step",
                        help="step: the whole pruned step with its joiner (default); loss: the loss functions' own "
                             "work only (leaf inputs, a fixed gradient into the pruned outputs; no joiner)")
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated subset of " + ",".join(PATHS))
    parser.add_argument("--path", choices=PATHS, help=argparse.SUPPRESS)  # internal: run one path, print JSON
    args = parser.parse_args()
    if args.path:
        print(json.dumps(run_one(args)))
        return
    root = Path(__file__).resolve().parent.parent
    forwarded = [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                 if k not in ("paths", "rounds", "path") and v is not None]
    results: dict[str, dict] = {}
    for _ in range(args.rounds):
        for path in args.paths.split(","):
            out = subprocess.run([sys.executable, str(Path(__file__).resolve()), *forwarded, "--path", path],
                                 capture_output=True, text=True, cwd=root)
            if out.returncode != 0:
                print(f"{path}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                continue
            r = json.loads(out.stdout.strip().splitlines()[-1])
            agg = results.setdefault(path, dict(times=[], peak=0.0, extra=0.0, loss=r["loss"], threads=r["threads"]))
            agg["times"] += r["times"]
            agg["peak"] = max(agg["peak"], r["peak_rss_mb"])
            agg["extra"] = max(agg["extra"], r["peak_rss_mb"] - r["rss_before_mb"])
    for agg in results.values():
        agg["median"], agg["min"] = statistics.median(agg["times"]), min(agg["times"])
    print(f"B={args.B} T={args.T} U={args.U} V={args.V} dim={args.dim} s_range={args.s_range}, forward + backward, "
          f"{args.rounds} rounds x {args.runs} runs (after {args.warmup} warm-up) per path, "
          f"{next(iter(results.values()))['threads'] if results else '?'} threads")
    print(f"{'path':<32}{'median s':>10}{'min s':>9}{'peak RSS MB':>13}{'above set-up MB':>17}{'loss':>11}")
    names = {"full": "(a) full: joiner + torchaudio", "torch": "(b) pruned, asr.loss torch",
             "fast_rnnt": "(c) pruned, fast_rnnt backend"}
    for path, r in results.items():
        print(f"{names[path]:<32}{r['median']:>10.3f}{r['min']:>9.3f}{r['peak']:>13.0f}{r['extra']:>17.0f}"
              f"{r['loss']:>11.1f}")
    if "full" in results and "torch" in results:
        a, b = results["full"], results["torch"]
        print(f"a/b time: {a['median'] / b['median']:.1f}x (median), {a['min'] / b['min']:.1f}x (min); "
              f"b/a peak RSS: {b['peak'] / a['peak']:.2f}, above set-up: {b['extra'] / a['extra']:.2f}")
    if "torch" in results and "fast_rnnt" in results:
        b, c = results["torch"], results["fast_rnnt"]
        print(f"b/c time: {b['median'] / c['median']:.2f} (median), {b['min'] / c['min']:.2f} (min) "
              f"(<= 1: ours no slower); b/c peak RSS: {b['peak'] / c['peak']:.2f}, "
              f"above set-up: {b['extra'] / c['extra']:.2f}")


if __name__ == "__main__":
    main()
