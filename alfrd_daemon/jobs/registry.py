"""The jobs there are: each name (as in job_runs, logs and `alfrd jobs run`) with the function
that does its work and how it is run.

A database-wide job runs once per slot however many daemons share the database; an instance
job (rescan, retry-failed) acts on this daemon's own folders and runs on every daemon.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from alfrd_daemon.config.jobs import JOB_ATTRS
from alfrd_daemon.jobs.backup import run_backup
from alfrd_daemon.jobs.context import JobContext
from alfrd_daemon.jobs.prune import run_prune
from alfrd_daemon.jobs.reindex import run_reindex
from alfrd_daemon.jobs.rescan import run_rescan
from alfrd_daemon.jobs.restore import run_restore_test
from alfrd_daemon.jobs.retry import run_retry_failed


@dataclass(frozen=True)
class JobSpec:
    name: str
    run: Callable[[JobContext], dict[str, Any] | None]
    # database: once per slot across all daemons (advisory lock); instance: every daemon.
    scope: Literal["database", "instance"]
    # Jobs of one group never overlap: REINDEX CONCURRENTLY waits for pg_dump's snapshot.
    group: str | None = None
    catch_up: bool = True


JOBS: dict[str, JobSpec] = {
    "backup": JobSpec("backup", run_backup, "database", group="maintenance"),
    "restore-test": JobSpec("restore-test", run_restore_test, "database"),
    "reindex": JobSpec("reindex", run_reindex, "database", group="maintenance"),
    "rescan": JobSpec("rescan", run_rescan, "instance", catch_up=False),
    "retry-failed": JobSpec("retry-failed", run_retry_failed, "instance"),
    "prune": JobSpec("prune", run_prune, "database"),
}
assert set(JOBS) == set(JOB_ATTRS)
