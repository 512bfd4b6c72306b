#!/usr/bin/env python3
"""Speed of scripts/make_demo_corpus.py against an older version of it, on the same small corpus.

    .venv/bin/python bench/bench_demo_corpus.py [--base 56abf94] [--rounds 3] [--jobs 2] \
        [--train-minutes 3 --eval-minutes 0.5]

Runs the script of commit --base (git show) and the working tree's alternately, --rounds times each, every run in a
fresh folder (no synthesis cache), and prints the wall time of each run, the median of each, their ratio (base /
new: > 1 means faster now) and whether both wrote the same corpus (the int16 samples of every FLAC file and every
transcript). Alternating spreads the noise of a shared machine over both.

Measured (issue #20), CPU "AMD EPYC" (lscpu model name; 2 cores, AVX512 with BF16), shared with other jobs (load
8-11 on the 2 cores during the run), base 56abf94 against this version:

    .venv/bin/python bench/bench_demo_corpus.py --rounds 3 --train-minutes 8 --eval-minutes 0.5
    round 0 base 82.8 s, new 61.9 s; round 1 new 55.7 s, base 104.0 s; round 2 base 100.4 s, new 65.9 s
    median base (56abf94) 100.4 s, new 61.9 s: ratio 1.62x; same corpus: True (7dda967c739c8187)

On a 3-minute train set the fixed costs weigh more: 1.36x (before the workers warmed up during the text
preparation). Where the time goes (the script logs it per voice): piper's joe costs ~0.3 s of CPU per second of
audio on one thread, the flite voices 0.013 (kal16) to 0.07 s (slt, awb, rms); so joe, a fifth of the audio, is
about 60% of the work, and onnxruntime's default of all cores per process made the two processes fight over the
cores. FLAC writing (~7 ms per utterance), resampling (~3 ms) and the noise floor (~1 ms) are negligible.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make_demo_corpus.py"


def corpus_digest(out: Path) -> str:
    """sha1 over every FLAC's int16 samples and every transcript / SPEAKERS.TXT of OUT/LibriSpeech."""
    root = out / "LibriSpeech"
    h = hashlib.sha1()
    for p in sorted(root.rglob("*")):
        if p.suffix == ".flac":
            audio, _ = sf.read(str(p), dtype="int16")
            h.update(f"{p.relative_to(root)}|{hashlib.sha1(audio.tobytes()).hexdigest()}\n".encode())
        elif p.name.endswith(".trans.txt") or p.name == "SPEAKERS.TXT":
            h.update(f"{p.relative_to(root)}|{hashlib.sha1(p.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()[:16]


def run_once(script: Path, out: Path, args: list[str]) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT), ASR_PROGRESS="off")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(script), "--out", str(out), *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", default="56abf94", help="git commit of the version to compare against")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--train-minutes", type=float, default=3.0)
    ap.add_argument("--eval-minutes", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    corpus_args = ["--seed", str(args.seed), "--train-minutes", str(args.train_minutes), "--eval-minutes",
                   str(args.eval_minutes), "--jobs", str(args.jobs)]
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "make_demo_corpus_base.py"
        old.write_bytes(subprocess.run(["git", "-C", str(ROOT), "show", f"{args.base}:scripts/make_demo_corpus.py"],
                                       check=True, capture_output=True).stdout)
        times: dict[str, list[float]] = {"base": [], "new": []}
        digests: dict[str, set[str]] = {"base": set(), "new": set()}
        for r in range(args.rounds):
            for name, script in (("base", old), ("new", SCRIPT)) if r % 2 == 0 else (("new", SCRIPT), ("base", old)):
                out = Path(tmp) / f"{name}{r}"
                seconds = run_once(script, out, corpus_args)
                times[name].append(seconds)
                digests[name].add(corpus_digest(out))
                print(f"round {r} {name:4}: {seconds:6.1f} s", flush=True)
                subprocess.run(["rm", "-rf", str(out)], check=True)
    base, new = statistics.median(times["base"]), statistics.median(times["new"])
    same = len(digests["base"] | digests["new"]) == 1
    print(f"cpu: {cpu_model()}, {len(os.sched_getaffinity(0))} cores; args: {' '.join(corpus_args)}")
    print(f"median base ({args.base}) {base:.1f} s, new {new:.1f} s: ratio {base / new:.2f}x; "
          f"same corpus: {same} ({', '.join(sorted(digests['base'] | digests['new']))})")
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
