"""What word timestamps cost, and how far greedy's emission frames are from the forced alignment's.

    nice .venv/bin/python bench/bench_timestamps.py --tone                     # the tests' tone-language model
    nice -n 10 .venv/bin/python bench/bench_timestamps.py --exp-dir exp/demo \\
        --wavs download/demo/LibriSpeech/test-clean/*/*/*.flac

Cost: every search now returns asr.decode.Hypothesis (frames and log-probs kept beside the tokens), so there is no
token-only path left to switch off; the baselines are the token-only greedy and modified beam searches of git
revision --baseline-rev (loaded from `git show`), timed against today's searches and against today's greedy search
+ words_of (the words, times and confidences). Target: <= 1.05x. Search time only (the encoder, the same in both,
is excluded and reported beside: the ratio with it is nearer 1). Each timing is the minimum over --repeats
interleaved runs, in CPU time of this process (time.process_time, one torch thread), which the other jobs of a
shared machine disturb less than wall-clock time.

Error: per token, |greedy frame - forced-alignment frame| (asr.decode.align on greedy's own tokens) x frame shift,
in ms (mean and 90th percentile), and the share of tokens within 2 frames; with --tone also each word's start minus
its tone's onset on the correctly recognised utterances.
"""

from __future__ import annotations

import argparse
import platform
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch

from asr.data.audio import fbank, read_audio
from asr.decode.align import align_encoded
from asr.decode.greedy import greedy_search_batch
from asr.decode.modified_beam_search import modified_beam_search
from asr.decode.words import frame_shift_s, pieces_of, words_of


