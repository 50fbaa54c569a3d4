"""Progress of a long command on stderr: a redrawn bar on a terminal, a plain line now and
then otherwise (a log file or journald gets no carriage returns).

Two kinds of report share the bar and the output: `Progress` counts rows at a rate (the
DuckDB import and export), `StageProgress` follows a job through named stages, with a count
where one is known (`alfrd jobs run`, `alfrd restore`: "dumping", "verifying 40/100")."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 24


def bar(done: int, total: int) -> str:
    """`[######..................]  25%` (full at most, however far done runs past total)."""
    filled = min(BAR_WIDTH, BAR_WIDTH * done // total)
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {min(100, 100 * done // total):3d}%"


def bar_line(label: str, done: int, total: int | None, elapsed: float) -> str:
    """One redraw of the row bar: label, bar, percent, count, rate."""
    rate = done / elapsed if elapsed > 0 else 0.0
    if total:
        return f"{label:<28} {bar(done, total)}  {done}/{total}  {rate:,.0f} rows/s"
    return f"{label:<28} {done}  {rate:,.0f} rows/s"


class Display:
    """Where progress goes: on a terminal one line redrawn in place, elsewhere whole lines."""

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty

    def redraw(self, text: str) -> None:
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()

    def line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


class Progress(Display):
    """Rows counted at a rate: `start`, `advance` per batch, `finish`."""

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, plain_every: float = 5.0,
                 enabled: bool = True):
        super().__init__(stream, tty=tty)
        self.clock = clock
        self.plain_every = plain_every
        self.enabled = enabled
        self.label = ""
        self.total: int | None = None
        self.done = 0
        self.started = 0.0
        self.last_draw = 0.0

    def start(self, label: str, total: int | None) -> None:
        self.label, self.total, self.done = label, total, 0
        self.started = self.last_draw = self.clock()
        if not self.enabled:
            return
        if self.tty:
            self._draw()
        else:
            self.line(f"{label}: {total if total is not None else '?'} rows")

    def advance(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        now = self.clock()
        # A terminal redraws ten times a second at most; a log gets a line every few seconds.
        if now - self.last_draw >= (0.1 if self.tty else self.plain_every):
            self.last_draw = now
            if self.tty:
                self._draw()
            else:
                self.line(f"{self.label}: {self.done}/{self.total}")

    def finish(self) -> None:
        if not self.enabled:
            return
        elapsed = self.clock() - self.started
        if self.tty:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
        else:
            self.line(f"{self.label}: {self.done}/{self.total} in {elapsed:.1f} s")

    def _draw(self) -> None:
        self.redraw(bar_line(self.label, self.done, self.total, self.clock() - self.started))


class StageProgress(Display):
    """A job's stages, called as `progress(stage, done, total)` (a jobs.context.Reporter): on
    a terminal the bar of the current stage, elsewhere a line per stage and per 10 %. `close`
    clears the bar before the job's result is printed."""

    def __init__(self, job: str, stream: TextIO | None = None, *, tty: bool | None = None):
        super().__init__(stream, tty=tty)
        self.job = job
        self.last_stage: str | None = None
        self.last_tenth: int | None = None
        self.drawn = False

    def __call__(self, stage: str, done: int | None, total: int | None) -> None:
        share = (done, total) if done is not None and total else None
        if self.tty:
            self.redraw(f"{self.job}: {stage}" + (f" {bar(*share)}" if share else ""))
            self.drawn = True
        else:
            tenth = 10 * share[0] // share[1] if share else None
            if stage != self.last_stage or tenth != self.last_tenth:
                self.line(f"{self.job}: {stage}" + (f" ({done}/{total})" if share else ""))
            self.last_tenth = tenth
        self.last_stage = stage

    def close(self) -> None:
        if self.tty and self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
