"""The GPU check: the steps of issue 25, each in its own process under a time limit, into one JSON and one
Markdown table. Run it through bench/gpu/run.sh (which installs the carried wheels first).

    python -m bench.gpu.check --out DIR [--profile auto|full|quick|cpu] [--steps a,b] [--limit STEP=S] [--demo-exp DIR]

Steps (one function each, `step_<name>`):
  pytest_cuda   pytest -m cuda on tests/**/test_*_cuda.py (the CUDA branches: losses, AMP, searches, models)
  losses        asr.loss's pruned step and the full-lattice losses at k2's benchmark shape (step_losses.py)
  train_step    conformer_l12 step in bf16 and fp16 at max duration 300 s; FLOP/s against a matmul peak
  distributed   torchrun: 1 process NCCL and 2 processes gloo on CUDA tensors, same losses (step_distributed.py)
  decode        greedy and modified beam search throughput (step_decode.py)
Profiles: `full` (about 8 minutes on an H200), `quick` (about 2), `cpu` (the same steps at a tiny size, for CI and
for machines without CUDA; `auto` picks `full` with CUDA and `cpu` without).
A step that fails, times out or crashes is recorded as such; the others still run. Results are rewritten after
every step, so a run stopped from outside keeps what it had.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.gpu import report

REPO = Path(__file__).resolve().parents[2]
STEPS = ("pytest_cuda", "losses", "train_step", "distributed", "decode")

_COMMON_FULL = dict(pool=600, scale=1.0, loss_vocab=500, loss_dim=512, loss_batch=30, loss_max_frames=10000,
                    train_model="conformer_l12", train_max_seconds=300.0, matmul_n=8192, dist_model="conformer_l12",
                    dist_overrides={"num_layers": 2}, dist_utts=8, dist_rtol=1e-4,
                    decode_model="conformer_l12")  # fmt: skip
PROFILES = {
    "full": dict(_COMMON_FULL, budget_s=450, limits=dict(pytest_cuda=90, losses=110, train_step=100, distributed=90,
                 decode=60), loss_warmup=3, loss_batches=10, train_warmup=2, train_steps=5, dist_steps=3,
                 dist_timeout=40, decode_utts=32, decode_repeats=3),  # fmt: skip
    "quick": dict(_COMMON_FULL, budget_s=110, limits=dict(pytest_cuda=35, losses=20, train_step=20, distributed=25,
                  decode=10), loss_warmup=1, loss_batches=3, train_warmup=1, train_steps=2, dist_steps=2,
                  dist_timeout=14, decode_utts=16, decode_repeats=1),  # fmt: skip
    # tiny: 1/10 of the durations (T about 30, U about 5), a 2-layer 64-dim Conformer; V and the loss dim as k2's
    "cpu": dict(pool=64, scale=0.1, loss_vocab=500, loss_dim=512, loss_batch=4, loss_max_frames=150, loss_warmup=1,
                loss_batches=2, train_model="conformer_small", train_overrides={"num_layers": 1, "d_model": 32,
                "num_heads": 2, "ff_dim": 64, "subsampling_channels": 8}, train_max_seconds=4.0, train_warmup=1,
                train_steps=1, matmul_n=128, dist_model="conformer_small", dist_overrides={"num_layers": 1,
                "d_model": 32, "num_heads": 2, "ff_dim": 64, "subsampling_channels": 8}, dist_utts=3, dist_steps=2,
                dist_rtol=1e-4, dist_timeout=60, decode_model="conformer_small", decode_overrides={"num_layers": 1,
                "d_model": 32, "num_heads": 2, "ff_dim": 64, "subsampling_channels": 8}, decode_utts=2,
                decode_repeats=1, budget_s=240, limits=dict(pytest_cuda=60, losses=40, train_step=40,
                distributed=90, decode=40)),  # fmt: skip
}


# ------------------------------------------------------------------------------------------------- the steps
def pytest_outcomes(text: str) -> dict[str, dict]:
    """Per-file counts from pytest -v lines ('tests/x.py::test_y[...] PASSED'), complete or cut short."""
    per_file: dict[str, dict] = {}
    for m in re.finditer(r"^(\S+?\.py)::(\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)", text, re.M):
        path, test, outcome = m.groups()
        row = per_file.setdefault(path, {"file": path, "passed": 0, "failed": 0, "skipped": 0, "failures": []})
        if outcome in ("FAILED", "ERROR"):
            row["failed"] += 1
            row["failures"].append(test)
        elif outcome in ("SKIPPED", "XFAIL"):
            row["skipped"] += 1
        else:
            row["passed"] += 1
    return per_file


def step_pytest_cuda(device, profile: dict, emit, workdir: Path, limit: float, **_) -> None:
    """pytest -m cuda on the CUDA test files; one row per file with its counts (all skip without CUDA). Cut short
    at the step's limit, it still reports the tests that finished."""
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("test_*_cuda.py"))
    if not files:
        emit({"file": "(none)", "status": "failed", "error": "no tests/**/test_*_cuda.py found"})
        return
    cmd = [sys.executable, "-m", "pytest", "-m", "cuda", "-v", "-p", "no:cacheprovider", "-o", "addopts=",
           "--junitxml", str(workdir / "pytest_cuda.xml"), *files]  # fmt: skip
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=max(limit - 8, 5))
        text, returncode = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"") + (e.stderr or b"")
        text, returncode = out.decode(errors="replace") if isinstance(out, bytes) else out, None
    (workdir / "pytest_cuda.log").write_text(text)
    per_file = pytest_outcomes(text)
    for row in per_file.values():
        row["status"] = "failed" if row["failed"] else ("skipped" if not row["passed"] else "ok")
        row["failures"] = ", ".join(row["failures"][:8]) or None
        emit(row)
    if returncode is None:
        emit({"file": "(pytest)", "status": "timeout", "error": f"pytest cut short at {max(limit - 8, 5):.0f} s"})
    elif returncode not in (0, 5) and not any(r["failed"] for r in per_file.values()):
        emit({"file": "(pytest)", "status": "failed", "error": f"exit {returncode}: {text[-400:]}"})


