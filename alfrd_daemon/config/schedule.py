"""When jobs run: cron expressions and fixed intervals, as APScheduler triggers and as pure
functions of the current time (so schedule logic is tested without sleeping).

Three decisions live here:
- Crontab weekdays follow cron (0 and 7 = Sunday). APScheduler 3 numbers Monday 0 (its issue
  286), so the weekday field is translated into day names before it reaches APScheduler.
- A line restricting both day of month and weekday (`0 0 1 * 1`) fires when EITHER matches, as
  cron does; APScheduler's CronTrigger requires both, so such a line becomes two triggers (one
  per field) whose earliest fire time wins.
- Intervals are anchored to a fixed instant instead of the scheduler's start, so every daemon
  on a database computes the same fire times and the same slot for a run; that is what lets
  the database recognise a slot another daemon has already served.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# A Monday, midnight UTC: "every 1d" fires at 00:00 UTC, "every 7d" on Mondays.
ANCHOR = datetime(2000, 1, 3, tzinfo=UTC)

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d|w)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {None: 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400,
                 "w": 7 * 86400}
SCHEDULE_EXPECTED = ("a cron expression such as '0 3 * * *' (minute hour day month weekday, "
                     "0 = Sunday) or an interval such as 'every 6h' or 300 (seconds)")
# How far back previous_fire looks before giving up (a 29 February cron fires every 4 years).
_MAX_LOOKBACK = timedelta(days=8 * 366)
# Intervals: short enough to test with, long enough that timedelta and the scheduler cope.
MIN_INTERVAL = 0.1
MAX_INTERVAL = 366 * 86400.0


@dataclass(frozen=True)
class Schedule:
    """Exactly one of `cron` (standard crontab fields) and `every` (seconds) is set."""

    cron: str | None = None
    every: float | None = None

    def __post_init__(self) -> None:
        if (self.cron is None) == (self.every is None):
            raise ValueError("a schedule is either a cron expression or an interval")

    def describe(self) -> str:
        if self.cron is not None:
            return f"cron '{self.cron}'"
        assert self.every is not None
        return f"every {format_duration(self.every)}"


def cron(expression: str) -> Schedule:
    return Schedule(cron=expression)


def every(seconds: float) -> Schedule:
    return Schedule(every=float(seconds))


def format_duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def parse_duration(value: object) -> float:
    """300, '90s', '5m', '6h', '1d', '2w' → seconds, from MIN_INTERVAL to MAX_INTERVAL (NaN and
    infinities are outside every range)."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 300, '5m' or '6h'")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION_RE.match(str(value))
        if not m:
            raise ValueError("expected a duration such as 300, '5m' or '6h'")
        unit = m.group(2).lower() if m.group(2) else None
        seconds = float(m.group(1)) * _UNIT_SECONDS[unit]
    if not MIN_INTERVAL <= seconds <= MAX_INTERVAL:
        raise ValueError(f"expected a duration from {MIN_INTERVAL:g} s to "
                         f"{format_duration(MAX_INTERVAL)}")
    return seconds


def parse_schedule(value: object) -> Schedule:
    """A cron string, '@daily'-style macro, 'every <duration>', or a number of seconds.
    Raises ValueError whose text says what was expected."""
    if isinstance(value, bool):
        raise ValueError(f"expected {SCHEDULE_EXPECTED}")
    if isinstance(value, int | float):
        try:
            return every(parse_duration(value))
        except ValueError as exc:
            raise ValueError(f"expected {SCHEDULE_EXPECTED} ({_detail(exc)})") from None
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected {SCHEDULE_EXPECTED}")
    text = " ".join(value.split())
    if text.lower().startswith("every "):
        try:
            return every(parse_duration(text[6:]))
        except ValueError as exc:
            raise ValueError(f"expected {SCHEDULE_EXPECTED} ({_detail(exc)})") from None
    expression = _MACROS.get(text.lower(), text)
    try:
        trigger = _cron_trigger(expression, UTC)
    except ValueError as exc:
        raise ValueError(f"expected {SCHEDULE_EXPECTED} ({exc})") from None
    if trigger.get_next_fire_time(None, ANCHOR) is None:  # e.g. '0 0 31 2 *'
        raise ValueError(f"expected {SCHEDULE_EXPECTED} (this line never fires)")
    return cron(expression)


def _detail(exc: ValueError) -> str:
    return str(exc).removeprefix("expected ")


