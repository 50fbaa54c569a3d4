"""Rule runs on stored rows: lock one row, let the caller's decision (the rules package,
which the database layer does not know) say what changes, write it. The same statements
serve the run after OCR, after re-extraction and `alfrd rules apply`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import psycopg
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.pgsafe import clean_json

Q = load_named_queries("rules.sql")


class Decided(Protocol):
    @property
    def params(self) -> dict[str, Any] | None: ...


def write_params(params: dict[str, Any]) -> dict[str, Any]:
    return {**params, "patch": Jsonb(clean_json(params["patch"]))}


def rerun_locked(cur: psycopg.Cursor[DictRow], document_id: object,
                 decide: Callable[[Mapping[str, Any]], Decided]) -> Decided | None:
    """In the caller's transaction: lock the row, decide, write. None: no such row (gone,
    failed or in the trash)."""
    row = cur.execute(Q["rules_lock_one"], {"id": document_id}).fetchone()
    if row is None:
        return None
    decision = decide(row)
    if decision.params is not None:
        cur.execute(Q["rules_update"], write_params(decision.params))
    return decision


def write_many(cur: psycopg.Cursor[DictRow], params: Sequence[dict[str, Any]]) -> None:
    if params:
        cur.executemany(Q["rules_update"], [write_params(p) for p in params])
