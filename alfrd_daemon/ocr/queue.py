"""The OCR queue in PostgreSQL: claim one job with `FOR UPDATE SKIP LOCKED` under a lease,
renew the lease while reading, and complete, fail or release it.

Each claim gets a lease token of its own (`Job.owner`), and every later statement matches it:
a worker whose lease expired and was taken over by another finds its statements touching no
row, so a document is never completed twice, however late the first worker wakes up.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from alfrd_daemon.dates import DateResult
from alfrd_daemon.db.pool import Database
from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.pgsafe import clean_json, clean_text

Q = load_named_queries("ocr.sql")
REASON_MAX_CHARS = 2000  # a reason is one sentence; a library's traceback text is cut


@dataclass(frozen=True)
class Job:
    document_id: str
    owner: str  # this claim's lease token
    attempts: int  # counting this one
    last_error: str | None
    stored_path: str | None
    mime_type: str | None
    original_name: str
    # An ALFRD document folder's pages (metadata.folder.pages), None for a single file.
    folder_pages: list[dict[str, Any]] | None = None


class OcrQueue:
    def __init__(self, db: Database, *, worker: str, lease_seconds: float, max_attempts: int,
                 store_id: str | None = None):
        self.db = db
        self.worker = worker
        self.lease_seconds = lease_seconds
        self.max_attempts = max_attempts
        self.store_id = store_id

    def claim(self) -> Job | None:
        """The next due job, leased to us; None when there is none. Raises
        DatabaseUnavailable."""
        owner = f"{self.worker}/{secrets.token_hex(4)}"
        with self.db.transaction() as cur:
            row = cur.execute(Q["ocr_claim"], {"owner": owner,
                                               "lease_seconds": self.lease_seconds,
                                               "store_id": self.store_id}).fetchone()
        if row is None:
            return None
        return Job(document_id=str(row["document_id"]), owner=owner,
                   attempts=row["attempts"], last_error=row["last_error"],
                   stored_path=row["stored_path"], mime_type=row["mime_type"],
                   original_name=row["original_name"],
                   folder_pages=row["folder_pages"] if isinstance(row["folder_pages"], list)
                   else None)

    def renew(self, job: Job, pages_done: int, pages_total: int) -> bool:
        """Extend the lease; False when it is no longer ours. Waits a short while for a
        connection only: the page loop must not stall behind an outage."""
        with self.db.transaction(timeout=min(5.0, self.lease_seconds / 4)) as cur:
            row = cur.execute(Q["ocr_renew"], {
                "id": job.document_id, "owner": job.owner, "lease_seconds": self.lease_seconds,
                "pages_done": pages_done, "pages_total": pages_total}).fetchone()
        return row is not None

    def complete(self, job: Job, *, text: str, extractor: str, pages: int,
                 ocr: dict[str, Any],
                 then: Callable[[psycopg.Cursor[DictRow], str], object] | None = None,
                 dates: DateResult | None = None) -> bool:
        """Write the text and status 'extracted' in one transaction; False when the lease was
        lost (another worker has the document now, or it was taken back). `then` runs in
        the same transaction once the text is written (the rules). `dates`: the document's
        date read from the text (None: date detection is off)."""
        with self.db.transaction() as cur:
            row = cur.execute(Q["ocr_complete"], {
                "id": job.document_id, "owner": job.owner, "text": clean_text(text),
                "extractor": extractor, "pages": pages,
                "ocr": Jsonb(clean_json(ocr))}).fetchone()
            if row is not None and dates is not None:
                cur.execute(Q["ocr_document_date"], {
                    "id": job.document_id, "document_date": dates.document_date,
                    "dates": Jsonb(clean_json(dates.metadata()))})
            if row is not None:
                if then is not None:
                    then(cur, job.document_id)
                cur.execute("SELECT pg_notify('alfrd_documents', %s)", (job.document_id,))
        return row is not None

    def fail(self, job: Job, reason: str, delay_seconds: float) -> str:
        """One attempt failed for a reason of the document's. Returns the job's state now:
        'queued' (tried again after `delay_seconds`), 'failed' (max_attempts reached: the
        document is failed with the reason), or 'lost' (the lease was no longer ours)."""
        reason = clean_text(reason)[:REASON_MAX_CHARS]
        error = f"OCR failed ({job.attempts} attempts): {reason}"
        with self.db.transaction() as cur:
            row = cur.execute(Q["ocr_fail"], {
                "id": job.document_id, "owner": job.owner, "reason": reason, "error": error,
                "max_attempts": self.max_attempts, "delay_seconds": delay_seconds}).fetchone()
        return str(row["state"]) if row is not None else "lost"

    def release(self, job: Job, delay_seconds: float = 0.0) -> bool:
        """Back in the queue without counting the attempt (not the document's fault)."""
        with self.db.transaction() as cur:
            row = cur.execute(Q["ocr_release"], {
                "id": job.document_id, "owner": job.owner,
                "delay_seconds": delay_seconds}).fetchone()
        return row is not None

    def next_due_seconds(self) -> float | None:
        """Seconds until a queued job falls due or a lease expires (None: nothing waits)."""
        with self.db.transaction() as cur:
            row = cur.execute(Q["ocr_next_due"], {"store_id": self.store_id}).fetchone()
        if row is None or row["seconds"] is None:
            return None
        return max(0.0, float(row["seconds"]))
