"""Which backups to keep: the newest of each of the last N days and of the last M weeks.

The rules follow borg prune, whose users have lived with them for years: a rule takes the
newest backup of each period (local calendar day, ISO week), newest period first, and a backup
an earlier rule already kept does not count again, so "7 daily + 4 weekly" reaches about five
weeks back instead of overlapping. The newest backup is always kept. Pure: no files, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, tzinfo


@dataclass(frozen=True)
class Kept:
    name: str
    rule: str  # "newest", "daily 3", "weekly 1"


def _day(ts: datetime) -> tuple[int, ...]:
    return (ts.year, ts.month, ts.day)


def _week(ts: datetime) -> tuple[int, ...]:
    iso = ts.isocalendar()
    return (iso.year, iso.week)


def plan_retention(backups: Iterable[tuple[str, datetime]], *, keep_daily: int,
                   keep_weekly: int, tz: tzinfo) -> tuple[list[Kept], list[str]]:
    """(kept with the rule that kept each, names to delete, oldest first).

    `backups` are (name, creation time, timezone-aware); days and weeks are those of `tz`.
    """
    ordered = sorted(backups, key=lambda b: (b[1], b[0]), reverse=True)
    kept: dict[str, str] = {}
    if ordered:
        kept[ordered[0][0]] = "newest"

    def apply(rule: str, count: int, period: Callable[[datetime], tuple[int, ...]]) -> None:
        taken = 0
        last: tuple[int, ...] | None = None
        for name, ts in ordered:
            if taken >= count:
                return
            key = period(ts.astimezone(tz))
            if key == last:
                continue
            last = key
            if name in kept and kept[name] != "newest":
                continue  # an earlier rule has it; this period is used up without counting
            taken += 1
            kept[name] = f"{rule} {taken}"

    apply("daily", keep_daily, _day)
    apply("weekly", keep_weekly, _week)
    keep_list = [Kept(name, kept[name]) for name, _ in ordered if name in kept]
    delete = [name for name, _ in reversed(ordered) if name not in kept]
    return keep_list, delete
