"""Progress of a long command on stderr: a redrawn bar on a terminal, a plain line now and
then otherwise (a log file or journald gets no carriage returns)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

BAR_WIDTH = 24


def bar_line(label: str, done: int, total: int | None, elapsed: float) -> str:
    """One redraw of the bar: label, bar, percent, count, rate."""
    rate = done / elapsed if elapsed > 0 else 0.0
    if total:
        filled = min(BAR_WIDTH, BAR_WIDTH * done // total)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        return (f"{label:<28} [{bar}] {100 * done // total:3d}%  {done}/{total}"
                f"  {rate:,.0f} rows/s")
    return f"{label:<28} {done}  {rate:,.0f} rows/s"


class Progress:
    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None,
                 clock: Callable[[], float] = time.monotonic, plain_every: float = 5.0,
                 enabled: bool = True):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
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
            self._line(f"{label}: {total if total is not None else '?'} rows")

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
                self._line(f"{self.label}: {self.done}/{self.total}")

    def finish(self) -> None:
        if not self.enabled:
            return
        elapsed = self.clock() - self.started
        if self.tty:
            self._draw()
            self.stream.write("\n")
            self.stream.flush()
        else:
            self._line(f"{self.label}: {self.done}/{self.total} in {elapsed:.1f} s")

    def _draw(self) -> None:
        line = bar_line(self.label, self.done, self.total, self.clock() - self.started)
        self.stream.write("\r" + line + "\x1b[K")
        self.stream.flush()

    def _line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()
