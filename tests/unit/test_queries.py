"""The named-query loader: statements by name, fragments pasted in as written."""

from __future__ import annotations

from importlib import resources

import pytest

from alfrd_daemon.db.queries import QUERIES, load_named_queries, parse_named_queries

TEXT = """-- header comment
-- fragment: pick
-- what it is for
a, b;

-- name: first
-- a comment that stays
SELECT {pick} FROM t;

-- name: second
SELECT {pick}, c FROM t WHERE x ~ '^[a-z]{3,}$'
"""


def test_statements_by_name_with_fragments_pasted_in() -> None:
    queries = parse_named_queries(TEXT)
    assert queries == {"first": "-- a comment that stays\nSELECT a, b FROM t",
                       "second": "SELECT a, b, c FROM t WHERE x ~ '^[a-z]{3,}$'"}


def test_fragments_may_include_fragments_but_not_themselves() -> None:
    text = ("-- fragment: outer\nSELECT {inner} FROM t\n"
            "-- fragment: inner\n-- said once, not pasted\na, b\n"
            "-- name: q\n{outer} WHERE x;\n")
    assert parse_named_queries(text) == {"q": "SELECT a, b FROM t WHERE x"}
    loop = "-- fragment: a\n{b}\n-- fragment: b\n{a}\n-- name: q\n{a}\n"
    with pytest.raises(ValueError, match="fragment 'a' includes itself"):
        parse_named_queries(loop, "q.sql")


def test_an_unknown_fragment_is_an_error() -> None:
    with pytest.raises(ValueError, match="no fragment named 'nope'"):
        parse_named_queries("-- name: q\nSELECT {nope}\n", "q.sql")


def test_every_shipped_file_loads_and_both_searches_share_one_snippet() -> None:
    folder = resources.files("alfrd_daemon.db").joinpath("sql")
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            assert load_named_queries(entry.name), entry.name
    snippets = [QUERIES[name].split("AS snippet")[0].split("hits.rank,")[1]
                for name in ("search_documents_newest", "search_documents_newest_of_few")]
    assert "ts_headline" in snippets[0] and snippets[0] == snippets[1]
