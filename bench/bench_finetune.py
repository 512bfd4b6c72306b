#!/usr/bin/env python3
"""Fine-tuning the demo model on a voice it has not heard (issue #23): WER on that voice before, after N minutes of
fine-tuning (conf/experiment/demo_finetune.yaml), and from scratch (experiment=demo) with the same batches.

    .venv/bin/python bench/bench_finetune.py --work-dir /work/ft [--voice joe] [--base-minutes 8] [--ft-minutes 4] \
        [--synth-dir recipes/librispeech/download/demo/.synth] [--methods greedy]

Stages, each skipped when its output is there (so a rerun picks up where one stopped), all in --work-dir:
  1. scripts/make_demo_corpus.py --hold-out-voice VOICE: the default demo corpus with VOICE's utterances moved to
     adapt-VOICE (its train-clean-100 share) and test-VOICE (its dev-clean and test-clean shares). With --synth-dir
     pointing at the cache of an existing default demo corpus nothing is synthesised (seconds).
  2. prepare.sh stages 1, 2 and 4 (manifests, fbank without speed perturbation, BPE 64) on the 4-voice subsets, as
     run.sh's demo; then the manifests (in data/manifests_heldout, so that the BPE and train-all-shuf never see them)
     and the fbank of adapt-VOICE and test-VOICE.
  3. base: train.py experiment=demo trainer.max_minutes=--base-minutes (the demo's 20 shortened) on the 4 voices.
  4. fine-tune: train.py experiment=demo_finetune trainer.init_from=exp/base trainer.max_minutes=--ft-minutes on
     adapt-VOICE.
  5. scratch: train.py experiment=demo on adapt-VOICE with trainer.max_steps = the fine-tune's batch count (the
     same training, whatever the load of the machine did to the wall clock), trainer.max_minutes 2x as a bound.
Every model is decoded (decode.py, --methods) on test-VOICE and on test-clean (the 4 voices it was trained on:
what fine-tuning forgets); one table, with the batches and minutes of each row, is printed at the end.
Runs under `nice -n 10` (the machine is shared): minutes are a wall-clock budget under contention, batches say
how much training each row really got. Measured figures: recipes/librispeech/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "librispeech"
VOCAB = 64  # run.sh's demo BPE size (the demo experiment's model.vocab_size)


def run(cmd: list[str], cwd: Path, log: Path) -> None:
    """`cmd` under nice -n 10 in `cwd`, its output appended to `log`; exits with the command's tail on failure."""
    print(f"$ {' '.join(cmd)}", flush=True)
    t = time.time()
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n")
        f.flush()
        rc = subprocess.run(["nice", "-n", "10", *cmd], cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-30:])
        sys.exit(f"bench_finetune: {cmd[0:3]} failed (exit {rc}); last lines of {log}:\n{tail}")
    print(f"  ({time.time() - t:.0f} s)", flush=True)


def prepare(args: argparse.Namespace, py: str, log: Path) -> None:
    corpus = args.work_dir / "download" / "demo_heldout"
    cmd = [py, str(ROOT / "scripts" / "make_demo_corpus.py"), "--out", str(corpus), "--hold-out-voice", args.voice]
    if args.synth_dir:
        cmd += ["--synth-dir", str(args.synth_dir)]
    run(cmd, args.work_dir, log)
    run(["bash", str(RECIPE / "prepare.sh"), "--dl-dir", str(corpus), "--vocab-size", str(VOCAB),
         "--perturb-speed", "false", "--stage", "1", "--stop-stage", "4"], args.work_dir, log)
    held = [f"adapt-{args.voice}", f"test-{args.voice}"]
    if not all((args.work_dir / "data" / "fbank" / f"librispeech_cuts_{s}.jsonl.gz").is_file() for s in held):
        run([py, "-m", "asr.data.prepare", "--corpus", str(corpus / "LibriSpeech"), "--out", "data/manifests_heldout",
             "--subsets", *held], args.work_dir, log)
        code = ("import sys; from pathlib import Path; from asr.data.features import compute_subset\n"
                "for s in sys.argv[1:]: compute_subset(Path('data/manifests_heldout'), Path('data/fbank'), s, 2, 80,"
                " perturb_speed=False)")  # not the CLI: it would make train-all-shuf of these subsets
        run([py, "-c", code, *held], args.work_dir, log)


