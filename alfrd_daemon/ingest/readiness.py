"""Whether a file in the inbox has settled: ready to claim, wait until when, or gone.

A pure decision over what was seen of a path (events, two lstat looks) and the clocks, so every
case is unit-tested without touching disk; the tracker feeds it and acts on the verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Verdict(Enum):
    READY = "ready"
    WAIT = "wait"
    GONE = "gone"


@dataclass(frozen=True)
class ReadinessParams:
    settle_seconds: float = 1.0
    quiet_seconds: float = 0.1
    stale_write_seconds: float = 300.0
    close_events: bool = True  # inotify reports close-after-write; polling does not


@dataclass
class Sighting:
    """What we know of one candidate path. Times are monotonic seconds."""

    last_activity: float
    closed: bool = False
    writing: bool = False
    size: int | None = None
    mtime_ns: int | None = None


@dataclass(frozen=True)
class Observed:
    """One lstat of the path; None fields mean it is not there."""

    exists: bool
    regular: bool = True
    size: int = 0
    mtime_ns: int = 0
    directory: bool = False  # a plain folder, not a folder document


# A first look at a file can only record what it saw; a second one, at least this much later,
# must agree before a file without a close event counts as settled.
SECOND_LOOK_SECONDS = 0.05


def decide(s: Sighting, seen: Observed, now: float, p: ReadinessParams, *,
           wall_now: float) -> tuple[Verdict, float]:
    """Ready, wait until a monotonic time, or gone. Records what it observed in `s`.

    A file is ready when it was closed after writing (or renamed in whole) and has been quiet
    for quiet_seconds; a file being written waits for its close (up to stale_write_seconds).
    Any other file is settled when two looks saw the same size and mtime and both the file's
    own mtime (wall clock `wall_now`) and the last change we noticed are settle_seconds old: a
    poll that happens to notice a slow writer late must not cut it short. A mtime in the
    future (a skewed file server) falls back to when we noticed the change. Empty files always
    wait the settle time, because scanners create empty placeholders first. Whoever notes an
    event clears s.size, so only changes between two looks count here.
    """
    if not seen.exists:
        return Verdict.GONE, now
    if not seen.regular:
        return Verdict.READY, now  # never opened: the worker files it under failed/
    first_look = s.size is None
    if not first_look and (s.size, s.mtime_ns) != (seen.size, seen.mtime_ns):
        s.last_activity = now
        s.closed = False
        first_look = True  # what it is now has been seen once
    s.size, s.mtime_ns = seen.size, seen.mtime_ns
    if s.closed and seen.size > 0:
        due = s.last_activity + p.quiet_seconds
    elif s.writing and p.close_events:
        due = s.last_activity + p.stale_write_seconds
    else:
        still_since = s.last_activity
        age = wall_now - seen.mtime_ns / 1e9
        if age >= 0:
            still_since = max(still_since, now - age)
        due = still_since + p.settle_seconds
        if first_look:
            due = max(due, now + SECOND_LOOK_SECONDS)
    return (Verdict.READY, now) if now >= due else (Verdict.WAIT, due)
