"""Pruning history: document_arrivals and job_runs rows older than jobs.prune.keep_days, and
the trash: documents deleted more than trash.keep_days ago (jobs/trash.py).

Deleted in bounded batches, each its own transaction, so a first prune of years of history
never holds locks for long. The newest run of every job is kept whatever its age, so
`alfrd status` can always say when a rarely-run job last ran.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.jobs.context import JobContext
from alfrd_daemon.jobs.trash import purge_trash

Q = load_named_queries("jobs.sql")

BATCH = 5000


def run_prune(ctx: JobContext) -> dict[str, Any]:
    keep_days = ctx.settings.jobs.prune.keep_days
    cutoff = datetime.now(UTC) - timedelta(days=keep_days)
    ctx.details.update(keep_days=keep_days, cutoff=cutoff.isoformat())
    with ctx.connection(autocommit=True) as conn:
        for key, query in (("arrivals_deleted", "prune_arrivals"),
                           ("job_runs_deleted", "prune_job_runs")):
            ctx.progress(f"pruning {key.split('_deleted')[0]}")
            total = 0
            while True:
                ctx.check()
                with conn.transaction():
                    deleted = conn.execute(Q[query], {"cutoff": cutoff, "limit": BATCH}).rowcount
                total += deleted
                if deleted < BATCH:
                    break
            ctx.details[key] = total
    purge_trash(ctx)
    return ctx.details
