"""Group commit: rows prepared by every worker share transactions and one flush to disk.

Per file, a worker hashes, extracts and links the file into the store, then hands the prepared
row here and moves on. One thread takes whatever has queued up (up to max_batch) and writes all
rows in one transaction: one statement for the documents and one for their arrivals, one WAL
flush for the batch instead of one per file. Stored files are made durable before that
commit: with little in flight, each worker fsyncs its own file (in parallel); with a backlog,
one syncfs(2) of the store's filesystem here covers the whole batch. Each file keeps its own
outcome (ingested, duplicate, or an error just for it): a batch that fails for one bad row is
replayed file by file, so the others still land. At low rates a batch is a single file;
nothing waits.
"""

from __future__ import annotations

import ctypes
import datetime as dt
import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb

from alfrd_daemon.db.pool import Database, DatabaseUnavailable
from alfrd_daemon.db.queries import QUERIES

log = logging.getLogger("alfrd.committer")

_libc = ctypes.CDLL(None, use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)


def _fsync(path: Path, flags: int) -> None:
    fd = os.open(path, flags | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_filesystem(path: Path) -> None:
    """Flush every dirty page of the filesystem holding `path` (one call for a whole batch of
    stored files and their directory entries)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if _syncfs is None or _syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


@dataclass
class Pending:
    """One prepared file waiting for its commit; `done` is called exactly once, from the
    committer thread, with ("ingested" | "duplicate", document_id) or an exception."""

    row: dict[str, Any]
    arrival: dict[str, Any]
    done: Callable[[str | BaseException, str | None, bool], None]
    stored: Path | None = None  # the store file to make durable before the commit, unless
    durable: bool = False  # the worker already fsynced it


_STOP = object()
# From this many files on, one syncfs beats an fsync of each file and its folder. Below it,
# targeted fsyncs avoid flushing unrelated dirty data (PostgreSQL's own files, a big copy in
# progress), which made small batches wait hundreds of milliseconds.
SYNCFS_FROM = 16
# Workers fsync their own files only while fewer than this many are in flight: below it a
# batch is small and targeted fsyncs in parallel keep latency low; above it the batches reach
# SYNCFS_FROM and one syncfs covers them.
WORKER_FSYNC_BELOW = 2 * SYNCFS_FROM


# While a backlog is in flight, a batch smaller than SYNCFS_FROM waits this long at most for
# more files. This thread can keep up with the workers, and then its batches stay small and
# it fsyncs each of their files in turn, serially; one syncfs for every small batch instead
# measured about 100 µs more kernel time per file than the runs whose batches were large.
GATHER_SECONDS = 0.02


def gathers(batch: int, in_flight: int) -> bool:
    """Whether a batch of `batch` files waits for more (GATHER_SECONDS at most): only while a
    backlog is in flight, never at low rates, where it would only add latency."""
    return batch < SYNCFS_FROM and in_flight >= WORKER_FSYNC_BELOW


class Committer:
    def __init__(self, db: Database, store_root: Path, *, fsync: bool,
                 in_flight: Callable[[], int], max_batch: int = 256,
                 gather_seconds: float = GATHER_SECONDS,
                 after_batch: Callable[[], None] | None = None):
        self.db = db
        self.store_root = store_root
        self.fsync = fsync
        # Files handed to the workers and not finished (the daemon's slots): no default, as
        # for the ingestor (see wants_worker_fsync and gathers).
        self.in_flight = in_flight
        self.max_batch = max_batch
        self.gather_seconds = gather_seconds
        # Called in this thread once every file of a batch has had its verdict: what the
        # verdicts queued can go on as one piece of work (the daemon's releases).
        self.after_batch = after_batch
        self.queue: queue.SimpleQueue[Pending | object] = queue.SimpleQueue()
        self.batches = 0  # committed transactions (a replayed batch counts each file)
        self.thread = threading.Thread(target=self._run, name="alfrd-committer", daemon=True)
        self.busy_since: float | None = None  # when the batch being written started

    def start(self) -> None:
        self.thread.start()

    def submit(self, pending: Pending) -> None:
        self.queue.put(pending)

    def stop(self, timeout: float) -> None:
        """Commit what is queued, then end."""
        self.queue.put(_STOP)
        self.thread.join(timeout)

    def alive(self) -> bool:
        return self.thread.is_alive()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self.queue.get()
            if first is _STOP:
                return
            batch = [first]
            deadline = None
            while len(batch) < self.max_batch:
                try:
                    if deadline is None:
                        item = self.queue.get_nowait()
                    else:
                        item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    if deadline is not None or not self.fsync \
                            or not gathers(len(batch), self.in_flight()):
                        break
                    deadline = time.monotonic() + self.gather_seconds
                    continue
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
                if deadline is not None and len(batch) >= SYNCFS_FROM:
                    deadline = None  # enough for one syncfs: take what is queued, then go
            self._commit(batch)  # type: ignore[arg-type]
            if self.after_batch is not None:
                try:
                    self.after_batch()
                except Exception:  # the commits must go on
                    log.exception("handing on a committed batch failed")

    def _commit(self, batch: list[Pending]) -> None:
        self.busy_since = time.monotonic()
        try:
            if self.fsync:
                self._make_durable(batch)
            results = self._write(batch)
        except DatabaseUnavailable as exc:
            self.busy_since = None
            for p in batch:
                _call(p, exc, None, False)
            return
        except (psycopg.Error, OSError) as exc:
            self.busy_since = None
            if len(batch) == 1:
                _call(batch[0], exc, None, False)
                return
            log.warning("a batch of %d rows failed (%s); committing them one by one",
                        len(batch), exc)
            for p in batch:
                self._commit([p])
            return
        self.batches += 1
        for p, (outcome, doc_id, replayed) in zip(batch, results, strict=True):
            _call(p, outcome, doc_id, replayed)

    def wants_worker_fsync(self, in_flight: int = 0) -> bool:
        """With little queued, workers fsync their own files, in parallel; with a backlog they
        leave it to one syncfs per batch here. `in_flight` (files handed to the workers and
        not yet committed) counts too: a committer that keeps its queue short must not make
        every worker of a backlog fsync each file (measured: 1.6 times the daemon's CPU)."""
        return self.queue.qsize() < SYNCFS_FROM and in_flight < WORKER_FSYNC_BELOW

    def _make_durable(self, batch: list[Pending]) -> None:
        pending = [p for p in batch if not p.durable and p.stored is not None]
        if len(pending) >= SYNCFS_FROM:
            sync_filesystem(self.store_root)
            return
        folders = set()
        for p in pending:
            if p.stored is not None:
                _fsync(p.stored, os.O_RDONLY)
                folders.add(p.stored.parent)
        for folder in folders:
            _fsync(folder, os.O_RDONLY | os.O_DIRECTORY)

    def _write(self, batch: list[Pending]) -> list[tuple[str, str, bool]]:
        try:
            return write_rows(self.db, [(p.row, p.arrival) for p in batch])
        finally:
            self.busy_since = None


Items = list[tuple[dict[str, Any], dict[str, Any]]]  # (document row, arrival) per file


def write_rows(db: Database, items: Items) -> list[tuple[str, str, bool]]:
    """Write documents and their arrivals in one transaction: the documents in one statement,
    then the rare conflicts one by one in batch order, then the arrivals in one statement, then
    NOTIFY for the new documents. Returns (outcome, document_id, replayed) per item; replayed
    means the arrival was already recorded (a claim finished again after a crash)."""
    first, later = _first_of_each(items)
    with db.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        inserted: dict[str, Any] = {}
        if first:
            cur.execute(QUERIES["insert_documents"],
                        {"rows": json_array([items[i][0] for i in first])})
            inserted = {got["sha256"]: got["id"] for got in cur.fetchall()}
        found: list[tuple[str, Any] | None] = [None] * len(items)
        for i in first:
            doc_id = inserted.get(items[i][0]["sha256"])
            if doc_id is not None:
                found[i] = ("ingested", doc_id)
        # The conflicts in batch order, as if the files had come one after another.
        outcomes = [got if got is not None
                    else _insert_or_resolve(cur, items[i][0], retry=i in later)
                    for i, got in enumerate(found)]
        arrivals = [{**arrival, "document_id": str(doc_id),
                     "outcome": "failed" if row["status"] == "failed" else outcome}
                    for (row, arrival), (outcome, doc_id) in zip(items, outcomes, strict=True)]
        recorded = _record_arrivals(cur, arrivals)
        fresh = [str(doc_id) for (outcome, doc_id), new in zip(outcomes, recorded, strict=True)
                 if outcome == "ingested" and new]
        if fresh:
            cur.execute(QUERIES["notify_documents"], {"ids": fresh})
    return [(outcome, str(doc_id), not new)
            for (outcome, doc_id), new in zip(outcomes, recorded, strict=True)]


def _first_of_each(items: Items) -> tuple[list[int], set[int]]:
    """Indexes of the rows whose content and id come first in the batch, and of the others: a
    later copy of the same content must see the first one, as it would one file later."""
    seen: set[str] = set()
    first: list[int] = []
    later: set[int] = set()
    for i, (row, _) in enumerate(items):
        keys = {row["sha256"]} if row.get("id") is None else {row["sha256"], f"id:{row['id']}"}
        if keys & seen:
            later.add(i)
        else:
            first.append(i)
        seen |= keys
    return first, later


def _insert_or_resolve(cur: psycopg.Cursor[DictRow], row: dict[str, Any], *,
                       retry: bool) -> tuple[str, Any]:
    if retry:  # a later copy in the batch: inserted now if the first one was not
        got = cur.execute(QUERIES["insert_document"], row).fetchone()
        if got is not None:
            return "ingested", got["id"]
    return _resolve_conflict(cur, row)


def _record_arrivals(cur: psycopg.Cursor[DictRow], arrivals: list[dict[str, Any]]) -> list[bool]:
    """Whether each arrival was recorded now; a claim key already there (or earlier in the
    batch) was not."""
    cur.execute(QUERIES["insert_arrivals"], {"arrivals": json_array(arrivals)})
    new = {got["claim_key"] for got in cur.fetchall()}
    recorded = []
    for arrival in arrivals:
        key = arrival["claim_key"]
        recorded.append(key in new)
        new.discard(key)
    return recorded


def json_array(rows: list[dict[str, Any]]) -> str:
    """Rows as one JSON array for jsonb_to_recordset. Their strings are already cleaned for
    PostgreSQL (pgsafe), so the text keeps its characters as they are. A value JSON cannot
    hold is the row's DataError, as psycopg's own adaptation would raise: the batch is
    replayed file by file and only that file fails."""
    try:
        return json.dumps(rows, ensure_ascii=False, default=_json_value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise psycopg.DataError(f"a row cannot be written: {exc}") from exc


def _json_value(value: Any) -> Any:
    if isinstance(value, Jsonb):
        return value.obj
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} into a row")


def _resolve_conflict(cur: psycopg.Cursor[DictRow], row: dict[str, Any]) -> tuple[str, Any]:
    """The row's content (or folder id) is already there: a duplicate, a failed row that
    this good copy replaces, or a document in the trash that this arrival brings back as a
    fresh ingest (dropping it again means the user wants it; paperless-ngx#7393)."""
    existing = cur.execute(QUERIES["find_existing_document"],
                           {"sha256": row["sha256"], "id": row["id"]}).fetchone()
    if existing is None:
        raise DatabaseUnavailable("conflicting row vanished; retrying")
    if existing["deleted_at"] is not None and row["status"] != "failed":
        cur.execute(QUERIES["revive_trashed_document"], {**row, "existing_id": existing["id"]})
        return "ingested", existing["id"]
    if existing["status"] == "failed" and row["status"] != "failed":
        cur.execute(QUERIES["replace_failed_document"], {**row, "existing_id": existing["id"]})
        return "ingested", existing["id"]
    return "duplicate", existing["id"]


def _call(p: Pending, outcome: str | BaseException, doc_id: str | None, replayed: bool) -> None:
    try:
        p.done(outcome, doc_id, replayed)
    except Exception:  # one file's bookkeeping must never stop the commits of the others
        log.exception("finishing a committed file failed")
