"""The `jobs:` section of the YAML → typed, frozen settings for each scheduled job.

Validated with config.py's reader, so problems come out in the same "At 'jobs.x.y': got …,
expected …" form, all at once, and unknown keys are errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alfrd_daemon.config.schedule import (
    SCHEDULE_EXPECTED,
    Schedule,
    cron,
    every,
    parse_schedule,
    resolve_timezone,
)

if TYPE_CHECKING:
    from alfrd_daemon.config.settings import _Reader

DEFAULT_GRACE = 12 * 3600.0  # a job due while the machine slept still runs when it wakes
# Schedules are frozen values, safe to share as defaults.
BACKUP_SCHEDULE = cron("0 3 * * *")
RESTORE_TEST_SCHEDULE = cron("0 5 * * 0")
REINDEX_SCHEDULE = cron("0 4 * * 0")
RESCAN_SCHEDULE = every(300)
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
        return getattr(self, JOB_ATTRS[name])  # type: ignore[no-any-return]


def canonical_job_name(name: str) -> str | None:
    """'retry_failed' and 'retry-failed' are the same job."""
    candidate = name.strip().lower().replace("_", "-")
    return candidate if candidate in JOB_ATTRS else None


def parse_jobs(r: _Reader, *, rescan_interval: float) -> JobsSettings:
    """Read the `jobs:` section; the rescan job's interval defaults to watch.rescan_interval."""
    from alfrd_daemon.config.settings import (
        _boolean,
        _conninfo,
        _integer,
        _number,
        _path_text,
        _string,
    )

    def common(section: _Reader, defaults: Any) -> dict[str, Any]:
        return {
            "enabled": section.get("enabled", defaults.enabled, _boolean, "true or false"),
            "schedule": section.get("schedule", defaults.schedule, parse_schedule,
                                    SCHEDULE_EXPECTED),
            "misfire_grace": section.get("misfire_grace", defaults.misfire_grace,
                                         _number(1, 7 * 86400), "seconds"),
        }

    def timezone(value: Any) -> str:
        name = _string(value)
        resolve_timezone(name)
        return name

    tz_name = r.get("timezone", "local", timezone, "a time zone name")

    b = r.section("backup")
    backup = BackupJob(
        **common(b, BackupJob()),
        keep_daily=b.get("keep_daily", 7, _integer(1, 3660), ""),
        keep_weekly=b.get("keep_weekly", 4, _integer(0, 520), ""),
        roles=b.get("roles", True, _boolean, "true or false"),
        pg_bin_dir=b.get("pg_bin_dir", None, lambda v: Path(_path_text(v)), ""),
        timeout=b.get("timeout", 6 * 3600.0, _number(10, 7 * 86400), "seconds"),
    )
    b.finish()

    t = r.section("restore_test")
    restore_test = RestoreTestJob(
        **common(t, RestoreTestJob()),
        scratch_url=t.get("scratch_url", None, _conninfo, "a PostgreSQL URL"),
        timeout=t.get("timeout", 6 * 3600.0, _number(10, 7 * 86400), "seconds"),
    )
    t.finish()

    x = r.section("reindex")
    reindex = ReindexJob(
        **common(x, ReindexJob()),
        batch_size=x.get("batch_size", 500, _integer(1, 100_000), ""),
        rebuild_fraction=x.get("rebuild_fraction", 0.2, _number(0, 1), "a fraction"),
        bloat_factor=x.get("bloat_factor", 2.0, _number(1.1, 100), "a factor"),
        timeout=x.get("timeout", 3600.0, _number(10, 7 * 86400), "seconds"),
    )
    x.finish()

    s = r.section("rescan")
    rescan = RescanJob(**common(s, RescanJob(schedule=every(rescan_interval))))
    s.finish()

    f = r.section("retry_failed")
    retry_failed = RetryFailedJob(**common(f, RetryFailedJob()))
    f.finish()

    p = r.section("prune")
    prune = PruneJob(**common(p, PruneJob()),
                     keep_days=p.get("keep_days", 90, _integer(1, 36500), ""))
    p.finish()

    r.finish()
    return JobsSettings(timezone=tz_name, backup=backup, restore_test=restore_test,
                        reindex=reindex, rescan=rescan, retry_failed=retry_failed, prune=prune)
