"""Decoding time of greedy and modified beam search relative to the encoder-only forward on the same utterances.

    nice .venv/bin/python bench/bench_decode.py                      # conformer_l12, random weights, CPU
    .venv/bin/python bench/bench_decode.py --device cuda --num-utts 32

Decoding = encoder forward + search, from fbank features to token ids; the ratio is that time divided by the
encoder-only time (targets: <= 1.15 for greedy, <= 1.6 for modified beam search with beam 4). Random weights make
the search emit far more often than a trained model (a trained one emits on roughly one frame in ten), so the search
share measured here is an upper bound. Each timing is the minimum over --repeats runs.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from asr.decode.greedy import greedy_search_batch
from asr.decode.modified_beam_search import modified_beam_search
from asr.models import ConformerConfig, ModelConfig, build_model


def _timed(fn: Callable[[], object], repeats: int, device: torch.device) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-utts", type=int, default=4, help="utterances in the batch")
    parser.add_argument("--min-seconds", type=float, default=4.0, help="shortest utterance")
    parser.add_argument("--max-seconds", type=float, default=8.0, help="longest utterance")
    parser.add_argument("--layers", type=int, default=12, help="encoder layers (conformer_l12 sizes otherwise)")
    parser.add_argument("--beam", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = ModelConfig(encoder=ConformerConfig(num_layers=args.layers))
    model = build_model(cfg).to(device).eval()

    frames_per_second = 100  # 10 ms fbank frame shift
    seconds = torch.empty(args.num_utts).uniform_(args.min_seconds, args.max_seconds)
    x_lens = (seconds * frames_per_second).long().to(device)
    x = torch.randn(args.num_utts, int(x_lens.max()), cfg.encoder.num_features, device=device)

    methods = {
        "greedy": lambda e, n: greedy_search_batch(model, e, n),
        f"modified_beam_search (beam {args.beam})": lambda e, n: modified_beam_search(model, e, n, beam=args.beam),
    }
    with torch.inference_mode():
        enc, enc_lens = model.encode(x, x_lens)  # warm-up
        # Interleaved runs, minimum of each: on a shared machine the load changes between runs, and timing all of
        # one kind first would compare different loads.
        t_enc = float("inf")
        t_search = dict.fromkeys(methods, float("inf"))
        t_total = dict.fromkeys(methods, float("inf"))
        hyps = {}
        for _ in range(args.repeats):
            t, (enc, enc_lens) = _timed(lambda: model.encode(x, x_lens), 1, device)
            t_enc = min(t_enc, t)
            for name, search in methods.items():
                t, hyps[name] = _timed(lambda: search(enc, enc_lens), 1, device)
                t_search[name] = min(t_search[name], t)
                t, _ = _timed(lambda: search(*model.encode(x, x_lens)), 1, device)
                t_total[name] = min(t_total[name], t)
    rows = [
        (name, t_search[name], t_total[name], sum(len(h.tokens) for h in hyps[name]) / float(enc_lens.sum()))
        for name in methods
    ]

    audio = float(seconds.sum())
    print(
        f"device {device}, threads {torch.get_num_threads()}, {args.num_utts} utterances, {audio:.1f} s of audio, "
        f"{args.layers}-layer conformer (d_model 512), random weights"
    )
    print(f"encoder only: {1000 * t_enc:.1f} ms (RTF {t_enc / audio:.4f})\n")
    print("| method | search ms | encoder + search ms | ratio to encoder | labels per frame |")
    print("|---|---|---|---|---|")
    for name, t_search, t_total, emitted in rows:
        print(f"| {name} | {1000 * t_search:.1f} | {1000 * t_total:.1f} | {t_total / t_enc:.3f} | {emitted:.2f} |")


if __name__ == "__main__":
    main()
