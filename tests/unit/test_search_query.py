"""What `alfrd search` makes of typed text, its date filters and its snippets (no database;
tests/integration/test_search.py sends the same text to PostgreSQL)."""

from __future__ import annotations

from datetime import date

import pytest

from alfrd_daemon.db.search_filters import Filters, parse_day, parse_period
from alfrd_daemon.db.search_query import Term, parse_terms, quote_lexeme, to_tsquery_text
from alfrd_daemon.db.snippet import START, STOP, make_snippet

HOSTILE = ['"', "-", "--", "-\"", "a & | !", "(((", ")", "café OR", "OR", "or or", ":*", "",
           "   ", "'", "''", "\\", "\\'", "it's", "foo:*", "a<->b", "!!x", "x&y|z", "\x00nul",
           "\ud800lone", "日本語 検索", "emoji 🧾 receipt", '"unclosed phrase', '-"',
           "ab\\\\'cd", "a:b:c", "*", "-or", "or -x"]


def test_every_word_is_a_prefix_and_short_words_are_exact() -> None:
    assert to_tsquery_text("invoic") == "'invoic':*"
    assert to_tsquery_text("gas bill") == "'gas':* & 'bill':*"
    assert to_tsquery_text("tv bill") == "'tv' & 'bill':*"


def test_quotes_make_an_exact_phrase_and_a_minus_excludes() -> None:
    assert to_tsquery_text('"gas bill" -water') == "'gas bill' & !'water':*"
    assert to_tsquery_text('-"final notice" rent') == "!'final notice' & 'rent':*"
    assert to_tsquery_text('"open end') == "'open end'"


def test_or_joins_its_neighbours_and_binds_looser_than_and() -> None:
    assert to_tsquery_text("rent gas or water") == "'rent':* & ('gas':* | 'water':*)"
    assert to_tsquery_text("or rent") == "'rent':*"  # nothing on its left: ignored
    assert to_tsquery_text("rent or") == "'rent':*"
    assert to_tsquery_text("a OR b or c") == "('a' | 'b' | 'c')"


def test_punctuation_only_terms_drop_out() -> None:
    assert parse_terms('- " :* (( ') == []
    assert to_tsquery_text("&&& | !") == ""


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_text_only_ever_yields_quoted_pieces(text: str) -> None:
    out = to_tsquery_text(text)
    assert "\x00" not in out
    out.encode("utf-8")  # sendable
    # Outside the quoted pieces, only the operators this module writes.
    rest, i, inside = [], 0, False
    while i < len(out):
        ch = out[i]
        if inside and ch == "\\":
            i += 2
            continue
        if ch == "'":
            inside = not inside
        elif not inside:
            rest.append(ch)
        i += 1
    assert not inside, out
    assert set("".join(rest)) <= set("&|!():* "), out


def test_quoting_escapes_backslashes_and_quotes() -> None:
    assert quote_lexeme("it's") == "'it\\'s'"
    assert quote_lexeme("a\\b") == "'a\\\\b'"
    assert Term("ab").prefix is False and Term("abc").prefix is True
    assert Term("abc", phrase=True).prefix is False


@pytest.mark.parametrize("text, period", [
    ("2024", (date(2024, 1, 1), date(2025, 1, 1))),
    ("2024-03", (date(2024, 3, 1), date(2024, 4, 1))),
    ("2024-12", (date(2024, 12, 1), date(2025, 1, 1))),
    ("2024-02-29", (date(2024, 2, 29), date(2024, 3, 1))),
    (" 2024-3-5 ", (date(2024, 3, 5), date(2024, 3, 6))),
])
def test_periods(text: str, period: tuple[date, date]) -> None:
    assert parse_period(text) == period


@pytest.mark.parametrize("text", ["24", "2024-13", "2023-02-29", "0000", "2024/03", "March",
                                  "", "2024-03-05T10:00", "20240305"])
def test_bad_periods_are_value_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_period(text)


def test_days() -> None:
    assert parse_day("2024-03-05") == date(2024, 3, 5)
    for bad in ("2024", "2024-03", "2024-02-30", "yesterday"):
        with pytest.raises(ValueError):
            parse_day(bad)


def test_unset_filters_are_null_parameters() -> None:
    assert set(Filters().params().values()) == {None}
    p = Filters(tags=("a", "b"), period=parse_period("2024")).params()
    assert p["tags"] == ["a", "b"] and p["date_until"] == date(2025, 1, 1)


def test_snippet_offsets_point_at_the_matches() -> None:
    s = make_snippet(f"pay the {START}invoice{STOP} by {START}Friday{STOP}\n now")
    assert s.text == "pay the invoice by Friday now"
    assert [s.text[a:b] for a, b in s.matches] == ["invoice", "Friday"]
    assert s.highlighted("[", "]") == "pay the [invoice] by [Friday] now"


def test_dotted_leaders_and_control_characters_are_tamed() -> None:
    s = make_snippet("Contents " + "." * 5000 + f" {START}Invoices{STOP} " + "." * 5000 + " 7")
    assert len(s.text) <= 240
    assert s.text == "Contents ... Invoices ... 7"
    s = make_snippet(f"evil \x1b[31m{START}red{STOP}\x07 text")
    assert "\x1b" not in s.text and "\x07" not in s.text
    assert [s.text[a:b] for a, b in s.matches] == ["red"]


def test_a_long_snippet_is_cut_around_its_first_match() -> None:
    words = " ".join(f"w{i}" for i in range(400))
    s = make_snippet(words + f" {START}needle{STOP} " + words)
    assert len(s.text) == 240 and s.text.startswith("…") and s.text.endswith("…")
    assert [s.text[a:b] for a, b in s.matches] == ["needle"]
    assert make_snippet("") .text == ""


def test_the_bitmap_is_chosen_for_few_matches_the_cut_for_more_and_the_walk_for_many() -> None:
    from alfrd_daemon.db.search import Plan, choose_plan

    # at window 200 and 1,000,000 documents: the cut from √(200 · 10⁶ / 8) = 5,000 matches,
    # the walk from √(4.5 · 200 · 10⁶) = 30,000
    assert choose_plan(200, 1_000_000, 200) == Plan("bitmap")
    assert choose_plan(4_900, 1_000_000, 200) == Plan("bitmap")
    assert choose_plan(5_100, 1_000_000, 200) == Plan("bitmap", newest_rows=78_432)
    assert choose_plan(20_000, 1_000_000, 200) == Plan("bitmap", newest_rows=20_000)
    assert choose_plan(29_000, 1_000_000, 200).newest_rows == 13_794
    assert choose_plan(31_000, 1_000_000, 200) == Plan("walk")
    assert choose_plan(400_000, 1_000_000, 200) == Plan("walk")
    assert choose_plan(10, 0, 200) == Plan("bitmap")  # never analyzed: never a disaster
    assert choose_plan(0, 1_000_000, 200) == Plan("bitmap")
