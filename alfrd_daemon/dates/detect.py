"""Choosing the document's date: every candidate in the text (its first dates.max_chars
characters) and in the file name, read, checked and ranked.

Ranking: full dates before dates that name only a month (a "Jul 2019" next to "15.08.2019"
never wins, paperless-ngx#2933); among full dates, the text's first, then the file name's
(or the file name's first, with dates.filename: first). The first full date is the
document's date; up to MAX_SUGGESTIONS others are kept as suggestions. A month alone is
never turned into a day (paperless-ngx#3870): it stays a suggestion of precision "month".

Day and month are never swapped (paperless-ng#1295): a number above 12 settles the order;
dotted dates (05.03.2024) are day first wherever they are written; year-first dates are
year-month-day; only the remaining ambiguous forms (3/5/2024) follow dates.order."""

from __future__ import annotations

import calendar
import datetime as dt
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from alfrd_daemon.dates.parsing import parse_day, parse_month
from alfrd_daemon.dates.patterns import candidate_windows, compiled, month_of

MAX_SUGGESTIONS = 5
# Candidates read per source, so that a text of a thousand dates that are none costs no
# more: numeric ones cost dateparser some 30 µs each, written ones (its full parser) ~1 ms.
MAX_PARSES = 64
MAX_WRITTEN_PARSES = 16
MIN_YEAR = 1900


@dataclass(frozen=True)
class DateOptions:
    order: str = "DMY"
    languages: tuple[str, ...] = ("en", "de")
    max_chars: int = 20_000
    filename: str = "fallback"


class DatesConfig(Protocol):
    """The dates section of the settings (config.settings.DatesSettings), as this package,
    which sits below config, sees it."""

    @property
    def enabled(self) -> bool: ...
    @property
    def order(self) -> str: ...
    @property
    def languages(self) -> tuple[str, ...]: ...
    @property
    def max_chars(self) -> int: ...
    @property
    def filename(self) -> str: ...


@dataclass(frozen=True)
class Found:
    """One date read from the document: `value` is the day, or the month's first day when
    `precision` is "month"; `text` is what was printed; `offset` where (in the text or the
    file name, as `source` says)."""

    value: dt.date
    precision: str
    text: str
    source: str
    offset: int

    def shown(self) -> str:
        return self.value.isoformat() if self.precision == "day" else self.value.strftime("%Y-%m")

    def as_json(self) -> dict[str, Any]:
        return {"date": self.shown(), "precision": self.precision, "text": self.text,
                "source": self.source, "offset": self.offset}


@dataclass(frozen=True)
class DateResult:
    found: Found | None = None
    suggestions: tuple[Found, ...] = field(default_factory=tuple)

    @property
    def document_date(self) -> dt.date | None:
        return self.found.value if self.found is not None else None

    def metadata(self) -> dict[str, Any]:
        """What documents.metadata records of the detection (`alfrd show` prints it)."""
        return {"date_found": self.found.as_json() if self.found is not None else None,
                "date_suggestions": [s.as_json() for s in self.suggestions]}


@dataclass(frozen=True)
class _Candidate:
    text: str  # what dateparser reads
    shown: str  # what the document says
    offset: int
    precision: str
    order: str
    expect: tuple[int | None, int | None]  # (day, month) the numbers say, to check the parse
    # A numeric date's exact format: dateparser reads it with strptime, some seventy times
    # faster than its general parser (which written dates, "5. März 2024", need).
    fmt: str | None = None
    languages: tuple[str, ...] = ()  # a written date's: those its month name is in
    year: int | None = None  # as printed, when it has four digits


def date_document(config: DatesConfig, text: str | None, filename: str | None,
                  today: dt.date) -> DateResult | None:
    """The dates of one document under the configured settings; None when detection is off."""
    if not config.enabled:
        return None
    options = DateOptions(order=config.order, languages=tuple(config.languages),
                          max_chars=config.max_chars, filename=config.filename)
    return find_dates(text, filename, options, today)


def find_dates(text: str | None, filename: str | None, options: DateOptions,
               today: dt.date) -> DateResult:
    sources: list[list[Found]] = []
    if text:
        sources.append(_read(_normal(text[: options.max_chars]), "text", options, today))
    if filename and options.filename != "off":
        named = _read(_normal(_stem(filename)), "filename", options, today)
        sources.insert(0 if options.filename == "first" else len(sources), named)
    days = [f for found in sources for f in found if f.precision == "day"]
    months = [f for found in sources for f in found if f.precision == "month"]
    ranked: list[Found] = []
    seen: set[tuple[dt.date, str]] = set()
    for f in days + months:
        if (f.value, f.precision) not in seen:
            seen.add((f.value, f.precision))
            ranked.append(f)
    if not days:
        return DateResult(None, tuple(ranked[:MAX_SUGGESTIONS]))
    return DateResult(ranked[0], tuple(ranked[1: 1 + MAX_SUGGESTIONS]))


def _normal(text: str) -> str:
    # NFC keeps offsets of composed text and lets "Ma\u0308rz" (macOS, some OCR) match März.
    return unicodedata.normalize("NFC", text)


def _stem(name: str) -> str:
    base, dot, suffix = name.rpartition(".")
    return base if dot and base and 0 < len(suffix) <= 5 and not suffix.isdigit() else name


