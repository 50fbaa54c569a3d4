"""dateparser, called only on the substrings the patterns found, with one parser per
(order, languages, precision) built once: a parser keeps its loaded locales, so after the
first call a written date costs it well under a millisecond, and a numeric one, whose exact
format is passed along, a few tens of microseconds."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

DAY_PARTS = ("day", "month", "year")
MONTH_PARTS = ("month", "year")


@functools.lru_cache(maxsize=32)
def _parser(order: str, languages: tuple[str, ...], parts: tuple[str, ...]) -> Any:
    from dateparser.date import DateDataParser

    settings = {
        "DATE_ORDER": order,
        # REQUIRE_PARTS makes a month alone ("Jul 2019") unreadable as a day, and
        # PREFER_DAY_OF_MONTH only fills the day of a month-precision reading, which is
        # reported as a month, never as its first (paperless-ngx#3870).
        "REQUIRE_PARTS": list(parts),
        "PREFER_DAY_OF_MONTH": "first",
        "PREFER_LOCALE_DATE_ORDER": False,  # dates.order decides, not the detected locale
        "RETURN_AS_TIMEZONE_AWARE": False,
        "STRICT_PARSING": False,
    }
    return DateDataParser(languages=list(languages), settings=settings,
                          try_previous_locales=False)


# The same strings recur across an archive ("Januar 2024", "31.12.2023"): a reading is kept
# for the next document. Keys are short strings; 4096 of them are a few hundred KB.
@functools.lru_cache(maxsize=4096)
def parse_day(text: str, order: str, languages: tuple[str, ...],
              fmt: str | None = None) -> dt.date | None:
    """A full date (day, month and year) read from `text` (in the strptime format `fmt`,
    when it is known), or None."""
    got = _call(_parser(order, languages, DAY_PARTS), text, fmt)
    if got is None or got[1] != "day":
        return None
    return got[0]


@functools.lru_cache(maxsize=4096)
def parse_month(text: str, order: str, languages: tuple[str, ...]) -> dt.date | None:
    """The first of the month `text` names ("Jul 2019", "Juli 2019"), or None."""
    got = _call(_parser(order, languages, MONTH_PARTS), text)
    if got is None or got[1] != "month":
        return None
    return got[0].replace(day=1)


def _call(parser: Any, text: str, fmt: str | None = None) -> tuple[dt.date, str] | None:
    try:
        data = parser.get_date_data(text, date_formats=[fmt] if fmt else None)
    except (ValueError, OverflowError, KeyError, TypeError):  # a parser bug is no date
        return None
    if data is None or data.date_obj is None:
        return None
    return data.date_obj.date(), str(data.period or "day")
