"""Backup retention: exactly the newest of each of the last N days and M weeks survive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from alfrd_daemon.jobs.retention import plan_retention


def at(day: str, hour: int = 3, minute: int = 0) -> datetime:
    return datetime.fromisoformat(day).replace(hour=hour, minute=minute, tzinfo=UTC)


def names(backups: list[tuple[str, datetime]]) -> set[str]:
    return {n for n, _ in backups}


def test_daily_backups_keep_seven_days_and_four_more_weeks() -> None:
    # One backup a day at 03:00 UTC from Wed 2025-01-01 to Sun 2025-02-16 (47 days).
    start = datetime(2025, 1, 1, 3, 0, tzinfo=UTC)
    backups = [(f"b{(start + timedelta(days=i)):%m%d}", start + timedelta(days=i))
               for i in range(47)]
    kept, delete = plan_retention(backups, keep_daily=7, keep_weekly=4, tz=UTC)
    rules = {k.name: k.rule for k in kept}
    # Daily: Feb 10 (Mon) … Feb 16 (Sun), the whole ISO week 7.
    assert {n for n, r in rules.items() if r.startswith("daily")} == {
        "b0210", "b0211", "b0212", "b0213", "b0214", "b0215", "b0216"}
    # Weekly: week 7's newest (Feb 16) is already kept and does not count again, so the
    # newest of weeks 6, 5, 4, 3: the Sundays Feb 9, Feb 2, Jan 26, Jan 19.
    assert {n for n, r in rules.items() if r.startswith("weekly")} == {
        "b0209", "b0202", "b0126", "b0119"}
    assert len(kept) == 11
    assert set(delete) == names(backups) - set(rules)
    assert delete == sorted(delete)  # oldest first


def test_only_the_newest_backup_of_a_day_is_kept() -> None:
    backups = [("a", at("2025-03-05", 1)), ("b", at("2025-03-05", 13)),
               ("c", at("2025-03-05", 23, 59)), ("d", at("2025-03-04", 3))]
    kept, delete = plan_retention(backups, keep_daily=2, keep_weekly=0, tz=UTC)
    assert [k.name for k in kept] == ["c", "d"]
    assert delete == ["a", "b"]


def test_days_are_local_days() -> None:
    # 23:30 and 02:30 UTC are the same evening in New York: one day, one backup kept.
    ny = ZoneInfo("America/New_York")
    backups = [("late", at("2025-03-05", 23, 30)), ("later", at("2025-03-06", 2, 30))]
    kept, delete = plan_retention(backups, keep_daily=7, keep_weekly=0, tz=ny)
    assert [k.name for k in kept] == ["later"] and delete == ["late"]
    kept, delete = plan_retention(backups, keep_daily=7, keep_weekly=0, tz=UTC)
    assert len(kept) == 2 and delete == []


def test_gaps_do_not_count_as_days() -> None:
    # Keep-7-daily means the 7 most recent days that have a backup, however far apart.
    backups = [(f"m{i}", at("2025-01-01") + timedelta(days=30 * i)) for i in range(10)]
    kept, delete = plan_retention(backups, keep_daily=7, keep_weekly=0, tz=UTC)
    assert [k.name for k in kept] == [f"m{i}" for i in range(9, 2, -1)]
    assert delete == ["m0", "m1", "m2"]


def test_newest_is_always_kept_and_empty_input_is_fine() -> None:
    assert plan_retention([], keep_daily=1, keep_weekly=0, tz=UTC) == ([], [])
    kept, delete = plan_retention([("only", at("2020-01-01"))], keep_daily=1, keep_weekly=0,
                                  tz=UTC)
    assert [k.name for k in kept] == ["only"] and delete == []
