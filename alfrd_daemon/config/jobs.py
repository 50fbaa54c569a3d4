"""The `jobs:` section of the YAML: typed, frozen settings for each scheduled job, with their
defaults, and the parser of the section.

Read with config/reader.py, so problems come out in the same "At 'jobs.x.y': got …,
expected …" form as the rest of the file, all at once, and unknown keys are errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any

from alfrd_daemon.config.reader import (
    Reader,
    boolean,
    conninfo,
    integer,
    number,
    path_text,
    string,
)
from alfrd_daemon.config.schedule import (
    SCHEDULE_EXPECTED,
    Schedule,
    cron,
    every,
    parse_schedule,
    resolve_timezone,
)

DEFAULT_GRACE = 12 * 3600.0  # a job due while the machine slept still runs when it wakes
# The safety-net scan of the whole inbox: the default of watch.rescan_interval (settings.py
# takes it from here) and so of the rescan job, which runs every watch.rescan_interval.
RESCAN_INTERVAL = 300.0
# Schedules are frozen values, safe to share as defaults.
BACKUP_SCHEDULE = cron("0 3 * * *")
RESTORE_TEST_SCHEDULE = cron("0 5 * * 0")
REINDEX_SCHEDULE = cron("0 4 * * 0")
RESCAN_SCHEDULE = every(RESCAN_INTERVAL)
RETRY_FAILED_SCHEDULE = cron("0 * * * *")
PRUNE_SCHEDULE = cron("30 2 * * *")


@dataclass(frozen=True)
class BackupJob:
    enabled: bool = True
    schedule: Schedule = BACKUP_SCHEDULE
    misfire_grace: float = DEFAULT_GRACE
    keep_daily: int = 7
    keep_weekly: int = 4
    roles: bool = True
    pg_bin_dir: Path | None = None
    timeout: float = 6 * 3600.0


@dataclass(frozen=True)
class RestoreTestJob:
    enabled: bool = True
    schedule: Schedule = RESTORE_TEST_SCHEDULE
    misfire_grace: float = DEFAULT_GRACE
    scratch_url: str | None = None
    timeout: float = 6 * 3600.0


@dataclass(frozen=True)
class ReindexJob:
    enabled: bool = True
    schedule: Schedule = REINDEX_SCHEDULE
    misfire_grace: float = DEFAULT_GRACE
    batch_size: int = 500
    rebuild_fraction: float = 0.2
    bloat_factor: float = 2.0
    timeout: float = 3600.0


@dataclass(frozen=True)
class RescanJob:
    enabled: bool = True
    schedule: Schedule = RESCAN_SCHEDULE
    misfire_grace: float = 60.0


@dataclass(frozen=True)
class RetryFailedJob:
    enabled: bool = False
    schedule: Schedule = RETRY_FAILED_SCHEDULE
    misfire_grace: float = 3600.0


@dataclass(frozen=True)
class PruneJob:
    enabled: bool = True
    schedule: Schedule = PRUNE_SCHEDULE
    misfire_grace: float = DEFAULT_GRACE
    keep_days: int = 90


JobSettings = BackupJob | RestoreTestJob | ReindexJob | RescanJob | RetryFailedJob | PruneJob

# Job name (as in job_runs, logs and `alfrd jobs run`) → attribute of JobsSettings.
JOB_ATTRS = {
    "backup": "backup",
    "restore-test": "restore_test",
    "reindex": "reindex",
    "rescan": "rescan",
    "retry-failed": "retry_failed",
    "prune": "prune",
}


@dataclass(frozen=True)
class JobsSettings:
    timezone: str = "local"
    backup: BackupJob = field(default_factory=BackupJob)
    restore_test: RestoreTestJob = field(default_factory=RestoreTestJob)
    reindex: ReindexJob = field(default_factory=ReindexJob)
    rescan: RescanJob = field(default_factory=RescanJob)
    retry_failed: RetryFailedJob = field(default_factory=RetryFailedJob)
    prune: PruneJob = field(default_factory=PruneJob)

    @property
    def tz(self) -> tzinfo:
        return resolve_timezone(self.timezone)

    def job(self, name: str) -> JobSettings:
        job: JobSettings = getattr(self, JOB_ATTRS[name])
        return job


def canonical_job_name(name: str) -> str | None:
    """'retry_failed' and 'retry-failed' are the same job."""
    candidate = name.strip().lower().replace("_", "-")
    return candidate if candidate in JOB_ATTRS else None


def parse_jobs(r: Reader, *, rescan_interval: float) -> JobsSettings:
    """Read the `jobs:` section (`r` reads it with JobsSettings() as its defaults); the rescan
    job's schedule defaults to every watch.rescan_interval."""

    def common(section: Reader) -> dict[str, Any]:
        return {
            "enabled": section.get("enabled", boolean, "true or false"),
            "schedule": section.get("schedule", parse_schedule, SCHEDULE_EXPECTED),
            "misfire_grace": section.get("misfire_grace", number(1, 7 * 86400), "seconds"),
        }

    def timezone(value: object) -> str:
        name = string(value)
        resolve_timezone(name)
        return name

    tz_name = r.get("timezone", timezone, "a time zone name")

    b = r.section("backup", BackupJob())
    backup = BackupJob(
        **common(b),
        keep_daily=b.get("keep_daily", integer(1, 3660)),
        keep_weekly=b.get("keep_weekly", integer(0, 520)),
        roles=b.get("roles", boolean, "true or false"),
        pg_bin_dir=b.get("pg_bin_dir", lambda v: Path(path_text(v))),
        timeout=b.get("timeout", number(10, 7 * 86400), "seconds"),
    )
    b.finish()

    t = r.section("restore_test", RestoreTestJob())
    restore_test = RestoreTestJob(
        **common(t),
        scratch_url=t.get("scratch_url", conninfo, "a PostgreSQL URL"),
        timeout=t.get("timeout", number(10, 7 * 86400), "seconds"),
    )
    t.finish()

    x = r.section("reindex", ReindexJob())
    reindex = ReindexJob(
        **common(x),
        batch_size=x.get("batch_size", integer(1, 100_000)),
        rebuild_fraction=x.get("rebuild_fraction", number(0, 1), "a fraction"),
        bloat_factor=x.get("bloat_factor", number(1.1, 100), "a factor"),
        timeout=x.get("timeout", number(10, 7 * 86400), "seconds"),
    )
    x.finish()

    s = r.section("rescan", RescanJob(schedule=every(rescan_interval)))
    rescan = RescanJob(**common(s))
    s.finish()

    f = r.section("retry_failed", RetryFailedJob())
    retry_failed = RetryFailedJob(**common(f))
    f.finish()

    p = r.section("prune", PruneJob())
    prune = PruneJob(**common(p), keep_days=p.get("keep_days", integer(1, 36500)))
    p.finish()

    r.finish()
    return JobsSettings(timezone=tz_name, backup=backup, restore_test=restore_test,
                        reindex=reindex, rescan=rescan, retry_failed=retry_failed, prune=prune)