def cpu_model() -> str:
    """lscpu's model name (platform.processor() elsewhere)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


def baseline(rev: str, module: str, name: str):
    """Function `name` of asr/decode/<module>.py as revision `rev` wrote it (token ids only), or None where git
    cannot show it."""
    root = Path(__file__).resolve().parents[1]
    path = f"asr/decode/{module}.py"
    try:
        src = subprocess.run(["git", "-C", str(root), "show", f"{rev}:{path}"],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    namespace = types.ModuleType(f"baseline_{module}")
    exec(compile(src, f"{rev}:{path}", "exec"), namespace.__dict__)
    return getattr(namespace, name)


def load(args) -> tuple[torch.nn.Module, list[str], list[tuple[np.ndarray, list[str] | None, list | None]]]:
    """The model, its pieces and the utterances: (samples, words or None, tone spans or None)."""
    if args.tone:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from asr.data.tokenizer import Tokenizer
        from tests.tone_asr import corpus_timed, train_tiny

        work = Path(args.work or tempfile.mkdtemp(prefix="bench_timestamps_"))
        if (work / "exp" / "epoch-1.pt").is_file():  # a model this script trained and kept (--work)
            from asr.decode.inference import InferenceConfig, load_inference

            model = load_inference(InferenceConfig(exp_dir=str(work / "exp"), device="cpu")).model
            bpe = work / "lang" / "bpe.model"
        else:
            trained = train_tiny(work)  # also writes work/exp/epoch-1.pt, reused by the next run with --work
            model, bpe = trained.model, trained.bpe_model
        utts = [(a, w, s) for w, a, s in corpus_timed(args.num_utts, 1)]
        return model, pieces_of(Tokenizer(bpe)), utts
    from asr.decode.inference import InferenceConfig, load_inference

    inf = load_inference(InferenceConfig(exp_dir=args.exp_dir, epoch=args.epoch, avg=args.avg, device="cpu"))
    wavs = sorted(args.wavs)[: args.num_utts]
    return inf.model, pieces_of(inf.tokenizer), [(read_audio(Path(p)), None, None) for p in wavs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tone", action="store_true", help="train and use the tests' tone-language model")
    parser.add_argument("--work", default="", help="--tone: keep (and reuse) the trained model here")
    parser.add_argument("--exp-dir", default="", help="an experiment directory (asr.decode.inference)")
    parser.add_argument("--epoch", type=int, default=0)
    parser.add_argument("--avg", type=int, default=1)
    parser.add_argument("--wavs", nargs="*", default=[], help="audio files (with --exp-dir)")
    parser.add_argument("--num-utts", type=int, default=40, help="utterances (the first of --wavs, sorted)")
    parser.add_argument("--batch", type=int, default=8, help="utterances per search call")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--baseline-rev", default="256465a", help="git revision of the token-only greedy search")
    args = parser.parse_args()
    if args.tone == bool(args.exp_dir):
        parser.error("give --tone or --exp-dir (with --wavs)")
    torch.set_num_threads(args.threads)

    model, pieces, utts = load(args)
    shift = frame_shift_s(model)
    old_greedy = baseline(args.baseline_rev, "greedy", "greedy_search_batch")
    old_modified = baseline(args.baseline_rev, "modified_beam_search", "modified_beam_search")
    num_features = getattr(model.encoder, "num_features", 80)
    feats = [fbank(a, num_features) for a, _, _ in utts]  # (T, F) each
    inputs = []
    for i in range(0, len(feats), args.batch):
        chunk = feats[i : i + args.batch]
        inputs.append((torch.nn.utils.rnn.pad_sequence(chunk, batch_first=True), torch.tensor([f.size(0) for f in chunk])))
    with torch.inference_mode():
        batches = [model.encode(x, x_lens) for x, x_lens in inputs]  # (B, T, D), (B,) each

        def run_old():
            return [old_greedy(model, e, n) for e, n in batches]

        def run_new():
            return [greedy_search_batch(model, e, n) for e, n in batches]

        def run_words():
            return [[words_of(h, pieces, shift) for h in greedy_search_batch(model, e, n)] for e, n in batches]

        def run_old_modified():
            return [old_modified(model, e, n, beam=4) for e, n in batches]

        def run_modified():
            return [modified_beam_search(model, e, n, beam=4) for e, n in batches]

        runs = {"token-only (baseline)": run_old, "Hypothesis": run_new, "Hypothesis + words_of": run_words,
                "modified beam 4, token-only (baseline)": run_old_modified, "modified beam 4, Hypothesis": run_modified}
        if old_greedy is None or old_modified is None:
            runs = {k: v for k, v in runs.items() if "baseline" not in k}
        best = dict.fromkeys(runs, float("inf"))
        t_enc = float("inf")
        for _ in range(args.repeats):
            start = time.process_time()
            for x, x_lens in inputs:
                model.encode(x, x_lens)
            t_enc = min(t_enc, time.process_time() - start)
            for name, fn in runs.items():
                start = time.process_time()
                fn()
                best[name] = min(best[name], time.process_time() - start)

        hyps = [h for e, n in batches for h in greedy_search_batch(model, e, n)]
        if old_greedy is not None:
            old = [t for e, n in batches for t in old_greedy(model, e, n)]
            assert old == [h.tokens for h in hyps], "today's greedy search finds other tokens than the baseline"
        aligned = []
        for (e, n), i in zip(batches, range(0, len(hyps), args.batch)):
            aligned += align_encoded(model, e, n, [h.tokens for h in hyps[i : i + args.batch]])

    err = np.array([abs(g - a) for h, al in zip(hyps, aligned) for g, a in zip(h.frames, al.frames)], dtype=float)
    audio = sum(a.size for a, _, _ in utts) / 16000
    print(f"CPU: {cpu_model()}, torch threads {torch.get_num_threads()}; {len(utts)} utterances, {audio:.1f} s of "
          f"audio, {len(err)} tokens; frame shift {shift * 1000:.0f} ms")
    print(f"encoder (the same batches of {args.batch}): {t_enc * 1000:.1f} ms\n")
    print("| search | ms | ratio to token-only | ratio with the encoder |\n|---|---|---|---|")
    for name, t in best.items():
        base = best.get("modified beam 4, token-only (baseline)" if "modified" in name else "token-only (baseline)")
        name = name if "modified" in name else f"greedy, {name}"
        ratio = f"{t / base:.3f}" if base else "-"
        with_enc = f"{(t + t_enc) / (base + t_enc):.3f}" if base else "-"
        print(f"| {name} | {t * 1000:.1f} | {ratio} | {with_enc} |")
    if len(err):
        print(f"\ngreedy vs forced alignment, per token: mean {err.mean() * shift * 1000:.1f} ms, 90th percentile "
              f"{np.percentile(err, 90) * shift * 1000:.1f} ms, within 2 frames {(err <= 2).mean():.1%}")
    if args.tone:
        d, ok = [], 0
        for h, (_, ref, spans) in zip(hyps, utts):
            words = words_of(h, pieces, shift)
            if [w.word for w in words] == ref:
                ok += 1
                d += [w.start - onset for w, (onset, _) in zip(words, spans)]
        if d:
            d = np.array(d)
            print(f"word start - tone onset ({ok} of {len(utts)} utterances recognised exactly, {len(d)} words): mean "
                  f"{d.mean() * 1000:.0f} ms, |.| 90th percentile {np.percentile(abs(d), 90) * 1000:.0f} ms, "
                  f"range [{d.min() * 1000:.0f}, {d.max() * 1000:.0f}] ms")


if __name__ == "__main__":
    main()
