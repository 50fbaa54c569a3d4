"""The document's date, read from text and file names: the forms people print, both orders,
German and English, and the peers' failures (paperless-ngx#3870 a month turned into its first
day, #2933 "Jul 2019" chosen over a full date, paperless-ng#1295 day and month swapped)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from alfrd_daemon.config.parse import ConfigError, parse_settings
from alfrd_daemon.dates import DateOptions, date_document, find_dates
from alfrd_daemon.dates.detect import MAX_SUGGESTIONS

TODAY = dt.date(2026, 6, 15)
DMY = DateOptions(order="DMY")
MDY = DateOptions(order="MDY")
YMD = DateOptions(order="YMD")


def date_of(text: str, options: DateOptions = DMY, filename: str | None = None) -> dt.date | None:
    return find_dates(text, filename, options, TODAY).document_date


@pytest.mark.parametrize("text", [
    "Rechnung vom 5. März 2024",
    "Berlin, den 05. März 2024",
    "Datum: 5.März 2024",
    "MÄRZ 5, 2024",
    "Invoice date: March 5, 2024",
    "Date: Mar. 5th, 2024",
    "due on the 5th of March, 2024",
    "5 Mar 2024",
    "Datum: 05.03.2024",
    "2024-03-05",
    "Erstellt 2024/03/05",
    "Stand 5. Mär. 2024",
    "Ma\u0308rz 5, 2024",  # decomposed umlaut (macOS names, some OCR output)
])
def test_the_printed_forms_read_as_the_same_day(text: str) -> None:
    assert date_of(text) == dt.date(2024, 3, 5)
    assert date_of(text, MDY) == dt.date(2024, 3, 5)


def test_an_ambiguous_slashed_date_follows_the_configured_order() -> None:
    assert date_of("3/5/2024", DMY) == dt.date(2024, 5, 3)
    assert date_of("3/5/2024", MDY) == dt.date(2024, 3, 5)
    assert date_of("03-05-2024", MDY) == dt.date(2024, 3, 5)
    # YMD says nothing about a year-last date: day first, as most of the world writes it.
    assert date_of("3/5/2024", YMD) == dt.date(2024, 5, 3)


def test_day_and_month_are_never_swapped_1295() -> None:
    # The dotted form is day first wherever it is written, whatever dates.order says.
    for options in (DMY, MDY, YMD):
        assert date_of("Datum 05.03.2024", options) == dt.date(2024, 3, 5)
        assert date_of("Datum 01.02.2021", options) == dt.date(2021, 2, 1)
    # A number above 12 settles the order against the configured one.
    assert date_of("13/03/2024", MDY) == dt.date(2024, 3, 13)
    assert date_of("03/13/2024", DMY) == dt.date(2024, 3, 13)
    assert date_of("13/13/2024") is None
    # Year first is year-month-day.
    assert date_of("2024-03-05", MDY) == dt.date(2024, 3, 5)


def test_two_digit_years() -> None:
    assert date_of("am 31.12.99") == dt.date(1999, 12, 31)
    assert date_of("am 05.03.24") == dt.date(2024, 3, 5)


def test_a_month_alone_is_never_made_a_day_3870() -> None:
    result = find_dates("Kontoauszug Juli 2019", None, DMY, TODAY)
    assert result.document_date is None
    [month] = result.suggestions
    assert month.as_json() == {"date": "2019-07", "precision": "month", "text": "Juli 2019",
                               "source": "text", "offset": 12}


def test_a_month_next_to_a_full_date_ranks_below_it_2933() -> None:
    result = find_dates("Statement period Jul 2019\nIssued 15.08.2019", None, DMY, TODAY)
    assert result.document_date == dt.date(2019, 8, 15)
    assert [s.shown() for s in result.suggestions] == ["2019-07"]
    assert result.found is not None and result.found.text == "15.08.2019"


def test_a_full_written_date_is_not_cut_to_its_month() -> None:
    assert date_of("Jul 5, 2019") == dt.date(2019, 7, 5)
    assert date_of("5. Juli 2019") == dt.date(2019, 7, 5)


def test_future_and_pre_1900_dates_are_rejected() -> None:
    text = "valid until 31.12.2030, founded 01.01.1850, signed 01.06.2026, dated 14.06.2026"
    result = find_dates(text, None, DMY, TODAY)
    assert result.document_date == dt.date(2026, 6, 1)
    assert [s.shown() for s in result.suggestions] == ["2026-06-14"]
    assert date_of("Juli 2026") is None and date_of("Dezember 2026") is None
    assert find_dates("Juni 2026", None, DMY, TODAY).suggestions[0].shown() == "2026-06"
    assert date_of("16.06.2026") is None  # tomorrow


def test_numbers_that_are_no_dates() -> None:
    for text in ("version v1.2.2024", "IBAN DE12 3456 7890 1234 5678 90", "Betrag 1.234,56",
                 "Rechnungsnummer 20240305", "ip 10.1.2.2024", "112.03.20245", "Mailand 2024",
                 "31.02.2024"):
        result = find_dates(text, None, DMY, TODAY)
        assert result.document_date is None and not result.suggestions, text


def test_the_first_full_date_wins_and_up_to_five_more_are_suggested() -> None:
    text = " ".join(f"{d:02d}.01.2020" for d in range(1, 12)) + " 01.01.2020"
    result = find_dates(text, None, DMY, TODAY)
    assert result.document_date == dt.date(2020, 1, 1)
    assert [s.shown() for s in result.suggestions] == [
        f"2020-01-{d:02d}" for d in range(2, 2 + MAX_SUGGESTIONS)]
    meta = result.metadata()
    assert meta["date_found"]["date"] == "2020-01-01"
    assert len(meta["date_suggestions"]) == MAX_SUGGESTIONS


@pytest.mark.parametrize(("name", "expected"), [
    ("2024-03-05_invoice.pdf", dt.date(2024, 3, 5)),
    ("IMG_20240305_101500.jpg", dt.date(2024, 3, 5)),
    ("scan_2024_03_05.pdf", dt.date(2024, 3, 5)),
    ("Rechnung_05.03.2024.pdf", dt.date(2024, 3, 5)),
    ("Brief 5. März 2024.docx", dt.date(2024, 3, 5)),
    ("05_Maerz_2024.txt", None),  # not a month name dateparser knows
    ("invoice.pdf", None),
])
def test_dates_in_file_names(name: str, expected: dt.date | None) -> None:
    assert date_of("", filename=name) == expected


def test_the_text_comes_before_the_file_name_unless_configured() -> None:
    text, name = "Datum: 01.02.2023", "2024-03-05_scan.pdf"
    fallback = find_dates(text, name, DMY, TODAY)
    assert fallback.document_date == dt.date(2023, 2, 1)
    assert [(s.shown(), s.source) for s in fallback.suggestions] == [("2024-03-05", "filename")]
    first = DateOptions(filename="first")
    assert date_of(text, first, name) == dt.date(2024, 3, 5)
    off = DateOptions(filename="off")
    assert date_of("", off, name) is None
    # A full date in the file name beats a month in the text.
    assert date_of("Juli 2019", DMY, name) == dt.date(2024, 3, 5)


def test_only_the_first_max_chars_are_scanned() -> None:
    text = "x" * 100 + " 05.03.2024"
    assert date_of(text, DateOptions(max_chars=100)) is None
    assert date_of(text, DateOptions(max_chars=200)) == dt.date(2024, 3, 5)


def test_languages_decide_which_month_names_count() -> None:
    english = DateOptions(languages=("en",))
    assert date_of("5. März 2024", english) is None
    assert date_of("5 March 2024", english) == dt.date(2024, 3, 5)
    french = DateOptions(languages=("fr",))
    assert date_of("le 5 mars 2024", french) == dt.date(2024, 3, 5)


def test_nothing_found_in_nothing() -> None:
    assert find_dates(None, None, DMY, TODAY).metadata() == {"date_found": None,
                                                             "date_suggestions": []}
    assert date_of("\x00\ufffd" * 50) is None


def _problem(dates: object) -> str:
    with pytest.raises(ConfigError) as err:
        parse_settings({"dates": dates}, source="t.yaml", base_dir=Path("/srv"))
    [line] = err.value.problems
    return line


def test_the_dates_section_is_read_and_checked() -> None:
    s = parse_settings({"dates": {"order": "mdy", "languages": ["de", "fr", "de"],
                                  "max_chars": 5000, "filename": "first", "enabled": False}},
                       source="t.yaml", base_dir=Path("/srv"))
    assert (s.dates.order, s.dates.languages, s.dates.max_chars, s.dates.filename,
            s.dates.enabled) == ("MDY", ("de", "fr"), 5000, "first", False)
    assert parse_settings({}, source="t", base_dir=Path("/srv")).dates.order == "DMY"
    assert _problem({"order": "DDMMYY"}).startswith("At 'dates.order': got 'DDMMYY', expected "
                                                    "one of DMY, MDY, YMD")
    assert "dateparser language codes" in _problem({"languages": ["eng"]})
    assert "dateparser language codes" in _problem({"languages": []})
    assert _problem({"max_chars": 10}).startswith("At 'dates.max_chars': got 10")
    assert _problem({"filename": "last"}).startswith("At 'dates.filename': got 'last'")
    assert "unknown setting" in _problem({"oder": "DMY"})


def test_switched_off_nothing_is_read() -> None:
    on = parse_settings({}, source="t", base_dir=Path("/srv")).dates
    off = parse_settings({"dates": {"enabled": False}}, source="t", base_dir=Path("/srv")).dates
    assert date_document(off, "am 05.03.2024", "x.txt", TODAY) is None
    dated = date_document(on, "am 05.03.2024", "x.txt", TODAY)
    assert dated is not None and dated.document_date == dt.date(2024, 3, 5)


@pytest.mark.parametrize(("text", "expected"), [
    ("am 5.3.2024", dt.date(2024, 3, 5)),
    ("Sept. 5, 2024", dt.date(2024, 9, 5)),
    ("Stand: 1. Januar 2024", dt.date(2024, 1, 1)),
    ("Seite 1 2024 und 3. Mai 2024", dt.date(2024, 5, 3)),  # a word that is no month, first
    ("2024-3-5", dt.date(2024, 3, 5)),
    ("dated 29 February 2023", None),  # no such day
    ("dated 29 February 2024", dt.date(2024, 2, 29)),
])
def test_more_forms(text: str, expected: dt.date | None) -> None:
    assert date_of(text) == expected


def test_a_month_in_the_text_and_the_same_day_written_out() -> None:
    result = find_dates("Abrechnung Juli 2019 vom 5. Juli 2019", None, DMY, TODAY)
    assert result.document_date == dt.date(2019, 7, 5)
    assert [(s.shown(), s.precision) for s in result.suggestions] == [("2019-07", "month")]


def test_a_date_repeated_on_every_page_counts_once() -> None:
    text = "Stand Januar 2024. " * 20 + "Februar 2024, März 2024"
    result = find_dates(text, None, DMY, TODAY)
    assert [s.shown() for s in result.suggestions] == ["2024-01", "2024-02", "2024-03"]


def _whole_text_scan(text: str, filename: bool) -> list[tuple[int, int]]:
    """What _candidates did before it searched windows: the pattern tried at every position
    (after a match its end, after a rejected word the next character)."""
    from alfrd_daemon.dates.detect import _candidate
    from alfrd_daemon.dates.patterns import compiled

    pattern, pos, spans = compiled(filename=filename), 0, []
    while pos < len(text):
        m = pattern.search(text, pos)
        if m is None:
            break
        if _candidate(m, DMY) is None:
            pos = m.start() + 1
            continue
        spans.append(m.span())
        pos = m.end()
    return spans


_PIECES = ["5. März 2024", "March 5th, 2024", "5th of March, 2024", "Mar.\t\t\t 5,   2024",
           "Juli 2019", "05.03.2024", "2024-03-05", "3/5/24", "12.03.20245", "v1.2.2024",
           "1.2.3.4", "IMG_20240305_1015", "2024_03_05", "Rechnung5. März 2024", "\u0665\u0660",
           "Seite 1 2024", "of", "_", " ", "  \n  ", ".", ",", "-", "/", "Mai", "September",
           "noword", "31. April 2024", "7", "19", "2023", "x" * 30, " " * 40, "März" + " " * 40
           + "2024", "5." + "_" * 30 + "Mai 2024",
           # the longest reach from a start to its first digits (15 characters that are no
           # gap), the longest forms, and what may follow a date
           "September., 2024", "Sept.\t ,\t 2024", "25th. of September., 2024",
           "12th.\t of \t September.,\t\t 2024",
           "12.03.2024.5", "2024-03-05-1", "05.03.2024,7", "5.3.24/9"]


@pytest.mark.parametrize("seed", range(40))
def test_searching_windows_finds_what_a_scan_of_the_whole_text_finds(seed: int) -> None:
    """The scan only searches near runs of digits (dates.patterns.candidate_windows); on
    random jumbles of dates, near-dates, gaps of any length and words it finds the same
    candidates, in the same order, as trying the pattern at every position."""
    import random

    from alfrd_daemon.dates.detect import _candidates

    rng = random.Random(seed)
    text = "".join(rng.choice(_PIECES) + rng.choice(["", " ", "\n", "_", ". "])
                   for _ in range(rng.randrange(1, 60)))
    for filename in (False, True):
        found = [(c.offset, c.offset + len(c.shown))
                 for c in _candidates(text, filename, DMY)]
        assert found == _whole_text_scan(text, filename), text
