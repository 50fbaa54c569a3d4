"""The filters `alfrd search` and `alfrd list` share, as the parameters of the {filters}
fragment in queries.sql (a filter left at None is folded away by the planner)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

_PERIOD = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")


def parse_period(text: str) -> tuple[date, date]:
    """2024 | 2024-03 | 2024-03-05 as [first day, day after the last); ValueError otherwise."""
    m = _PERIOD.match(text.strip())
    if not m:
        raise ValueError("expected a year, year-month or date: 2024, 2024-03 or 2024-03-05")
    year, month, day = int(m[1]), m[2], m[3]
    if year < 1:
        raise ValueError("expected a year from 1 to 9999")
    if month is None:
        return date(year, 1, 1), _next_year(year)
    first = date(year, int(month), int(day) if day else 1)  # ValueError on month 13 or day 31
    if day is not None:
        return first, first + timedelta(days=1) if first < date.max else date.max
    return first, _next_year(year) if first.month == 12 else date(year, first.month + 1, 1)


def _next_year(year: int) -> date:
    if year >= 9999:
        return date.max
    return date(year + 1, 1, 1)


def parse_day(text: str) -> date:
    """One day, YYYY-MM-DD; ValueError otherwise."""
    m = _PERIOD.match(text.strip())
    if not m or m[3] is None:
        raise ValueError("expected a date YYYY-MM-DD")
    return date(int(m[1]), int(m[2]), int(m[3]))


@dataclass(frozen=True)
class Filters:
    """Every filter is optional; all given ones must hold. Trashed documents never match."""

    tags: tuple[str, ...] = ()
    status: str | None = None
    document_type: str | None = None
    correspondent: str | None = None
    period: tuple[date, date] | None = None  # the document's date in [start, end)
    after: date | None = None  # the document's date, else the ingest date, inclusive
    before: date | None = None
    ingested_after: date | None = None  # inclusive, in the session's time zone
    ingested_before: date | None = None

    def params(self) -> dict[str, Any]:
        return {
            "tags": list(self.tags) or None,
            "status": self.status,
            "document_type": self.document_type,
            "correspondent": self.correspondent,
            "date_from": self.period[0] if self.period else None,
            "date_until": self.period[1] if self.period else None,
            "after": self.after,
            "before": self.before,
            "ingested_after": self.ingested_after,
            "ingested_before": self.ingested_before,
        }
