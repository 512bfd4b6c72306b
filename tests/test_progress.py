"""asr.progress: a bar with an ETA on a terminal (simulated with a pty), periodic plain lines on a pipe."""

import io
import logging
import os
import pty
import subprocess
import sys

import pytest

from asr.progress import Progress, choose_mode, progress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = """
import time
from asr.progress import progress
with progress(total=20, desc="synth", unit="utt", interval=0.05) as bar:
    for i in range(20):
        time.sleep(0.02)
        bar.update(1)
        bar.set_postfix(f"slt {i}")
"""


def _run_child(use_pty: bool) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASR_PROGRESS")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if not use_pty:
        proc = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout + proc.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", CHILD], stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=60) == 0
    return b"".join(chunks).decode(errors="replace")


def test_a_terminal_gets_a_bar_with_eta():
    out = _run_child(use_pty=True)
    assert "\r" in out and "synth:" in out and "20/20" in out
    assert "<" in out and "utt/s" in out  # tqdm's "elapsed<remaining, rate"
    assert "ETA" not in out  # no log lines on a terminal


def test_a_pipe_gets_periodic_lines_and_no_bar():
    out = _run_child(use_pty=False)
    lines = [line for line in out.splitlines() if "synth:" in line]
    assert "\r" not in out
    assert len(lines) >= 3, out  # ~0.4 s of work, a line every 0.05 s, and the final one
    assert "ETA" in lines[0] and "/20 utt (" in lines[0] and lines[0].endswith("]")
    assert "done, 20 utt in" in lines[-1]


def test_log_line_values_and_logging_when_configured(caplog):
    bar = Progress(total=100.0, desc="train-clean-100", unit="s", mode="log", interval=3600)
    bar.start -= 10.0  # as if 10 s had passed
    bar.update(25.0)
    line = bar.line()
    assert line.startswith("train-clean-100: 25/100 s (25%), 2.5 s/s, elapsed 0:00:10, ETA 0:00:30"), line
    with caplog.at_level(logging.INFO, logger="asr.progress"):
        bar.close()
        bar.close()  # a second close writes nothing
    assert [r.getMessage() for r in caplog.records] == ["train-clean-100: done, 25 s in 0:00:10 (2.5 s/s)"]


def test_iterating_counts_and_closes():
    stream = io.StringIO()
    quiet = logging.getLogger("asr.progress.test.unconfigured")
    quiet.propagate = False  # as in a program that never configured logging: the lines go to the stream
    items = list(progress(range(5), desc="x", stream=stream, interval=0.0, mode="log", logger=quiet))
    assert items == list(range(5))
    text = stream.getvalue()
    assert "x: done, 5 it in" in text.splitlines()[-1] and "\r" not in text


def test_mode_choice(monkeypatch):
    monkeypatch.delenv("ASR_PROGRESS", raising=False)
    assert choose_mode(io.StringIO()) == "log"
    monkeypatch.setenv("ASR_PROGRESS", "bar")
    assert choose_mode(io.StringIO()) == "bar"
    monkeypatch.setenv("ASR_PROGRESS", "fancy")
    with pytest.raises(ValueError, match="ASR_PROGRESS"):
        choose_mode(io.StringIO())
    off = Progress(total=3, mode="off", stream=io.StringIO())
    off.update(3)
    off.close()
    assert off.stream.getvalue() == ""