def step_losses(device, profile: dict, emit, **_) -> None:
    from bench.gpu import step_losses

    step_losses.run(device, profile, emit)


def step_train_step(device, profile: dict, emit, **_) -> None:
    from bench.gpu import step_train

    step_train.run(device, profile, emit)


def step_distributed(device, profile: dict, emit, workdir: Path, **_) -> None:
    from bench.gpu import step_distributed

    step_distributed.run(device, profile, emit, workdir)


def step_decode(device, profile: dict, emit, demo_exp: str = "", **_) -> None:
    from bench.gpu import step_decode

    step_decode.run(device, profile, emit, demo_exp)


DESCRIPTIONS = {
    "pytest_cuda": "pytest -m cuda on tests/**/test_*_cuda.py: counts per file.",
    "losses": "Forward + backward at k2's benchmark shape (V 500, dims 512; unsorted: 30 utterances, sorted: at most "
              "10k encoder frames), synthetic train-clean-100-like lengths (mean 12.7 s, 4 BPE tokens/s). Times are "
              "medians in ms, memory is the peak allocated by tensors in GB; k2's published figures (their GPU, 2022) "
              "beside.",
    "train_step": "Forward + backward + Adam step of the transducer on one batch of similar-length utterances "
                  "filling the max duration; FLOPs counted by torch's FlopCounterMode (forward + backward).",
    "distributed": "The same SGD steps under torchrun; losses summed over ranks, compared with 1 process.",
    "decode": "Encoder + search on one batch; utterances per second and real-time factor (compute s / audio s).",
}


# ------------------------------------------------------------------------------------------------ one step
def run_step(args: argparse.Namespace) -> None:
    """Child process: runs one step, rewriting args.partial after every row."""
    import torch

    device = torch.device(args.device)
    rows: list[dict] = []
    partial = Path(args.partial)

    def emit(row: dict) -> None:
        rows.append(row)
        partial.write_text(json.dumps({"rows": rows}, default=str))

    partial.write_text(json.dumps({"rows": rows}))
    if os.environ.get("ASR_GPU_CHECK_STALL") == args.run_step:  # tests: a step that hangs, to be killed at its limit
        emit({"status": "ok", "note": "stalling"})
        time.sleep(3600)
    fn = globals()[f"step_{args.run_step}"]
    fn(device, PROFILES[args.profile], emit, workdir=partial.parent, limit=args.step_limit, demo_exp=args.demo_exp)


def step_status(rows: list[dict], returncode: int | None, timed_out: bool) -> str:
    if timed_out:
        return "timeout"
    states = [r.get("status", "ok") for r in rows]
    if returncode != 0 or "failed" in states or "timeout" in states or not rows:
        return "failed"
    return "skipped" if all(s == "skipped" for s in states) else "ok"


