"""`alfrd rules apply`: the rules run again over stored documents, in short transactions.

Documents are taken in id order, a batch at a time (keyset pagination: a run stopped at any
point resumes from the last id it finished, and a document ingested meanwhile already got
its rules at ingest). Each batch is read without locks; the rows that would change are then
locked (FOR UPDATE, in id order, waiting the few milliseconds an OCR completion or a user's
edit holds one), decided again on what they hold now, written and committed: safe next to
running daemons on any host, and never against a manual edit, which takes the same row lock
and is honoured through user_fields."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import DictRow

from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.db.rules_rows import write_many
from alfrd_daemon.logs import event
from alfrd_daemon.rules.model import RuleSet
from alfrd_daemon.rules.stored import decide

Q = load_named_queries("rules.sql")
log = logging.getLogger("alfrd.rules")
FIRST_ID = "00000000-0000-0000-0000-000000000000"
DEFAULT_BATCH = 500


@dataclass
class ApplyStats:
    documents: int = 0  # looked at
    changed: int = 0  # written
    timed_out: int = 0  # documents on which a pattern ran out of time
    last_id: str = FIRST_ID  # where a resumed run starts (--from-id)
    matched: dict[str, int] = field(default_factory=dict)  # rule → documents it matched

    def as_dict(self) -> dict[str, Any]:
        return {"documents": self.documents, "changed": self.changed,
                "timed_out": self.timed_out, "last_id": self.last_id,
                "matched": self.matched}


def count(conn: psycopg.Connection[DictRow], *, after: str, since: datetime | None) -> int:
    row = conn.execute(Q["rules_count"], {"after": after, "since": since}).fetchone()
    return int(row["n"]) if row else 0


def apply_batch(conn: psycopg.Connection[DictRow], ids: Sequence[Any], ruleset: RuleSet,
                stats: ApplyStats) -> None:
    """One batch: read `ids` without locks and find the rows the rules would change; then,
    in one short transaction, lock just those, apply again to what they hold now (a user's
    edit or an OCR result may have come in between), and write the ones that still change.
    A row that changes after the first read was written by OCR (which runs the rules
    itself) or by the user (whose edits rules leave alone), so skipping it loses nothing."""
    rows = conn.execute(Q["rules_read_ids"], {"ids": list(ids)}).fetchall()
    stale = []
    for row in rows:
        decision = decide(ruleset, row)
        out = decision.outcome
        stats.documents += 1
        for name in out.matched:
            stats.matched[name] = stats.matched.get(name, 0) + 1
        if out.timed_out:
            stats.timed_out += 1
            event(log, "rule_timeout", f"rules ran out of time on {row['id']}",
                  level=logging.WARNING, document_id=str(row["id"]),
                  rules=sorted(out.timed_out))
        if decision.params is not None:
            stale.append(row["id"])
    if not stale:
        return
    with conn.transaction(), conn.cursor() as cur:
        locked = cur.execute(Q["rules_lock_ids"], {"ids": stale}).fetchall()
        updates = [p for p in (decide(ruleset, row).params for row in locked) if p is not None]
        write_many(cur, updates)
    stats.changed += len(updates)


def apply_all(conn: psycopg.Connection[DictRow], ruleset: RuleSet, *,
              since: datetime | None = None, after: str = FIRST_ID,
              batch_size: int = DEFAULT_BATCH,
              on_batch: Callable[[ApplyStats, int], None] | None = None,
              stop: threading.Event | None = None,
              stats: ApplyStats | None = None) -> ApplyStats:
    """Every stored document (not failed, not in the trash; ingested since `since`) after
    the id `after`. `conn` must be in autocommit mode: each batch is its own transaction.
    `stats` (filled as batches commit) tells an interrupted caller where to resume."""
    stats = stats if stats is not None else ApplyStats()
    stats.last_id = after
    while stop is None or not stop.is_set():
        ids = [r["id"] for r in conn.execute(Q["rules_next_ids"], {
            "after": stats.last_id, "since": since, "limit": batch_size}).fetchall()]
        if not ids:
            break
        apply_batch(conn, ids, ruleset, stats)
        stats.last_id = str(ids[-1])
        if on_batch is not None:
            on_batch(stats, len(ids))
    return stats


def resolve_ids(conn: psycopg.Connection[DictRow], prefixes: Sequence[str]
                ) -> tuple[list[Any], list[str]]:
    """(the ids the prefixes name, the prefixes that name no document or several)."""
    ids, bad = [], []
    for prefix in prefixes:
        rows = conn.execute(Q["rules_find_ids"], {"id": prefix, "prefix": prefix + "%"}
                            ).fetchall()
        if len(rows) == 1:
            ids.append(rows[0]["id"])
        else:
            bad.append(prefix)
    return sorted(set(ids), key=str), bad