def crontab_weekdays(field: str) -> str:
    """Cron's weekday field (0-7, 0 and 7 = Sunday, names, ranges, steps, lists) → an explicit
    list of day names, which APScheduler 3 reads the same way cron does."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for item in field.lower().split(","):
        spec, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1 or (step_text and not step_text.isdigit()):
            raise ValueError(f"bad weekday step in {field!r}")
        if spec == "*":
            first, last = 0, 6
        elif "-" in spec:
            a, b = spec.split("-", 1)
            first, last = _weekday(a), _weekday(b, end=True)
            if first > last:
                raise ValueError(f"weekday range {spec!r} runs backwards")
        else:
            first = last = _weekday(spec)
            if step_text:  # "1/2" means from Monday on, every second day
                last = 6
        days.update(d % 7 for d in range(first, last + 1, step))
    if len(days) == 7:
        return "*"
    return ",".join(_DAY_NAMES[d] for d in sorted(days))


def _weekday(token: str, end: bool = False) -> int:
    if token in _DAY_NAMES:
        return _DAY_NAMES.index(token)
    if token.isdigit() and 0 <= int(token) <= 7:
        day = int(token)
        return day if end or day != 7 else 0
    raise ValueError(f"unknown weekday {token!r} (0-7 or sun-sat)")


def restricts(field: str) -> bool:
    """Whether a day field limits the days, the way cron decides it: a field that starts with
    '*' does not (so '*/2' counts as unrestricted, as in Vixie cron and cronie)."""
    return not field.startswith("*")


def _cron_trigger(expression: str, tz: tzinfo) -> Any:
    from apscheduler.triggers.combining import OrTrigger  # type: ignore[import-untyped]
    from apscheduler.triggers.cron import CronTrigger  # type: ignore[import-untyped]

    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"{len(fields)} fields, a crontab line has 5")
    minute, hour, day, month, weekday = fields
    weekdays = crontab_weekdays(weekday)

    def trigger(day: str, day_of_week: str) -> Any:
        return CronTrigger(minute=minute, hour=hour, day=day, month=month,
                           day_of_week=day_of_week, timezone=tz)

    if restricts(day) and restricts(weekday):
        return OrTrigger([trigger(day, "*"), trigger("*", weekdays)])
    return trigger(day, weekdays)


def make_trigger(schedule: Schedule, tz: tzinfo) -> Any:
    """The APScheduler trigger for a schedule (cron in `tz`, intervals on the fixed grid)."""
    if schedule.cron is not None:
        return _cron_trigger(schedule.cron, tz)
    from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

    assert schedule.every is not None
    return IntervalTrigger(seconds=schedule.every, start_date=ANCHOR.astimezone(tz),
                           timezone=tz)


def next_fire(schedule: Schedule, tz: tzinfo, now: datetime) -> datetime | None:
    """The first fire time at or after `now`."""
    if schedule.every is not None:
        steps = math.ceil((now - ANCHOR).total_seconds() / schedule.every)
        return (ANCHOR + timedelta(seconds=steps * schedule.every)).astimezone(tz)
    result: datetime | None = make_trigger(schedule, tz).get_next_fire_time(None, now)
    return result


def previous_fire(schedule: Schedule, tz: tzinfo, now: datetime) -> datetime | None:
    """The last fire time at or before `now`: the slot a run starting now belongs to."""
    if schedule.every is not None:
        steps = math.floor((now - ANCHOR).total_seconds() / schedule.every)
        return (ANCHOR + timedelta(seconds=steps * schedule.every)).astimezone(tz)
    trigger = make_trigger(schedule, tz)
    first = trigger.get_next_fire_time(None, now)
    second = trigger.get_next_fire_time(None, first + timedelta(seconds=1)) if first else None
    window = max(timedelta(minutes=2), 2 * (second - first)) if first and second else (
        timedelta(days=1))
    while window <= _MAX_LOOKBACK:
        found = trigger.get_next_fire_time(None, now - window)
        if found is not None and found <= now:
            while True:
                following = trigger.get_next_fire_time(None, found + timedelta(seconds=1))
                if following is None or following > now:
                    return found  # type: ignore[no-any-return]
                found = following
        window *= 2
    return None


def missed_slot(schedule: Schedule, tz: tzinfo, reference: datetime,
                now: datetime) -> datetime | None:
    """The slot to catch up on at start-up: the latest fire time after `reference` (the start
    of the last successful run, or when the job was first scheduled) and not after `now`."""
    slot = previous_fire(schedule, tz, now)
    if slot is not None and slot > reference:
        return slot
    return None


def resolve_timezone(name: str) -> tzinfo:
    """'local' (the host's zone, as APScheduler itself would pick), 'UTC', or an IANA name."""
    if name == "local":
        from tzlocal import get_localzone

        return get_localzone()
    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError("expected 'local', 'UTC' or a time zone name such as "
                         "Europe/Berlin") from None
