"""The `jobs:` section: typed defaults, the values read, one line per problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from alfrd_daemon.config.jobs import canonical_job_name
from alfrd_daemon.config.parse import ConfigError, parse_settings
from alfrd_daemon.config.schedule import cron, every
from alfrd_daemon.config.settings import Settings
from alfrd_daemon.jobs.registry import JOBS
from alfrd_daemon.jobs.scheduler import tracker_rescan_interval

REPO = Path(__file__).resolve().parents[2]


def parse(data: dict) -> Settings:
    return parse_settings(data, source="t.yaml", base_dir=REPO)


def test_defaults() -> None:
    jobs = parse({}).jobs
    assert jobs.timezone == "local"
    assert jobs.backup.schedule == cron("0 3 * * *") and jobs.backup.enabled
    assert (jobs.backup.keep_daily, jobs.backup.keep_weekly) == (7, 4)
    assert jobs.backup.misfire_grace >= 3600  # a backup due during sleep still runs
    assert jobs.reindex.schedule == cron("0 4 * * 0")
    assert jobs.restore_test.schedule == cron("0 5 * * 0")
    assert jobs.prune.schedule == cron("30 2 * * *") and jobs.prune.keep_days == 90
    assert not jobs.retry_failed.enabled
    assert jobs.rescan.schedule == every(300)


def test_rescan_follows_watch_rescan_interval_and_the_tracker_becomes_a_fallback() -> None:
    s = parse({"watch": {"rescan_interval": 42}})
    assert s.jobs.rescan.schedule == every(42)
    assert tracker_rescan_interval(s) == 84
    s = parse({"watch": {"rescan_interval": 42}, "jobs": {"rescan": {"enabled": False}}})
    assert tracker_rescan_interval(s) == 42


def test_values_are_read() -> None:
    s = parse({"jobs": {"timezone": "Europe/Berlin",
                        "backup": {"schedule": "every 6h", "keep_daily": 3, "keep_weekly": 0,
                                   "roles": False, "pg_bin_dir": "/opt/pg/bin"},
                        "retry_failed": {"enabled": True, "schedule": 600},
                        "reindex": {"batch_size": 50}}})
    jobs = s.jobs
    assert jobs.tz.key == "Europe/Berlin"  # type: ignore[attr-defined]
    assert jobs.backup.schedule == every(21600) and jobs.backup.keep_daily == 3
    assert jobs.backup.pg_bin_dir == Path("/opt/pg/bin") and not jobs.backup.roles
    assert jobs.retry_failed.enabled and jobs.retry_failed.schedule == every(600)
    assert jobs.reindex.batch_size == 50


def test_every_problem_is_one_line_with_its_key() -> None:
    with pytest.raises(ConfigError) as err:
        parse({"jobs": {"timezone": "Mars/Olympus",
                        "backup": {"keep_daily": -1, "schedule": "at three", "keep": 3},
                        "prune": {"keep_days": "long"},
                        "rescan": {"enabled": "yes"},
                        "reindex": {"rebuild_fraction": 2},
                        "nightly": {}}})
    problems = err.value.problems
    assert all("\n" not in p for p in problems)
    text = "\n".join(problems)
    for expected in (
        "At 'jobs.timezone': got 'Mars/Olympus', expected 'local', 'UTC' or a time zone name",
        "At 'jobs.backup.keep_daily': got -1, expected a whole number at least 1",
        "At 'jobs.backup.schedule': got 'at three', expected a cron expression",
        "At 'jobs.backup.keep': unknown setting",
        "At 'jobs.prune.keep_days': got 'long'",
        "At 'jobs.rescan.enabled': got 'yes', expected true or false",
        "At 'jobs.reindex.rebuild_fraction': got 2",
        "At 'jobs.nightly': unknown setting",
    ):
        assert expected in text, text
    assert len(problems) == 8, problems


def test_job_names() -> None:
    assert canonical_job_name("retry_failed") == "retry-failed"
    assert canonical_job_name("Restore-Test") == "restore-test"
    assert canonical_job_name("nightly") is None
    assert set(JOBS) == {"backup", "restore-test", "reindex", "rescan", "retry-failed", "prune"}


# --- hostile values in jobs.*: the same one-line problems as the rest of the file -------------
JOB_NUMBER_KEYS = [
    *(f"jobs.{job}.misfire_grace" for job in ("backup", "restore_test", "reindex", "rescan",
                                              "retry_failed", "prune")),
    "jobs.backup.keep_daily", "jobs.backup.timeout", "jobs.restore_test.timeout",
    "jobs.reindex.batch_size", "jobs.reindex.bloat_factor", "jobs.reindex.timeout",
    "jobs.prune.keep_days",
]
HOSTILE_NUMBERS = [-1, float("nan"), float("inf"), float("-inf"), 10**30, True, "5"]
SCHEDULE_KEYS = [f"jobs.{job}.schedule" for job in ("backup", "restore_test", "reindex",
                                                    "rescan", "retry_failed", "prune")]
HOSTILE_SCHEDULES = [-1, 0, float("nan"), float("inf"), float("-inf"), 10**30, 1e-9, True,
                     "every 0s", "every 1e400s", "every " + "9" * 400 + "d", "every 400d",
                     "0 0 31 2 *", "0 0\0 * * *", ""]


def nested(key: str, value: object) -> dict:
    *sections, last = key.split(".")
    data: dict = {last: value}
    for section in reversed(sections):
        data = {section: data}
    return data


def only_problem(data: dict) -> str:
    with pytest.raises(ConfigError) as err:
        parse(data)
    problems = err.value.problems
    assert len(problems) == 1 and "\n" not in problems[0], problems
    return problems[0]


@pytest.mark.parametrize("key", JOB_NUMBER_KEYS)
@pytest.mark.parametrize("value", HOSTILE_NUMBERS, ids=repr)
def test_hostile_job_numbers(key: str, value: object) -> None:
    line = only_problem(nested(key, value))
    assert line.startswith(f"At '{key}': got "), line
    assert "at most" in line, line


@pytest.mark.parametrize("value", [-1, 1.5, float("nan"), 10**30])
def test_hostile_fractions_and_weekly_counts(value: object) -> None:
    for key in ("jobs.reindex.rebuild_fraction", "jobs.backup.keep_weekly"):
        assert only_problem(nested(key, value)).startswith(f"At '{key}': got ")


@pytest.mark.parametrize("key", SCHEDULE_KEYS)
@pytest.mark.parametrize("value", HOSTILE_SCHEDULES, ids=lambda v: repr(v)[:24])
def test_hostile_schedules(key: str, value: object) -> None:
    line = only_problem(nested(key, value))
    assert line.startswith(f"At '{key}': got "), line
    assert "expected a cron expression" in line, line


@pytest.mark.parametrize("value", ["/opt/pg\0/bin", "\0", "", "  ", "b" * 256, 7, True])
def test_hostile_pg_bin_dir(value: object) -> None:
    line = only_problem(nested("jobs.backup.pg_bin_dir", value))
    assert line.startswith("At 'jobs.backup.pg_bin_dir': got "), line
    assert "expected a path" in line, line


@pytest.mark.parametrize("value", ["postgresql://h/db\0", "not a url", 5])
def test_hostile_scratch_url(value: object) -> None:
    assert only_problem(nested("jobs.restore_test.scratch_url", value)).startswith(
        "At 'jobs.restore_test.scratch_url': got ")


@pytest.mark.parametrize("value", ["Europe\0Berlin", "../../etc/passwd", "/etc/localtime", "",
                                   "Europe", 5])
def test_hostile_timezones(value: object) -> None:
    assert only_problem(nested("jobs.timezone", value)).startswith("At 'jobs.timezone': got ")
