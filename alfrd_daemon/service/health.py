"""Is the daemon healthy? Judged from one look at its long-lived parts (Vitals), so the rules
are tested without threads: a dead part is fatal (the service manager restarts us), a stale
one, a lost watch or stuck work is unhealthy (no watchdog pings, so a lasting problem also
ends in a restart)."""

from __future__ import annotations

from dataclasses import dataclass

# The monitor's slowest bounded duty (an outage probe: pool wait, a direct connection, a fresh
# pool) takes about 20 s; a beat older than this means it hangs (a frozen server).
MONITOR_STALE_SECONDS = 60.0
READINESS_STALE_SECONDS = 30.0


@dataclass(frozen=True)
class Vitals:
    """One look at the long-lived parts. An `*_alive` of None means that part is not running
    yet (or not at all); a beat of None, that nothing beats yet. Times are monotonic."""

    stopping: bool = False
    readiness_alive: bool | None = None
    readiness_beat: float | None = None
    committer_alive: bool | None = None
    committer_busy_since: float | None = None  # when its current commit began
    watcher_alive: bool | None = None
    watch_problem: str | None = None  # inbox missing, or the watch could not re-arm
    monitor_alive: bool | None = None
    monitor_beat: float | None = None
    scheduler_alive: bool | None = None
    ocr_alive: bool | None = None  # the OCR stage's threads (None: ocr.enabled is false)
    hooks_alive: bool | None = None  # the hook runner's threads (None: not started)
    workers: int = 1
    workers_busy_since: tuple[float, ...] = ()  # one entry per worker busy on a file
    stuck_seconds: float = 60.0  # workers.stuck_seconds


def health_problem(v: Vitals, now: float) -> str | None:
    """None while every part is alive and beating, else what is wrong ("fatal: …" when the
    process must exit)."""
    # Parts that end on their own while we stop are not dead, just done.
    if v.readiness_alive is False:
        return "fatal: the readiness loop died"
    if v.committer_alive is False and not v.stopping:
        return "fatal: the committer died"
    if v.watch_problem is not None:
        return v.watch_problem
    if v.watcher_alive is False:
        return "fatal: the file watcher died"
    if v.monitor_alive is False and not v.stopping:
        return "fatal: the monitor thread died"
    if v.scheduler_alive is False and not v.stopping:
        return "fatal: the job scheduler died"
    if v.ocr_alive is False and not v.stopping:
        return "fatal: an OCR worker thread died"
    if v.hooks_alive is False and not v.stopping:
        return "fatal: a hook runner thread died"
    if v.readiness_beat is not None and now - v.readiness_beat > READINESS_STALE_SECONDS:
        return "readiness loop stalled"
    if v.monitor_beat is not None and now - v.monitor_beat > MONITOR_STALE_SECONDS:
        return f"monitor stalled: no beat for {now - v.monitor_beat:.0f} s"
    since = v.committer_busy_since
    if since is not None and now - since > v.stuck_seconds:
        return f"committer stuck: one commit has taken over {v.stuck_seconds:g} s"
    busy = v.workers_busy_since
    if len(busy) >= v.workers and now - max(busy) > v.stuck_seconds:
        return (f"workers stuck: all {len(busy)} busy on one file each for over "
                f"{v.stuck_seconds:g} s")
    return None
