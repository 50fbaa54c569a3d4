"""Full-text search over documents, fast for rare and for very common words alike.

Scoring every match costs time in proportion to the number of matches (a word in a fifth of a
million documents took ~0.6 s), so a query ranks only its newest `window` matches: all of them
when no more matched, and then it is not broad. Those newest matches are found one of three
ways, chosen here from the planner's row estimate m among N documents, because the planner's
own choice leaves out that the walk reads every search_vector it passes (it walked 25,000 rows,
105 ms, where a bitmap took 11 ms):

- few matches: the GIN index gives all of them as a bitmap (one heap page per match);
- more: that bitmap ANDed with a bitmap of the newest rows from the created_at index, so only
  the pages of the newest ~CUT_MARGIN·window matches are read; the cut is widened when the
  estimate was high and too few fell inside it;
- many: walk the created_at index newest first until window + 1 matches turned up (about
  window·N/m rows).

Measured at 1,000,000 generated documents (BENCHMARKS.md): a heap page of a bitmap match costs
~5 µs, a row of the created_at index ~0.2 µs (counted once to find the cut, once for its
bitmap), a walked row ~2 µs, a GIN bitmap entry ~0.4 µs. With CUT_MARGIN = 2, the cut beats the
bitmap from m ≈ √(window·N / 8) and the walk beats the cut from m ≈ √(4.5·window·N): at window
200 and N 1,000,000, 5,000 and 30,000 matches. The estimate is good because migration 008
keeps 10,000 of the column's most common lexemes.
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
CUT_FROM = 1 / 8  # the cut pays from m = √(CUT_FROM · window · N)
WALK_FROM = 4.5  # the walk pays from m = √(WALK_FROM · window · N)
CUT_MARGIN = 2  # the cut holds this many times `window` matches, by the estimate
CUT_WIDENING = 8  # too few inside the cut: this many times more rows, until there is no cut


@dataclass(frozen=True)
class Plan:
    """How the newest matches are found: "bitmap" (every match, or with `newest_rows` only
    those among the newest that many documents) or "walk"."""

    strategy: str
    newest_rows: int | None = None

    @property
    def query(self) -> str:
        """The name of its statement in queries.sql."""
        return ("search_documents_newest" if self.strategy == "walk"
                else "search_documents_newest_of_few")


@dataclass
class SearchResult:
    rows: list[DictRow]  # each with a `snippet` (db.snippet.Snippet) in place of the headline
    broad: bool  # more than `window` matched: only the newest `window` were ranked
    tsquery: str  # what the typed text became (to_tsquery input; empty: nothing searchable)
    strategy: str = "bitmap"  # bitmap | bitmap-of-newest | walk


def search_params(query: str, *, config: str, filters: Filters | None = None,
                  limit: int = 20, window: int = DEFAULT_RANK_WINDOW,
                  newest_rows: int | None = None) -> dict[str, Any]:
    """The parameters of the search queries in queries.sql."""
    return {"tsquery": to_tsquery_text(query), "config": config, "limit": limit,
            "window": window, "newest_rows": newest_rows, **(filters or Filters()).params()}


def choose_plan(expected_matches: float, documents: float, window: int) -> Plan:
    """The cheapest way to the newest `window` of `expected_matches` among `documents`."""
    m, n = max(expected_matches, 1.0), documents
    if n <= 0 or m <= math.sqrt(CUT_FROM * window * n):
        return Plan("bitmap")  # never analyzed (n = -1 → 0): the bitmap is never a disaster
    if m >= math.sqrt(WALK_FROM * window * n):
        return Plan("walk")
    return Plan("bitmap", newest_rows=math.ceil(CUT_MARGIN * window * n / m))


def search(
    conn: psycopg.Connection[Any], query: str, *, config: str, filters: Filters | None = None,
    limit: int = 20, window: int = DEFAULT_RANK_WINDOW, plan: Plan | None = None,
) -> SearchResult:
    """The best `limit` of the newest `window` matches. `plan`: how to find them (tests);
    None chooses from the planner's estimate."""
    params = search_params(query, config=config, filters=filters, limit=limit, window=window)
    if not params["tsquery"]:
        return SearchResult([], False, "")
    cur = conn.cursor(row_factory=dict_row)
    documents = _documents(cur)
    if plan is None:
        plan = choose_plan(_expected_rows(cur, params), documents, window)
    cut = plan.newest_rows
    strategy = "walk" if plan.strategy == "walk" else (
        "bitmap" if cut is None else "bitmap-of-newest")
    while True:
        rows = _run(cur, plan.query, {**params, "newest_rows": cut})
        # More than `window` inside the cut: the newest window + 1 of all are among them.
        if cut is None or (rows and rows[0]["more"]):
            break
        cut = None if cut * CUT_WIDENING >= documents else cut * CUT_WIDENING
    broad = bool(rows and rows[0]["more"])
    for row in rows:
        row["snippet"] = make_snippet(row["snippet"])
        del row["more"]
    return SearchResult(rows, broad, params["tsquery"], strategy)


def plan_search(cur: psycopg.Cursor[DictRow], params: dict[str, Any]) -> Plan:
    """The plan choose_plan makes for these search_params from the planner's estimate."""
    return choose_plan(_expected_rows(cur, params), _documents(cur), params["window"])


def _run(cur: psycopg.Cursor[DictRow], name: str, params: dict[str, Any]) -> list[DictRow]:
    # prepare=False: a server-side prepared statement soon switches to a generic plan, and
    # the right plan depends on how common the words are (seen: 20 ms became 130 ms) and on
    # which filters are given (a NULL filter folds away only in a plan made for its values).
    return cur.execute(QUERIES[name], params, prepare=False).fetchall()


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


__all__ = ["DEFAULT_RANK_WINDOW", "Plan", "SearchResult", "Snippet", "choose_plan",
           "list_documents", "plan_search", "search", "search_params"]
