"""Schedules as pure functions of the current time: cron weekdays, intervals, slots, catch-up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from alfrd_daemon.config.schedule import (
    ANCHOR,
    crontab_weekdays,
    make_trigger,
    missed_slot,
    next_fire,
    parse_schedule,
    previous_fire,
)

BERLIN = ZoneInfo("Europe/Berlin")


@pytest.mark.parametrize(("field", "expected"), [
    ("*", "*"),
    ("0", "sun"),
    ("7", "sun"),
    ("1-5", "mon,tue,wed,thu,fri"),
    ("0-2", "sun,mon,tue"),
    ("5-7", "sun,fri,sat"),
    ("*/2", "sun,tue,thu,sat"),
    ("sat,sun", "sun,sat"),
    ("mon-fri", "mon,tue,wed,thu,fri"),
    ("0-7", "*"),
])
def test_cron_weekdays_follow_crontab_not_apscheduler(field: str, expected: str) -> None:
    assert crontab_weekdays(field) == expected


@pytest.mark.parametrize("field", ["8", "fri-mon", "x", "1/0"])
def test_bad_weekdays_are_rejected(field: str) -> None:
    with pytest.raises(ValueError):
        crontab_weekdays(field)


def test_sunday_cron_fires_on_sunday() -> None:
    # APScheduler 3 alone would read weekday 0 as Monday (its issue 286).
    wednesday = datetime(2025, 1, 8, 12, 0, tzinfo=BERLIN)
    fire = next_fire(parse_schedule("0 5 * * 0"), BERLIN, wednesday)
    assert fire == datetime(2025, 1, 12, 5, 0, tzinfo=BERLIN)
    assert fire.strftime("%A") == "Sunday"


@pytest.mark.parametrize(("value", "cron", "every"), [
    ("0 3 * * *", "0 3 * * *", None),
    ("  0   3 * *   * ", "0 3 * * *", None),
    ("@daily", "0 0 * * *", None),
    ("@weekly", "0 0 * * 0", None),
    ("every 5m", None, 300.0),
    ("every 90s", None, 90.0),
    ("every 6h", None, 21600.0),
    ("every 1d", None, 86400.0),
    (300, None, 300.0),
    (0.5, None, 0.5),
])
def test_parse_schedule(value: object, cron: str | None, every: float | None) -> None:
    s = parse_schedule(value)
    assert (s.cron, s.every) == (cron, every)


@pytest.mark.parametrize("value", ["bogus", "61 * * * *", "0 3 * *", "every", "every 0s",
                                   "every soon", 0, -5, True, "", None])
def test_bad_schedules_say_what_is_expected(value: object) -> None:
    with pytest.raises(ValueError, match="expected a cron expression"):
        parse_schedule(value)


def test_next_and_previous_fire_of_a_daily_cron() -> None:
    daily = parse_schedule("0 3 * * *")
    before = datetime(2025, 6, 10, 2, 59, tzinfo=BERLIN)
    at = datetime(2025, 6, 10, 3, 0, tzinfo=BERLIN)
    after = datetime(2025, 6, 10, 9, 30, tzinfo=BERLIN)
    assert next_fire(daily, BERLIN, before) == at
    assert next_fire(daily, BERLIN, at) == at
    assert next_fire(daily, BERLIN, after) == at + timedelta(days=1)
    assert previous_fire(daily, BERLIN, after) == at
    assert previous_fire(daily, BERLIN, at) == at
    assert previous_fire(daily, BERLIN, before) == at - timedelta(days=1)


def test_previous_fire_of_sparse_crons() -> None:
    now = datetime(2025, 6, 10, 12, 0, tzinfo=UTC)
    assert previous_fire(parse_schedule("0 0 1 1 *"), UTC, now) == datetime(2025, 1, 1,
                                                                           tzinfo=UTC)
    assert previous_fire(parse_schedule("0 0 29 2 *"), UTC, now) == datetime(2024, 2, 29,
                                                                            tzinfo=UTC)
    assert previous_fire(parse_schedule("*/5 * * * *"), UTC, now) == now


def test_intervals_sit_on_one_grid_whoever_computes_them() -> None:
    every = parse_schedule("every 5m")
    now = datetime(2025, 6, 10, 12, 3, 17, tzinfo=UTC)
    assert next_fire(every, UTC, now) == datetime(2025, 6, 10, 12, 5, tzinfo=UTC)
    assert previous_fire(every, UTC, now) == datetime(2025, 6, 10, 12, 0, tzinfo=UTC)
    # The APScheduler trigger the daemon runs agrees with the pure computation, for any
    # start time of the scheduler.
    trigger = make_trigger(every, BERLIN)
    for offset in (0, 7, 299, 301):
        t = now + timedelta(seconds=offset)
        assert trigger.get_next_fire_time(None, t) == next_fire(every, BERLIN, t)
    assert (next_fire(every, UTC, now) - ANCHOR).total_seconds() % 300 == 0


def test_cron_trigger_and_pure_next_fire_agree_across_dst() -> None:
    daily = parse_schedule("30 2 * * *")  # 02:30 does not exist on 2025-03-30 in Berlin
    trigger = make_trigger(daily, BERLIN)
    t = datetime(2025, 3, 28, 12, 0, tzinfo=BERLIN)
    for _ in range(5):
        fire = next_fire(daily, BERLIN, t)
        assert fire == trigger.get_next_fire_time(None, t)
        assert previous_fire(daily, BERLIN, fire) == fire
        t = fire + timedelta(seconds=1)


def test_missed_slot_catches_up_after_a_night_asleep() -> None:
    daily = parse_schedule("0 3 * * *")
    now = datetime(2025, 6, 10, 9, 0, tzinfo=BERLIN)
    today = datetime(2025, 6, 10, 3, 0, tzinfo=BERLIN)
    # Last success yesterday at 03:00: today's 03:00 was missed.
    assert missed_slot(daily, BERLIN, today - timedelta(days=1), now) == today
    # Today's ran (started a few seconds after 03:00): nothing to catch up.
    assert missed_slot(daily, BERLIN, today + timedelta(seconds=4), now) is None
    # Never succeeded, first scheduled yesterday afternoon: today's 03:00 counts as missed.
    assert missed_slot(daily, BERLIN, today - timedelta(hours=13), now) == today
    # First scheduled this morning after 03:00: the first run is tonight's.
    assert missed_slot(daily, BERLIN, today + timedelta(hours=5), now) is None
    # A week away: one catch-up run, for the latest slot.
    assert missed_slot(daily, BERLIN, today - timedelta(days=7), now) == today


# --- day of month and weekday both restricted: cron fires when EITHER matches -----------------
def fires(expression: str, start: datetime, count: int) -> list[datetime]:
    schedule, found, t = parse_schedule(expression), [], start
    for _ in range(count):
        fire = next_fire(schedule, UTC, t)
        assert fire is not None
        found.append(fire)
        t = fire + timedelta(seconds=1)
    return found


def test_day_of_month_or_weekday_fires_on_either() -> None:
    # January 2025: the 1st is a Wednesday, Mondays are the 6th, 13th, 20th, 27th; February
    # 1st is a Saturday.
    got = fires("0 0 1 * 1", datetime(2024, 12, 31, 12, 0, tzinfo=UTC), 7)
    assert got == [datetime(2025, 1, d, tzinfo=UTC) for d in (1, 6, 13, 20, 27)] + [
        datetime(2025, 2, 1, tzinfo=UTC), datetime(2025, 2, 3, tzinfo=UTC)]


def test_day_of_month_or_weekday_previous_fire_and_catch_up() -> None:
    schedule = parse_schedule("30 4 1,15 * 5")  # the 1st, the 15th and every Friday at 04:30
    saturday = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)  # the 1st itself is a Saturday
    assert previous_fire(schedule, UTC, saturday) == datetime(2025, 3, 1, 4, 30, tzinfo=UTC)
    thursday = datetime(2025, 3, 13, 12, 0, tzinfo=UTC)
    assert previous_fire(schedule, UTC, thursday) == datetime(2025, 3, 7, 4, 30, tzinfo=UTC)
    assert next_fire(schedule, UTC, thursday) == datetime(2025, 3, 14, 4, 30, tzinfo=UTC)
    assert missed_slot(schedule, UTC, datetime(2025, 3, 8, tzinfo=UTC), thursday) is None
    assert missed_slot(schedule, UTC, datetime(2025, 3, 6, tzinfo=UTC), thursday) == datetime(
        2025, 3, 7, 4, 30, tzinfo=UTC)


SUMMER_2025 = (datetime(2025, 5, 31, 12, 0, tzinfo=UTC), datetime(2025, 9, 30, tzinfo=UTC))


@pytest.mark.parametrize(("expression", "expected"), [
    # One field left as '*': only the other one restricts.
    ("0 0 1 * *", [(6, 1), (7, 1), (8, 1), (9, 1)]),
    # A field starting with '*' counts as unrestricted, as in cron, so both must match: days
    # 1, 11, 21, 31 that are Mondays; the 1st when it is a Sunday ('*/7' is Sunday only).
    ("0 0 */10 * 1", [(7, 21), (8, 11), (9, 1)]),
    ("0 0 1 * */7", [(6, 1)]),
    # Both restricted: either the 1st or a Sunday (1 June 2025 is both, and fires once).
    ("0 0 1 * 0", [(6, 1), (6, 8), (6, 15), (6, 22), (6, 29), (7, 1), (7, 6), (7, 13),
                   (7, 20), (7, 27), (8, 1), (8, 3), (8, 10), (8, 17), (8, 24), (8, 31),
                   (9, 1), (9, 7), (9, 14), (9, 21), (9, 28)]),
])
def test_a_field_starting_with_a_star_does_not_restrict(
        expression: str, expected: list[tuple[int, int]]) -> None:
    start, end = SUMMER_2025
    schedule, found, t = parse_schedule(expression), [], start
    while (fire := next_fire(schedule, UTC, t)) is not None and fire < end:
        found.append((fire.month, fire.day))
        t = fire + timedelta(seconds=1)
    assert found == expected


def test_the_daemons_trigger_agrees_with_next_fire_for_either_day() -> None:
    schedule = parse_schedule("15 6 13 * 5")  # the 13th, and Fridays
    trigger = make_trigger(schedule, BERLIN)
    t = datetime(2025, 6, 1, tzinfo=BERLIN)
    for _ in range(8):
        fire = next_fire(schedule, BERLIN, t)
        assert fire == trigger.get_next_fire_time(None, t)
        assert fire is not None and (fire.day == 13 or fire.strftime("%a") == "Fri")
        t = fire + timedelta(seconds=1)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), 10**30, 1e-9,
                                   "every 1e400s", "every 400d", "0 0 31 2 *", "0 0 30 2 *"])
def test_hostile_schedules_are_refused(value: object) -> None:
    with pytest.raises(ValueError, match="expected a cron expression"):
        parse_schedule(value)
