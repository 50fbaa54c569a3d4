"""Documents stored before a reader for their type existed, read again from the store.

A row records what read it as "name/version". A row left `pending` by an older "none" (nothing
read its type then) whose type has a reader now, such as an office file stored as none/1, is
read again from its stored copy and gets its text; so is a row left pending for a reason that
may have gone (`metadata.pending_reason`: antiword was not installed). The reindex job runs
this after it has brought every row to the search language. The rules run again on the new
text in the same transaction.

A file that turns out unreadable keeps its row `pending` (its stored copy is intact, and no
file is in `failed/` to retry), with the reason in `error` and the current "none" as its
extractor, so that it is not tried on every reindex. A file the extractors could not take now
(the daemon stopping) stays as it was for the next run. A row a downstream worker took meanwhile
(it is no longer pending) is left alone.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any
from uuid import UUID

import psycopg
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from alfrd_daemon.config.settings import Settings
from alfrd_daemon.dates import date_document
from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.db.rules_rows import rerun_locked
from alfrd_daemon.extract.api import EXTRACTOR_VERSIONS
from alfrd_daemon.extract.dispatch import READ_TYPES
from alfrd_daemon.extract.pool import ExtractorPool
from alfrd_daemon.ingest.errors import Permanent, Transient
from alfrd_daemon.ingest.reading import Reader
from alfrd_daemon.ingest.store import Store
from alfrd_daemon.pgsafe import clean_json, clean_text
from alfrd_daemon.rules.load import RulesError, compiled
from alfrd_daemon.rules.model import RuleSet
from alfrd_daemon.rules.stored import decide

Q = load_named_queries("jobs.sql")


def reextract_stale(settings: Settings, conn: psycopg.Connection[DictRow], *, batch_size: int,
                    check: Callable[[], None]) -> dict[str, int]:
    """Read every stale pending row again; counts of what became of them. `conn` is in
    autocommit mode; `check` raises to stop between files."""
    current = f"none/{EXTRACTOR_VERSIONS['none']}"
    counts = {"reextracted": 0, "reextract_unreadable": 0, "reextract_later": 0,
              "reextract_still_pending": 0}
    after = UUID(int=0)
    pool: ExtractorPool | None = None
    try:
        while True:
            check()
            rows = conn.execute(Q["reextract_candidates"], {
                "current": current, "mime_types": sorted(READ_TYPES), "after": after,
                "limit": batch_size}).fetchall()
            if not rows:
                return counts
            if pool is None:
                pool = ExtractorPool(1, memory_limit_mb=settings.extract.memory_limit_mb)
            reader = Reader(settings, Store(settings.store_path), pool)
            for row in rows:
                check()
                after = row["id"]
                outcome = _reextract(reader, conn, row, current)
                counts[outcome] += 1
    finally:
        if pool is not None:
            pool.close()


def _reextract(reader: Reader, conn: psycopg.Connection[DictRow], row: dict[str, Any],
               current: str) -> str:
    path = reader.settings.store_path / row["stored_path"]
    params: dict[str, Any] = {"id": row["id"], "old_extractor": row["extractor"]}
    try:
        x = reader.extract(path, row["original_name"])
    except Transient:
        return "reextract_later"
    except Permanent as exc:
        params.update(extracted_text="", extractor=current, status="pending", mime_type=None,
                      title=None, metadata=Jsonb({}), error=clean_text(exc.reason))
        conn.execute(Q["reextract_update"], params)
        return "reextract_unreadable"
    if x.status == "pending" and x.metadata.get("pending_reason") == row["pending_reason"]:
        return "reextract_still_pending"  # the tool is still missing: nothing to write
    meta: dict[str, Any] = dict(x.metadata)
    if x.truncated:
        meta["text_truncated"] = True
    params.update(extracted_text=clean_text(x.text), extractor=x.extractor, status=x.status,
                  mime_type=x.mime_type, title=clean_text(x.title) if x.title else None,
                  metadata=Jsonb(clean_json(meta)), error=None)
    ruleset = _ruleset(reader.settings)
    # The new text and what the rules make of it, in one transaction.
    with conn.transaction(), conn.cursor() as cur:
        updated = cur.execute(Q["reextract_update"], params).fetchone()
        if updated is not None and ruleset.rules:
            rerun_locked(cur, row["id"], functools.partial(decide, ruleset))
        if updated is not None:
            _date(reader.settings, cur, row["id"], x.text, row["original_name"])
    return "reextracted"


def _ruleset(settings: Settings) -> RuleSet:
    try:
        return compiled(settings.rules.inline, settings.rules.regex_timeout)
    except RulesError:  # refused at start and reload; `alfrd jobs run` has no rules then
        return RuleSet()


def _date(settings: Settings, cur: psycopg.Cursor[DictRow], doc_id: Any, text: str,
          name: str) -> None:
    """The document's date, now that its text is known."""
    dated = date_document(settings.dates, text, name, dt.date.today())
    if dated is not None:
        cur.execute(Q["reextract_document_date"], {
            "id": doc_id, "document_date": dated.document_date,
            "dates": Jsonb(clean_json(dated.metadata()))})
