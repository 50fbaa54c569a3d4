"""Full-text search over documents, fast for rare and for very common words alike.

Scoring every match costs time in proportion to the number of matches (a word in a fifth of a
million documents took ~0.6 s). So the match count is first counted up to a cap; a broad query
ranks only its newest `window` matches, found through the created_at index.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import DictRow, dict_row

from alfrd_daemon.db.queries import QUERIES

DEFAULT_RANK_WINDOW = 500


def search(
    conn: psycopg.Connection[Any], query: str, *, config: str, tag: str | None = None,
    limit: int = 20, window: int = DEFAULT_RANK_WINDOW,
) -> tuple[list[DictRow], bool]:
    """(rows, broad): broad is True when only the newest `window` matches were ranked."""
    params = {"query": query, "config": config, "tag": tag, "limit": limit}
    cur = conn.cursor(row_factory=dict_row)
    # prepare=False: a server-side prepared statement soon switches to a generic plan, and
    # the right plan depends on how common the words are (seen: 20 ms became 130 ms).
    count = cur.execute(QUERIES["search_match_count"], {**params, "cap": window + 1},
                        prepare=False).fetchone()
    broad = bool(count and count["n"] > window)
    name = "search_documents_newest" if broad else "search_documents"
    rows = cur.execute(QUERIES[name], {**params, "window": window}, prepare=False).fetchall()
    return rows, broad
