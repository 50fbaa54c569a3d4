"""`alfrd search` and `alfrd list` against a real PostgreSQL: prefixes, phrases, exclusion,
every filter, the trash, snippet length, hostile text and the plans of the hot queries."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from alfrd_daemon.db.queries import QUERIES
from alfrd_daemon.db.search import Plan, list_documents, search, search_params
from alfrd_daemon.db.search_filters import Filters, parse_period
from tests.helpers import REPO, alfrd_env, run_cli, write_config
from tests.unit.test_search_query import HOSTILE

NOW = datetime(2025, 6, 15, 12, 0, tzinfo=UTC)


def add(conn: psycopg.Connection[Any], name: str, text: str, **cols: Any) -> None:
    row = {"original_name": name, "source_path": name, "status": "extracted",
           "extracted_text": text, "created_at": NOW, **cols}
    names = ", ".join(row)
    conn.execute(f"INSERT INTO documents ({names}) VALUES "
                 f"({', '.join('%s' for _ in row)})", list(row.values()))


def names(conn: psycopg.Connection[Any], query: str, **filters: Any) -> list[str]:
    found = search(conn, query, config="english", filters=Filters(**filters), limit=50)
    return sorted(r["original_name"] for r in found.rows)


def listed(conn: psycopg.Connection[Any], **filters: Any) -> list[str]:
    return sorted(r["original_name"] for r in list_documents(conn, filters=Filters(**filters)))


@pytest.fixture
def archive(db_url: str) -> psycopg.Connection[Any]:
    conn = psycopg.connect(db_url, row_factory=dict_row, autocommit=True)
    add(conn, "inv.txt", "Invoices for March, please pay the gas bill",
        tags=["bills", "2024"], document_type="Invoice", correspondent="Stadtwerke",
        document_date=date(2024, 3, 5))
    add(conn, "doc.txt", "The documentation of the water meter",
        tags=["bills"], document_type="manual", correspondent="stadtwerke",
        document_date=date(2023, 12, 31), status="pending")
    add(conn, "phrase.txt", "bill gas never in this order; water",
        tags=["misc"], created_at=NOW - timedelta(days=400))
    add(conn, "old.txt", "a gas invoice from long ago, undated",
        created_at=datetime(2024, 3, 20, 12, tzinfo=UTC))
    add(conn, "gone.txt", "invoices gas bill documentation water, in the trash",
        deleted_at=NOW, document_date=date(2024, 3, 5), tags=["bills"])
    yield conn
    conn.close()


def test_a_word_finds_the_words_it_begins_and_stemming_still_applies(archive) -> None:
    assert names(archive, "invoic") == ["inv.txt", "old.txt"]
    assert names(archive, "documen") == ["doc.txt"]
    assert names(archive, "invoice") == ["inv.txt", "old.txt"]  # stemmed: invoices too
    assert names(archive, "INVOICES march") == ["inv.txt"]
    assert names(archive, "stadtw") == []  # correspondent is no body text


def test_quotes_match_a_phrase_and_minus_excludes(archive) -> None:
    assert names(archive, '"gas bill"') == ["inv.txt"]
    assert names(archive, "gas bill") == ["inv.txt", "phrase.txt"]
    assert names(archive, "gas -invoic") == ["phrase.txt"]
    assert names(archive, 'gas -"gas bill"') == ["old.txt", "phrase.txt"]
    assert names(archive, "march or meter") == ["doc.txt", "inv.txt"]


@pytest.mark.parametrize("text", HOSTILE)
def test_any_typed_text_is_a_valid_query(archive, text: str) -> None:
    found = search(archive, text, config="english", limit=5)
    assert all(r["original_name"] != "gone.txt" for r in found.rows)


def test_each_filter_for_search_and_list(archive) -> None:
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"tags": ("bills",)}, ["doc.txt", "inv.txt"]),
        ({"tags": ("bills", "2024")}, ["inv.txt"]),
        ({"status": "pending"}, ["doc.txt"]),
        ({"document_type": "INVOICE"}, ["inv.txt"]),
        ({"correspondent": "StadtWerke"}, ["doc.txt", "inv.txt"]),
        ({"period": parse_period("2024")}, ["inv.txt"]),
        ({"period": parse_period("2023-12")}, ["doc.txt"]),
        ({"period": parse_period("2024-03-06")}, []),
        # the document's date, else the ingest date (old.txt: ingested 2024-03-20)
        ({"after": date(2024, 3, 5), "before": date(2024, 3, 31)}, ["inv.txt", "old.txt"]),
        ({"before": date(2023, 12, 31)}, ["doc.txt"]),
        ({"ingested_after": date(2025, 6, 15)}, ["doc.txt", "inv.txt"]),
        ({"ingested_before": date(2024, 5, 10)}, ["old.txt"]),
        ({"ingested_before": date(2024, 5, 11)}, ["old.txt", "phrase.txt"]),
        ({"ingested_after": date(2024, 3, 20), "ingested_before": date(2024, 3, 20)},
         ["old.txt"]),
    ]
    everything = "gas or water or documen or invoic"
    for filters, expected in cases:
        assert listed(archive, **filters) == expected, filters
        assert names(archive, everything, **filters) == expected, filters


def test_trashed_documents_never_show(archive) -> None:
    assert "gone.txt" not in listed(archive)
    assert "gone.txt" not in names(archive, "trash")
    assert names(archive, "trash") == []
    # the broad path (newest matches) leaves them out too
    found = search(archive, "gas", config="english", limit=10, window=1)
    assert found.broad and "gone.txt" not in [r["original_name"] for r in found.rows]


def test_the_snippet_of_one_long_line_of_dotted_leaders_is_short(archive) -> None:
    line = "Contents " + " ".join("Chapter " + "." * 300 + f" {i}" for i in range(300))
    add(archive, "toc.txt", line + " Appendix: the zeppelin timetable " + "." * 20000)
    found = search(archive, "zeppelin", config="english")
    [row] = found.rows
    snippet = row["snippet"]
    assert 0 < len(snippet.text) <= 240, snippet
    assert [snippet.text[a:b] for a, b in snippet.matches] == ["zeppelin"]
    assert "\x02" not in snippet.text and "\x03" not in snippet.text


def test_cli_json_is_plain_with_offsets_and_bad_dates_are_usage_errors(
        tmp_path: Path, db_url: str, archive) -> None:
    config = write_config(tmp_path, db_url)
    out = json.loads(run_cli(config, "search", "invoic", "--json", "--tag", "bills",
                             "--date", "2024-03").stdout)
    assert [r["name"] for r in out] == ["inv.txt"]
    hit = out[0]
    assert [hit["snippet"][a:b] for a, b in hit["matches"]] == ["Invoices"]
    assert "\x1b" not in hit["snippet"] and hit["document_type"] == "Invoice"
    plain = run_cli(config, "search", "invoic", "--type", "invoice").stdout
    assert "Invoices for March" in plain and "\x1b" not in plain  # not a terminal: no bold
    listed_out = json.loads(run_cli(config, "list", "--json", "--correspondent",
                                    "stadtwerke", "--status", "pending").stdout)
    assert [r["original_name"] for r in listed_out] == ["doc.txt"]
    for args in (("search", "x", "--date", "2024-13"), ("list", "--after", "yesterday"),
                 ("list", "--ingested-before", "2024-02-30")):
        r = run_cli(config, *args, check=False)
        assert r.returncode == 64, r
        assert len(r.stderr.strip().splitlines()) == 1 and args[-1] in r.stderr, r.stderr


def test_matches_are_bold_on_a_terminal(tmp_path: Path, db_url: str, archive) -> None:
    config = write_config(tmp_path, db_url)
    primary, secondary = pty.openpty()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "alfrd_daemon", "search", "invoic", "--config", str(config)],
            stdout=secondary, stderr=subprocess.PIPE, env=alfrd_env(), cwd=REPO, timeout=60)
        os.close(secondary)
        secondary = -1
        out = b""
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the terminal's other side closed
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    assert proc.returncode == 0, proc.stderr
    assert b"\x1b[1mInvoices\x1b[0m for March" in out, out


@pytest.fixture
def many(db_url: str) -> psycopg.Connection[Any]:
    """5,000 rows of numbered words. A table this small is read sequentially whatever the
    query (at 20,000 rows too: seen); the benchmark's generated archive shows the planner's
    own choice at 200,000 and 1,000,000 rows (gin_index_used)."""
    conn = psycopg.connect(db_url, row_factory=dict_row, autocommit=True)
    conn.execute("""
        INSERT INTO documents (original_name, source_path, status, extracted_text, tags,
                               created_at)
        SELECT 'g' || i || '.txt', 'g' || i || '.txt', 'extracted',
               'word' || (i % 7) || ' term' || (i % 101) || ' rare' || i || 'x filler text',
               ARRAY['t' || (i % 5)], now() - i * interval '1 minute'
        FROM generate_series(1, 5000) AS i""")
    conn.execute("ANALYZE documents")
    yield conn
    conn.close()


@pytest.mark.parametrize("query", ["rare1234", "rare123", '"rare1234x filler"', "term17 rare9"])
def test_hot_queries_can_use_the_gin_index_with_every_filter_given(
        many, query: str) -> None:
    """With sequential scans priced out (enable_seqscan off), the bitmap query of a narrow
    search goes through the GIN index, prefixes and phrases included, and with a filter that
    has no index of its own. (Tag, status, type, correspondent and date filters may rightly
    prefer their own index: at this size the planner prices the tag index below this one, and
    the created_at index for the cut to the newest rows; the benchmark's generated archive
    checks the cut's BitmapAnd at 1,000,000 rows.)"""
    many.execute("SET enable_seqscan = off")
    filters = Filters(after=date(2020, 1, 1), before=date(2100, 1, 1))
    for f in (Filters(), filters):
        for cut in (None,):
            params = search_params(query, config="english", filters=f, newest_rows=cut)
            plan = "\n".join(r["QUERY PLAN"] for r in many.execute(
                "EXPLAIN " + QUERIES["search_documents_newest_of_few"], params, prepare=False))
            assert "documents_search_vector_idx" in plan, (cut, plan)
    many.execute("RESET enable_seqscan")
    assert search(many, "rare1234", config="english").rows[0]["original_name"] == "g1234.txt"
    assert len(search(many, "rare123", config="english", limit=50).rows) == 11


@pytest.mark.parametrize("cut", [None, 60, 3000, 7])
def test_every_way_to_the_newest_matches_agrees(many, cut: int | None) -> None:
    """A broad query ranks its newest `window` matches, found by the created_at walk, by the
    GIN bitmap, or by the bitmap cut to the newest rows (db/search.py picks the cheapest):
    the same rows every way. A cut with too few matches inside it (7 rows, or 60 rows and a
    filter that leaves 1 in 35) is widened until it holds them."""
    kwargs: dict[str, Any] = {"config": "english", "filters": Filters(tags=("t1",)),
                              "limit": 10, "window": 40}
    walk = search(many, "word3", plan=Plan("walk"), **kwargs)
    other = search(many, "word3", plan=Plan("bitmap", newest_rows=cut), **kwargs)
    assert walk.broad and other.broad
    assert len(walk.rows) == 10
    assert [(r["id"], r["rank"]) for r in other.rows] == [(r["id"], r["rank"]) for r in walk.rows]
    assert other.strategy == ("bitmap" if cut is None else "bitmap-of-newest")
    # the ranking is over the newest 40 matches exactly: none older than the 40th
    newest = many.execute(
        "SELECT created_at FROM documents WHERE tags @> '{t1}' AND search_vector @@ "
        "to_tsquery('english', 'word3') ORDER BY created_at DESC OFFSET 39 LIMIT 1").fetchone()
    assert min(r["created_at"] for r in walk.rows) >= newest["created_at"]


def test_narrow_queries_rank_every_match_and_say_they_are_not_broad(many) -> None:
    found = search(many, "rare77x", config="english")
    assert found.strategy == "bitmap" and not found.broad
    assert [r["original_name"] for r in found.rows] == ["g77.txt"]
    count = many.execute("SELECT count(*) AS n FROM documents WHERE search_vector @@ "
                         "to_tsquery('english', 'term17')").fetchone()["n"]
    assert count == 50  # i % 101 == 17 for i in 1..5000
    for plan in (None, Plan("walk"), Plan("bitmap", newest_rows=100)):
        assert not search(many, "term17", config="english", window=50, plan=plan).broad
        assert search(many, "term17", config="english", window=49, plan=plan).broad
