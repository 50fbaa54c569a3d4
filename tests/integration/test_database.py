"""The schema, migrations and the search query, on real PostgreSQL."""

from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg.rows import dict_row

from alfrd_daemon.db.migrations import migrate, migrations, pending_migrations
from alfrd_daemon.db.queries import QUERIES
from alfrd_daemon.db.search import search_params


def test_migrations_are_idempotent_and_safe_to_race(empty_db_url: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        try:
            with psycopg.connect(empty_db_url) as conn:
                barrier.wait()
                results.append(migrate(conn))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    applied = [r for r in results if r]
    assert len(applied) == 1, "exactly one racer applies the migrations"
    assert applied[0] == [f"{v:03d}_{n}" for v, n, _ in migrations()]
    with psycopg.connect(empty_db_url) as conn:
        assert migrate(conn) == []
        assert pending_migrations(conn) == []


def test_search_uses_the_gin_index_and_weights_names_above_body(db_url: str) -> None:
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        for name, text in [("gas_bill.txt", "monthly statement"),
                           ("notes.txt", "remember to pay the gas bill"),
                           ("other.txt", "nothing relevant")]:
            conn.execute(
                "INSERT INTO documents (original_name, source_path, status, extracted_text) "
                "VALUES (%s, %s, 'extracted', %s)", (name, name, text))
        params = search_params("gas bill", config="english", limit=10)
        rows = conn.execute(QUERIES["search_documents_newest_of_few"], params).fetchall()
        assert [r["original_name"] for r in rows] == ["gas_bill.txt", "notes.txt"]
        # A table this small is read sequentially; forbid that to see whether the index fits.
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(r["QUERY PLAN"] for r in conn.execute(
            "EXPLAIN " + QUERIES["search_documents_newest_of_few"], params))
        assert "documents_search_vector_idx" in plan, plan


@pytest.mark.parametrize("query", ['"', "-", "a & | !", "(((", "café OR", ":*", ""])
def test_any_user_text_is_a_valid_query(db_url: str, query: str) -> None:
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        for name in ("search_documents_newest", "search_documents_newest_of_few"):
            conn.execute(QUERIES[name], search_params(query, config="english", limit=5,
                                                      newest_rows=10)).fetchall()


def test_text_longer_than_a_tsvector_can_hold_is_still_stored(db_url: str) -> None:
    """A tsvector may not exceed 1 MB; the generated column indexes the first 200,000
    characters, so a huge text never makes the insert fail."""
    words = " ".join(f"w{i}x{i * 7919 % 100003}" for i in range(200_000))  # ~2.6 MB
    with psycopg.connect(db_url) as conn:
        conn.execute("INSERT INTO documents (original_name, source_path, status, extracted_text)"
                     " VALUES ('big.txt', 'big.txt', 'extracted', %s)", (words,))
        assert conn.execute("SELECT length(extracted_text) FROM documents").fetchone()[0] == len(
            words)


def test_broad_queries_rank_the_newest_matches_and_narrow_ones_rank_all(db_url: str) -> None:
    from alfrd_daemon.db.search import search

    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        for i in range(12):
            # older documents mention the word more often, so full ranking would prefer them
            text = "invoice " * (12 - i) + f"number {i}" + (" rarity" if i == 3 else "")
            conn.execute(
                "INSERT INTO documents (original_name, source_path, status, extracted_text, "
                "created_at) VALUES (%s, %s, 'extracted', %s, now() + %s * interval '1 minute')",
                (f"d{i}.txt", f"d{i}.txt", text, i))
        found = search(conn, "invoice", config="english", limit=3, window=5)
        assert found.broad
        names = [r["original_name"] for r in found.rows]
        assert set(names) <= {f"d{i}.txt" for i in range(7, 12)}, names  # newest five only
        assert names[0] == "d7.txt"  # and ranked among themselves
        found = search(conn, "invoice", config="english", limit=3, window=50)
        assert not found.broad
        assert found.rows[0]["original_name"] == "d0.txt"
        found = search(conn, "rarity", config="english", window=5)
        assert not found.broad and [r["original_name"] for r in found.rows] == ["d3.txt"]
