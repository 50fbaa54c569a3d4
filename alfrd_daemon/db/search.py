"""Full-text search over documents, fast for rare and for very common words alike.

Scoring every match costs time in proportion to the number of matches (a word in a fifth of a
million documents took ~0.6 s). So the match count is first counted up to a cap; a broad query
ranks only its newest `window` matches. Those are found one of two ways, whichever reads fewer
rows: walking the created_at index until `window` matches turned up (about window / density
rows, each with its search_vector detoasted), or taking every match from the GIN index as a
bitmap and sorting by created_at (one heap visit per match, no detoasting). The planner's own
choice between them leaves the detoasting out of its costs and walked 25,000 rows (105 ms)
where the bitmap took 11 ms, so the choice is made here from its row estimate. That estimate
is low for short prefixes (`fio`: 2,267 expected, 13,997 found), so before taking the bitmap
the newest rows are sampled: a query dense among them is walked instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import DictRow, dict_row

from alfrd_daemon.db.queries import QUERIES
from alfrd_daemon.db.search_filters import Filters
from alfrd_daemon.db.search_query import to_tsquery_text
from alfrd_daemon.db.snippet import Snippet, make_snippet

DEFAULT_RANK_WINDOW = 200
# Measured at 200,000 generated documents: a walked row costs ~4.5 µs (detoasting), a bitmap
# match ~2.7 µs. The walk reads window·N/m rows, the bitmap m: equal at m = √(window·N·ratio).
WALK_TO_BITMAP_COST = 1.7
SAMPLE_PER_WINDOW = 5  # the sample is this many times the window: ~4.5 ms at window 200


@dataclass
class SearchResult:
    rows: list[DictRow]  # each with a `snippet` (db.snippet.Snippet) in place of the headline
    broad: bool  # only the newest `window` matches were ranked
    tsquery: str  # what the typed text became (to_tsquery input; empty: nothing searchable)
    strategy: str = "rank-all"  # rank-all | newest-walk | newest-bitmap


def search_params(query: str, *, config: str, filters: Filters | None = None,
                  limit: int = 20) -> dict[str, Any]:
    """The parameters of the search queries in queries.sql."""
    return {"tsquery": to_tsquery_text(query), "config": config, "limit": limit,
            **(filters or Filters()).params()}


def bitmap_is_cheaper(expected_matches: float, documents: float, window: int) -> bool:
    """Whether the newest `window` of `expected_matches` among `documents` rows are found
    with fewer row reads through the GIN bitmap than by walking the created_at index."""
    if documents <= 0:
        return True
    return expected_matches <= math.sqrt(window * documents * WALK_TO_BITMAP_COST)


def search(
    conn: psycopg.Connection[Any], query: str, *, config: str, filters: Filters | None = None,
    limit: int = 20, window: int = DEFAULT_RANK_WINDOW,
) -> SearchResult:
    params = search_params(query, config=config, filters=filters, limit=limit)
    if not params["tsquery"]:
        return SearchResult([], False, "")
    cur = conn.cursor(row_factory=dict_row)
    # prepare=False: a server-side prepared statement soon switches to a generic plan, and
    # the right plan depends on how common the words are (seen: 20 ms became 130 ms) and on
    # which filters are given (a NULL filter folds away only in a plan made for its values).
    count = cur.execute(QUERIES["search_match_count"], {**params, "cap": window + 1},
                        prepare=False).fetchone()
    broad = bool(count and count["n"] > window)
    name, strategy = "search_documents", "rank-all"
    if broad:
        name, strategy = "search_documents_newest", "newest-walk"
        documents = _documents(cur)
        expected = _expected_rows(cur, params)
        if bitmap_is_cheaper(expected, documents, window):
            sample = SAMPLE_PER_WINDOW * window
            found = cur.execute(QUERIES["search_newest_sample"], {**params, "sample": sample},
                                prepare=False).fetchone()
            sampled = found["n"] if found else 0
            # At least `window` matches among the newest `sample`: the walk stops within them.
            if sampled < window and bitmap_is_cheaper(
                    max(expected, sampled / sample * documents), documents, window):
                name, strategy = "search_documents_newest_of_few", "newest-bitmap"
    rows = cur.execute(QUERIES[name], {**params, "window": window}, prepare=False).fetchall()
    for row in rows:
        row["snippet"] = make_snippet(row["snippet"])
    return SearchResult(rows, broad, params["tsquery"], strategy)


def _expected_rows(cur: psycopg.Cursor[DictRow], params: dict[str, Any]) -> float:
    plan = cur.execute("EXPLAIN (FORMAT JSON) " + QUERIES["search_matches"], params,
                       prepare=False).fetchone()
    return float(next(iter(plan.values()))[0]["Plan"]["Plan Rows"]) if plan else 0.0


def _documents(cur: psycopg.Cursor[DictRow]) -> float:
    row = cur.execute(QUERIES["documents_estimate"], prepare=False).fetchone()
    return max(float(row["n"]), 0.0) if row else 0.0  # -1: never analyzed


def list_documents(conn: psycopg.Connection[Any], *, filters: Filters | None = None,
                   limit: int = 50) -> list[DictRow]:
    """Newest first, with the same filters as search."""
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(QUERIES["list_documents"],
                       {**(filters or Filters()).params(), "limit": limit},
                       prepare=False).fetchall()


__all__ = ["DEFAULT_RANK_WINDOW", "SearchResult", "Snippet", "list_documents", "search",
           "search_params"]