def train(py: str, work: Path, log: Path, exp: str, overrides: list[str]) -> dict:
    """train.py into `exp` (skipped when it holds run_info.json); returns its run_info (batches, minutes)."""
    info = work / exp / "run_info.json"
    if not info.is_file():
        run([py, str(RECIPE / "train.py"), f"trainer.exp_dir={exp}", *overrides], work, log)
        run([py, "-m", "asr.run_info", "--exp-dir", exp, "--write"], work, log)
    return json.loads(info.read_text())


def decode(py: str, work: Path, log: Path, exp: str, sets: list[str], method: str) -> dict[str, float]:
    """WER (%) of `exp`'s newest epoch on each test set with `method` (decode.py's wer-summary files)."""
    out = {s: work / exp / method / f"wer-summary-{s}-{method}.txt" for s in sets}
    if not all(p.is_file() for p in out.values()):
        run([py, str(RECIPE / "decode.py"), f"exp_dir={exp}", f"decode={method}", f"test_sets=[{','.join(sets)}]"],
            work, log)
    return {s: float(p.read_text().splitlines()[1].split("\t")[1]) for s, p in out.items()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work-dir", type=Path, required=True, help="data/, exp/, download/ and bench.log go here")
    ap.add_argument("--voice", default="joe", help="the voice left out of the base model's training")
    ap.add_argument("--base-minutes", type=float, default=8.0, help="the base model's budget (the demo's is 20)")
    ap.add_argument("--ft-minutes", type=float, default=4.0, help="N: the fine-tuning budget")
    ap.add_argument("--synth-dir", type=Path, default=None,
                    help="synthesis cache of an existing demo corpus (e.g. recipes/librispeech/download/demo/.synth)")
    ap.add_argument("--methods", nargs="+", default=["greedy"], help="decode.py searches")
    args = ap.parse_args(argv)
    args.work_dir = args.work_dir.resolve()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    py, log, work = sys.executable, args.work_dir / "bench.log", args.work_dir
    print(f"log: {log}", flush=True)
    prepare(args, py, log)

    adapt = f"data.train_cuts=librispeech_cuts_adapt-{args.voice}.jsonl.gz"
    rows = {"base (4 voices)": train(py, work, log, "exp/base",
                                     ["experiment=demo", f"trainer.max_minutes={args.base_minutes:g}"])}
    rows[f"base + fine-tune on {args.voice}"] = train(
        py, work, log, "exp/finetune",
        ["experiment=demo_finetune", "trainer.init_from=exp/base", f"trainer.max_minutes={args.ft_minutes:g}", adapt])
    steps = rows[f"base + fine-tune on {args.voice}"]["batches"]
    rows[f"scratch on {args.voice}"] = train(
        py, work, log, "exp/scratch",
        ["experiment=demo", f"trainer.max_steps={steps}", f"trainer.max_minutes={2 * args.ft_minutes:g}", adapt])
    exps = dict(zip(rows, ["exp/base", "exp/finetune", "exp/scratch"]))
    sets = [f"test-{args.voice}", "test-clean"]

    lines = [f"{'model':<28} {'batches':>8} {'minutes':>8} " + " ".join(
        f"{s + ' ' + m:>28}" for m in args.methods for s in sets)]
    for name, info in rows.items():
        wers = {m: decode(py, work, log, exps[name], sets, m) for m in args.methods}
        lines.append(f"{name:<28} {info['batches']:>8} {info['train_minutes']:>8g} " + " ".join(
            f"{wers[m][s]:>28.2f}" for m in args.methods for s in sets))
    cpu = rows["base (4 voices)"].get("cpu_model", "?")
    print("\n".join(["", f"WER % (cpu: {cpu}; fine-tune and scratch batches on adapt-{args.voice} only)", *lines]))


if __name__ == "__main__":
    main()
