"""Progress of a long stage: a tqdm bar with an ETA on a terminal, plain periodic log lines elsewhere.

    from asr.progress import progress

    for cut in progress(cuts, total=len(cuts), desc="decode test-clean", unit="utt"):
        ...
    with progress(total=600.0, desc="train-clean-100", unit="s") as bar:   # any amount, not only counts
        bar.update(4.2)
        bar.set_postfix("slt 12, joe 3")

On a terminal (the stream's isatty()) the bar redraws itself in place (carriage returns) with rate and ETA. When the
output goes to a file or a pipe (a CI log, `| tee`), there is no bar: one line every `interval` seconds (default 30,
ASR_PROGRESS_INTERVAL) and one at the end, "desc: 120/600 s (20%), 3.1 s/s, elapsed 0:00:40, ETA 0:02:35 [postfix]",
through `logging` when the program has configured it (logger "asr.progress"), else written to the stream.
ASR_PROGRESS=bar|log|off overrides the choice.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

MODES = ("bar", "log", "off")
DEFAULT_INTERVAL = 30.0  # seconds between two log lines: a 20-minute stage logs ~40 lines

log = logging.getLogger("asr.progress")


def _hms(seconds: float) -> str:
    return str(datetime.timedelta(seconds=max(0, round(seconds))))


def _num(x: float) -> str:
    return f"{x:.0f}" if float(x).is_integer() or abs(x) >= 100 else f"{x:.1f}"


def _columns(stream: IO[str]) -> int:
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):
        return 0


def choose_mode(stream: IO[str] | None = None) -> str:
    """"bar" when `stream` (default stderr) is a terminal, else "log"; ASR_PROGRESS overrides it."""
    forced = os.environ.get("ASR_PROGRESS", "").strip().lower()
    if forced:
        if forced not in MODES:
            raise ValueError(f"ASR_PROGRESS must be one of {MODES}, got {forced!r}")
        return forced
    stream = sys.stderr if stream is None else stream
    try:
        return "bar" if stream.isatty() else "log"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return "log"


class Progress:
    """A bar (tqdm) or periodic log lines; iterate over it, or call update(). Use progress() to make one."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, total: float | None = None, desc: str = "",
                 unit: str = "it", stream: IO[str] | None = None, interval: float | None = None,
                 mode: str | None = None, logger: logging.Logger | None = None) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.stream = sys.stderr if stream is None else stream
        self.mode = mode or choose_mode(self.stream)
        if self.mode not in MODES:
            raise ValueError(f"progress mode must be one of {MODES}, got {self.mode!r}")
        if interval is None:
            interval = float(os.environ.get("ASR_PROGRESS_INTERVAL", DEFAULT_INTERVAL))
        self.interval = interval
        self.logger = logger or log
        self.n = 0.0
        self.postfix = ""
        self.start = self._last = time.monotonic()
        self.closed = False
        self._bar = None
        if self.mode == "bar":
            from tqdm import tqdm

            sized = _columns(self.stream) > 0  # a bare pty reports 0 x 0, where tqdm would draw nothing at all
            self._bar = tqdm(total=total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=sized,
                             ncols=None if sized else 100, nrows=None if sized else 24, mininterval=0.5,
                             smoothing=0.1)

    # ------------------------------------------------------------------------------------------------ updates
    def update(self, n: float = 1) -> None:
        """Count `n` more units done."""
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.mode == "log" and time.monotonic() - self._last >= self.interval:
            self._emit()

    def set_postfix(self, text: str) -> None:
        """Text shown after the counts (e.g. per-voice counts)."""
        self.postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def close(self) -> None:
        """The final line (log mode) or the bar's last state; safe to call twice."""
        if self.closed:
            return
        self.closed = True
        if self._bar is not None:
            self._bar.close()
        elif self.mode == "log":
            self._emit(final=True)

    def line(self, final: bool = False) -> str:
        """The log line for the current state."""
        elapsed = time.monotonic() - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        head = f"{self.desc}: " if self.desc else ""
        if final:
            text = f"{head}done, {_num(self.n)} {self.unit} in {_hms(elapsed)} ({rate:.3g} {self.unit}/s)"
        elif self.total:
            pct = 100.0 * self.n / self.total
            eta = (self.total - self.n) / rate if rate > 0 else float("nan")
            text = (f"{head}{_num(self.n)}/{_num(self.total)} {self.unit} ({pct:.0f}%), {rate:.3g} {self.unit}/s, "
                    f"elapsed {_hms(elapsed)}, ETA {_hms(eta) if eta == eta else '?'}")
        else:
            text = f"{head}{_num(self.n)} {self.unit}, {rate:.3g} {self.unit}/s, elapsed {_hms(elapsed)}"
        return f"{text} [{self.postfix}]" if self.postfix else text

    def _emit(self, final: bool = False) -> None:
        self._last = time.monotonic()
        text = self.line(final)
        if self.logger.hasHandlers():
            self.logger.info(text)
        else:  # logging not configured by the program: still one plain line
            stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
            print(f"{stamp} {text}", file=self.stream, flush=True)

    # ---------------------------------------------------------------------------------------- protocol sugar
    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this Progress wraps no iterable; call update() instead")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(iterable: Iterable[Any] | None = None, *, total: float | None = None, desc: str = "", unit: str = "it",
             stream: IO[str] | None = None, interval: float | None = None, mode: str | None = None,
             logger: logging.Logger | None = None) -> Progress:
    """A progress display for a stage: see the module docstring. `total` (default len(iterable) when it has one)
    gives the percentage and the ETA; without it only counts and rate are shown."""
    return Progress(iterable, total=total, desc=desc, unit=unit, stream=stream, interval=interval, mode=mode,
                    logger=logger)
