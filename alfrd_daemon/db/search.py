"""Full-text search over documents, fast for rare and for very common words alike.

Scoring every match costs time in proportion to the number of matches (a word in a fifth of a
million documents took ~0.6 s). So the match count is first counted up to a cap; a broad query
ranks only its newest `window` matches, found through the created_at index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import DictRow, dict_row

from alfrd_daemon.db.queries import QUERIES
from alfrd_daemon.db.search_filters import Filters
from alfrd_daemon.db.search_query import to_tsquery_text
from alfrd_daemon.db.snippet import Snippet, make_snippet

DEFAULT_RANK_WINDOW = 500


@dataclass
class SearchResult:
    rows: list[DictRow]  # each with a `snippet` (db.snippet.Snippet) in place of the headline
    broad: bool  # only the newest `window` matches were ranked
    tsquery: str  # what the typed text became (to_tsquery input; empty: nothing searchable)


def search_params(query: str, *, config: str, filters: Filters | None = None,
                  limit: int = 20) -> dict[str, Any]:
    """The parameters of the search queries in queries.sql."""
    return {"tsquery": to_tsquery_text(query), "config": config, "limit": limit,
            **(filters or Filters()).params()}


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
    name = "search_documents_newest" if broad else "search_documents"
    rows = cur.execute(QUERIES[name], {**params, "window": window}, prepare=False).fetchall()
    for row in rows:
        row["snippet"] = make_snippet(row["snippet"])
    return SearchResult(rows, broad, params["tsquery"])


def list_documents(conn: psycopg.Connection[Any], *, filters: Filters | None = None,
                   limit: int = 50) -> list[DictRow]:
    """Newest first, with the same filters as search."""
    cur = conn.cursor(row_factory=dict_row)
    return cur.execute(QUERIES["list_documents"],
                       {**(filters or Filters()).params(), "limit": limit},
                       prepare=False).fetchall()


__all__ = ["DEFAULT_RANK_WINDOW", "SearchResult", "Snippet", "list_documents", "search",
           "search_params"]
