"""Decoding time of greedy and modified beam search relative to the encoder-only forward on the same utterances.

    nice .venv/bin/python bench/bench_decode.py                      # conformer_l12, random weights, CPU
    .venv/bin/python bench/bench_decode.py --device cuda --num-utts 32
    nice .venv/bin/python bench/bench_decode.py --attention        # encoder: fused attention vs the explicit path

Decoding = encoder forward + search, from fbank features to token ids; the ratio is that time divided by the
encoder-only time (targets: <= 1.15 for greedy, <= 1.6 for modified beam search with beam 4). Random weights make
the search emit far more often than a trained model (a trained one emits on roughly one frame in ten), so the search
share measured here is an upper bound. Each timing is the minimum over --repeats runs.

`--attention`: the encoder-only forward with the self-attention through torch's fused scaled_dot_product_attention
(the position term as its mask: what decoding runs) against the explicit matmul / softmax / matmul (what training
runs), alternated, with the largest difference of their outputs.
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
    parser.add_argument("--attention", action="store_true", help="fused vs explicit attention, encoder only")
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

    if args.attention:
        compare_attention(model, x, x_lens, args, float(seconds.sum()), device)
        return
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


def compare_attention(model, x, x_lens, args, audio: float, device: torch.device) -> None:
    """Encoder-only forward, fused attention against the explicit path, alternated; minimum of --repeats each."""
    from asr.models.conformer import RelPositionMultiheadAttention

    fused_rule = RelPositionMultiheadAttention._fused_attention_applies
    times = {"explicit": float("inf"), "fused": float("inf")}
    outs = {}
    try:
        with torch.inference_mode():
            for i in range(args.repeats + 1):
                for name in ("explicit", "fused") if i % 2 else ("fused", "explicit"):
                    RelPositionMultiheadAttention._fused_attention_applies = (
                        fused_rule if name == "fused" else (lambda self: False))
                    t, outs[name] = _timed(lambda: model.encode(x, x_lens), 1, device)
                    if i > 0:  # the first round warms up both
                        times[name] = min(times[name], t)
    finally:
        RelPositionMultiheadAttention._fused_attention_applies = fused_rule
    diff = float((outs["fused"][0] - outs["explicit"][0]).abs().max())
    print(f"device {device}, threads {torch.get_num_threads()}, {args.num_utts} utterances, {audio:.1f} s of audio, "
          f"{args.layers}-layer conformer (d_model 512), random weights, minimum of {args.repeats} alternated runs")
    print(f"encoder, explicit attention: {1000 * times['explicit']:.1f} ms; fused: {1000 * times['fused']:.1f} ms; "
          f"fused / explicit {times['fused'] / times['explicit']:.3f}; largest output difference {diff:.2e}")


if __name__ == "__main__":
    main()
