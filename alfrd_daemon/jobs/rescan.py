"""The rescan job: ask this daemon's watcher for a full scan of its inbox.

Scheduled scans catch what events missed (a network filesystem, an overflowed inotify queue);
the readiness loop keeps a slower timer of its own as a fallback (scheduler.py).
"""

from __future__ import annotations

from typing import Any

from alfrd_daemon.jobs.context import JobContext, JobFailed


def run_rescan(ctx: JobContext) -> dict[str, Any]:
    if ctx.tracker is None:
        raise JobFailed("rescan asks a running daemon's watcher to scan its inbox; it cannot "
                        "run outside the daemon")
    ctx.tracker.request_scan()
    return {"requested": True}
