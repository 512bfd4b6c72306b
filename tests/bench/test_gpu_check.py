"""The GPU check's CPU fallback (bench/gpu/run.sh --cpu) runs every step and writes a well-formed table; a step
killed at its time limit is recorded as such and the next step still runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))  # bench.gpu, as run.sh puts the source tree on the path

from bench.gpu import check, report  # noqa: E402

STEP_KEYS = {"name", "status", "seconds", "limit_s", "rows", "description"}
META_KEYS = {"date", "profile", "device", "device_name", "python", "torch", "cuda", "commit", "total_seconds", "setup"}


def run_check(out: Path, *args: str, timeout: float = 900, **env_extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "ASR_GPU_SITE": str(out / "site"), **env_extra}
    return subprocess.run(["bash", str(REPO / "bench" / "gpu" / "run.sh"), "--cpu", "--out", str(out), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)  # fmt: skip


def markdown_sections(text: str) -> dict[str, list[str]]:
    """'## name' -> the table lines under it."""
    sections, current = {}, None
    for line in text.splitlines():
        if line.startswith("## "):
            current = sections.setdefault(line[3:].strip(), [])
        elif current is not None and line.startswith("|"):
            current.append(line)
    return sections


@pytest.mark.slow
def test_cpu_fallback_runs_every_step(tmp_path):
    proc = run_check(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((tmp_path / "results.json").read_text())
    assert set(result) == {"meta", "steps"}
    assert META_KEYS <= set(result["meta"])
    assert result["meta"]["profile"] == "cpu" and result["meta"]["device"] == "cpu"
    assert result["meta"]["setup"]["runtime_dependencies"], "the set-up report lists our dependencies"
    steps = {s["name"]: s for s in result["steps"]}
    assert list(steps) == list(check.STEPS)
    for step in steps.values():
        assert STEP_KEYS <= set(step), step["name"]
        assert step["status"] in report.STATUSES
        assert step["rows"], step["name"]
    # without CUDA the CUDA tests skip; with it (a GPU CI runner) they pass
    assert steps["pytest_cuda"]["status"] in ("skipped", "ok"), steps["pytest_cuda"]
    assert {r["file"] for r in steps["pytest_cuda"]["rows"]} >= {"tests/loss/test_loss_cuda.py"}
    for name in ("losses", "train_step", "distributed", "decode"):
        assert steps[name]["status"] == "ok", (name, steps[name].get("error"), steps[name]["rows"])
    losses = steps["losses"]["rows"]
    assert {(r["batching"], r["path"]) for r in losses} == {
        (b, p) for b in ("unsorted", "sorted") for p in ("pruned", "torchaudio", "asr_full")}
    assert all(r["median_ms"] > 0 for r in losses)
    assert all(r["rel_diff_vs_torchaudio"] < 1e-4 for r in losses if r["path"] == "asr_full")
    dist = steps["distributed"]["rows"]
    assert [r["processes"] for r in dist] == [1, 2] and dist[1]["max_rel_diff_vs_1_process"] < 1e-4
    assert {r["method"] for r in steps["decode"]["rows"] if r["status"] == "ok"} == {
        "greedy", "modified_beam_search (beam 4)"}
    train = [r for r in steps["train_step"]["rows"] if "amp" in r]
    assert train and all(r["tflops"] > 0 and r["gflop_per_step"] > 0 for r in train)

    md = (tmp_path / "results.md").read_text()
    summary = [line for line in md.splitlines() if line.startswith("| ") and line.split("|")[1].strip() in steps]
    assert [line.split("|")[1].strip() for line in summary] == list(check.STEPS)
    assert md.count(report.SUMMARY_HEADER) == 1
    sections = markdown_sections(md)
    for name, step in steps.items():
        lines = sections[name]
        width = lines[0].count("|")
        assert all(line.count("|") - line.count("\\|") == width for line in lines), name
        assert len(lines) == 2 + len(step["rows"]), name  # header, rule, one line per row


@pytest.mark.slow
def test_step_over_its_limit_is_recorded_and_the_next_runs(tmp_path):
    proc = run_check(tmp_path, "--steps", "decode,losses", "--limit", "decode=8", ASR_GPU_CHECK_STALL="decode")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    steps = {s["name"]: s for s in json.loads((tmp_path / "results.json").read_text())["steps"]}
    assert steps["decode"]["status"] == "timeout"
    assert "limit of 8 s" in steps["decode"]["error"]
    assert steps["decode"]["rows"] == [{"status": "ok", "note": "stalling"}]  # what it had before it hung is kept
    assert steps["losses"]["status"] == "ok"
    assert "| decode | timeout |" in (tmp_path / "results.md").read_text()


def test_step_status():
    assert check.step_status([{"status": "ok"}], 0, False) == "ok"
    assert check.step_status([{"status": "ok"}, {"status": "failed"}], 0, False) == "failed"
    assert check.step_status([{"status": "ok"}], 1, False) == "failed"  # crashed after its rows
    assert check.step_status([], 0, False) == "failed"  # nothing measured
    assert check.step_status([{"status": "skipped"}], 0, False) == "skipped"
    assert check.step_status([{"status": "ok"}], None, True) == "timeout"


def test_markdown_table_escapes_and_aligns():
    lines = report.table([{"a": 1.23456789, "b": "x|y"}, {"a": None, "c": [1.0, 2]}])
    assert lines[0] == "| a | b | c |"
    assert lines[2] == "| 1.235 | x\\|y | - |"
    assert lines[3] == "| - | - | 1, 2 |"


def test_profiles_fit_their_budgets():
    """The per-step limits of a profile add up to about its budget (so a slow step leaves the later ones time), and
    the full run with set-up fits in 8 minutes, the quick one in 2."""
    for name, profile in check.PROFILES.items():
        assert set(profile["limits"]) == set(check.STEPS), name
        assert sum(profile["limits"].values()) <= profile["budget_s"] + 60, name
    assert check.PROFILES["full"]["budget_s"] <= 8 * 60 - 20
    assert check.PROFILES["quick"]["budget_s"] <= 2 * 60 - 5