def launch(name: str, args: argparse.Namespace, limit: float, workdir: Path) -> dict:
    """Runs one step in its own process group, killed at `limit` seconds; its record for the results."""
    partial = workdir / f"{name}.partial.json"
    cmd = [sys.executable, "-m", "bench.gpu.check", "--run-step", name, "--profile", args.profile, "--device",
           args.device, "--partial", str(partial), "--step-limit", str(limit), "--demo-exp", args.demo_exp, "--out",
           str(args.out)]  # fmt: skip
    start = time.perf_counter()
    timed_out, returncode = False, None
    log = open(workdir / f"{name}.log", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        returncode = proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(proc.pid, signal.SIGKILL)  # the step's own process group: its torchrun / pytest children too
        proc.wait()
    log.close()
    rows = json.loads(partial.read_text())["rows"] if partial.is_file() else []
    record = {"name": name, "status": step_status(rows, returncode, timed_out), "seconds": time.perf_counter() - start,
              "limit_s": limit, "returncode": returncode, "description": DESCRIPTIONS[name], "rows": rows}
    if record["status"] in ("failed", "timeout"):
        tail = (workdir / f"{name}.log").read_text()[-800:]
        errors = [r.get("error") for r in rows if r.get("error") and r.get("status") in ("failed", "timeout")]
        record["error"] = (f"killed at the step's limit of {limit:.0f} s; " if timed_out else "") + (
            errors[0] if errors else tail.strip().splitlines()[-1] if tail.strip() else f"exit {returncode}")
    if name == "pytest_cuda":
        counts = {k: sum(r.get(k, 0) for r in rows) for k in ("passed", "failed", "skipped")}
        record["note"] = f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped"
    return record


def meta(args: argparse.Namespace, started: float) -> dict:
    import torch

    cuda = args.device == "cuda"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                                timeout=10).stdout.strip() or "unknown"  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = "unknown"
    setup_file = Path(args.out) / "setup.json"
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "profile": args.profile,
        "device": args.device,
        "device_name": torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()}, "
                                                                  f"{os.cpu_count()} cores)",
        "gpu_memory_gb": torch.cuda.get_device_properties(0).total_memory / 1e9 if cuda else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "commit": commit,
        "total_seconds": time.perf_counter() - started,
        "setup": json.loads(setup_file.read_text()) if setup_file.is_file() else None,
    }


def write(out: Path, result: dict) -> None:
    (out / "results.json").write_text(json.dumps(result, indent=1, default=str))
    (out / "results.md").write_text(report.markdown(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder for results.json, results.md and the steps' logs")
    parser.add_argument("--profile", default="auto", choices=["auto", *PROFILES])
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated subset of " + ",".join(STEPS))
    parser.add_argument("--demo-exp", default="", help="experiment directory of the demo model, decoded if given")
    parser.add_argument("--device", default="", help=argparse.SUPPRESS)
    parser.add_argument("--run-step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--partial", help=argparse.SUPPRESS)
    parser.add_argument("--limit", action="append", default=[], metavar="STEP=SECONDS",
                        help="override a step's time limit (repeatable)")
    parser.add_argument("--step-limit", type=float, default=60.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run_step:
        run_step(args)
        return

    started = time.perf_counter()
    import torch

    has_cuda = torch.cuda.is_available()
    if args.profile == "auto":
        args.profile = "full" if has_cuda else "cpu"
    if args.profile != "cpu" and not has_cuda:
        raise SystemExit(f"profile {args.profile!r} needs CUDA, which this machine lacks; use --cpu")
    args.device = "cuda" if args.profile != "cpu" else "cpu"
    steps = args.steps.split(",")
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        raise SystemExit(f"--steps: unknown step(s) {unknown}; known: {', '.join(STEPS)}")
    profile = PROFILES[args.profile]
    limits = dict(profile["limits"])
    for item in args.limit:
        name, _, seconds = item.partition("=")
        if name not in STEPS or not seconds.replace(".", "", 1).isdigit():
            raise SystemExit(f"--limit: expected STEP=SECONDS with STEP one of {', '.join(STEPS)}, got {item!r}")
        limits[name] = float(seconds)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"meta": meta(args, started), "steps": []}
    write(out, result)
    for name in steps:
        left = profile["budget_s"] - (time.perf_counter() - started)
        limit = min(limits[name], left)
        if limit < 5:
            record = {"name": name, "status": "skipped", "seconds": 0.0, "limit_s": 0.0, "rows": [],
                      "description": DESCRIPTIONS[name], "error": "no time left in the run's budget"}  # fmt: skip
        else:
            record = launch(name, args, limit, out)
        result["steps"].append(record)
        result["meta"]["total_seconds"] = time.perf_counter() - started
        write(out, result)
        error = f": {record['error']}" if record.get("error") else ""
        print(f"{name}: {record['status']} ({record['seconds']:.1f} s){error}", flush=True)
    print(f"results: {out / 'results.md'} and {out / 'results.json'}")


if __name__ == "__main__":
    main()