def _read(text: str, source: str, options: DateOptions, today: dt.date) -> list[Found]:
    found: list[Found] = []
    parsed: dict[tuple[str, str, str], dt.date | None] = {}
    budget = {"numeric": MAX_PARSES, "written": MAX_WRITTEN_PARSES}
    kept = {"day": 0, "month": 0}
    seen: set[tuple[dt.date, str]] = set()
    for cand in _candidates(text, source == "filename", options):
        if cand.year is not None and not MIN_YEAR <= cand.year <= today.year:
            continue  # rejected before any parsing: a text of far-future dates costs nothing
        if kept[cand.precision] > MAX_SUGGESTIONS:
            continue  # the first and five more of each precision: later ones never show
        key = (cand.text, cand.order, cand.precision)
        if key not in parsed:
            kind = "written" if cand.languages else "numeric"
            if budget[kind] == 0:
                continue
            budget[kind] -= 1
            parsed[key] = _parse(cand, cand.languages or tuple(options.languages))
        value = parsed[key]
        if value is None or value.year < MIN_YEAR:
            continue
        if value > today or (cand.precision == "month" and value > today.replace(day=1)):
            continue
        if (value, cand.precision) in seen:
            continue  # the same date again ("Januar 2024" on every page) counts once
        seen.add((value, cand.precision))
        found.append(Found(value, cand.precision, cand.shown, source, cand.offset))
        kept[cand.precision] += 1
        if kept["day"] > MAX_SUGGESTIONS and kept["month"] > MAX_SUGGESTIONS:
            break
    return found


def _parse(cand: _Candidate, languages: tuple[str, ...]) -> dt.date | None:
    day, month = cand.expect
    if cand.precision == "month":
        value = parse_month(cand.text, cand.order, languages)
        return value if value is not None and value.month == month else None
    value = parse_day(cand.text, cand.order, languages, cand.fmt)
    if value is None or (day is not None and value.day != day) or (
            month is not None and value.month != month):
        return None  # dateparser read the numbers otherwise than they stand: not trusted
    return value


def _candidates(text: str, filename: bool, options: DateOptions) -> Iterator[_Candidate]:
    pattern = compiled(filename=filename)
    for start, end in candidate_windows(text):
        pos = start
        while pos < end:
            m = pattern.search(text, pos, end)
            if m is None:
                break
            cand = _candidate(m, options)
            if cand is None:
                # Not a date after all (a word that is no month): a date may start inside it.
                pos = m.start() + 1
                continue
            pos = m.end()
            yield cand


def _candidate(m: re.Match[str], options: DateOptions) -> _Candidate | None:
    g = m.groupdict()
    shown = m.group(0)
    at = m.start()
    if g["dmy_w"] or g["mdy_w"] or g["month_w"]:
        # dateparser reads it in the languages its month name belongs to (trying every
        # configured language costs it nearly twice as much); what the text says (the day,
        # the month its name means) checks the reading.
        named = month_of(g["mon1"] or g["mon2"] or g["mon3"], tuple(options.languages))
        if named is None:
            return None
        month, langs = named
        year = int(g["wy1"] or g["wy2"] or g["wy3"])
        if g["month_w"]:
            order = "DMY" if options.order == "YMD" else options.order
            return _Candidate(shown, shown, at, "month", order, (None, month),
                              languages=langs, year=year)
        day = int(g["wd1"] or g["wd2"])
        if day > calendar.monthrange(year, month)[1]:
            return None  # "31. April": no date, and no call of the parser to learn it
        return _Candidate(shown, shown, at, "day", "DMY" if g["dmy_w"] else "MDY",
                          (day, month), languages=langs, year=year)
    if g["ymd"]:
        return _Candidate(shown, shown, at, "day", "YMD", (int(g["d1"]), int(g["m1"])),
                          f"%Y{g['s1']}%m{g['s1']}%d", year=int(g["y"]))
    if g["xxy"]:
        a, b = int(g["a"]), int(g["b"])
        day_first = _day_first(a, b, g["s2"], options.order)
        if day_first is None:
            return None
        day, month = (a, b) if day_first else (b, a)
        sep = g["s2"]
        digits = "%Y" if len(g["y2"]) == 4 else "%y"
        fmt = f"%d{sep}%m{sep}{digits}" if day_first else f"%m{sep}%d{sep}{digits}"
        return _Candidate(shown, shown, at, "day", "DMY" if day_first else "MDY",
                          (day, month), fmt, year=int(g["y2"]) if len(g["y2"]) == 4 else None)
    if g.get("compact"):
        y, mo, d = g["cy"], g["cm"], g["cd"]
        return _Candidate(f"{y}-{mo}-{d}", shown, at, "day", "YMD", (int(d), int(mo)),
                          "%Y-%m-%d", year=int(y))
    if g.get("under"):
        y, mo, d = g["uy"], g["um"], g["ud"]
        return _Candidate(f"{y}-{mo}-{d}", shown, at, "day", "YMD", (int(d), int(mo)),
                          "%Y-%m-%d", year=int(y))
    return None


def _day_first(a: int, b: int, sep: str, order: str) -> bool | None:
    """Whether a year-last date a/b/y reads day first; None when neither order is a date."""
    if a > 12 and b > 12:
        return None
    if a > 12 or b > 12:
        return a > 12
    if sep == ".":
        return True
    return order != "MDY"  # YMD says nothing about a year-last date; day first is the norm
