"""Recording a file that cannot be ingested: its failed row and arrival in one transaction,
then the file moved beside its note in failed/.

The arrival goes first, so a failure replayed after a crash finds its key taken and reuses the
row it made, even when the content (and so the sha256) was never known. A file whose content
is already archived is no failure: its copy is dropped as a duplicate.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from alfrd_daemon.db.pool import Database, DatabaseUnavailable
from alfrd_daemon.db.queries import QUERIES
from alfrd_daemon.ingest import rows
from alfrd_daemon.ingest.claim import ClaimArea
from alfrd_daemon.ingest.errors import TRANSIENT_OS_ERRORS, Permanent, Transient
from alfrd_daemon.ingest.failed import FailedFolder
from alfrd_daemon.ingest.rows import RowBuilder
from alfrd_daemon.ingest.work import Outcome
from alfrd_daemon.logs import event
from alfrd_daemon.pgsafe import clean_text, display_text

log = logging.getLogger("alfrd.ingest")


class FailureRecorder:
    def __init__(self, *, db: Database, claims: ClaimArea, failed: FailedFolder,
                 builder: RowBuilder):
        self.db = db
        self.claims = claims
        self.failed = failed
        self.builder = builder

    def fail(self, relpath: str, path: Path, problem: Permanent) -> Outcome:
        """Record the failure, then move the file beside its note. If the database is away
        this raises DatabaseUnavailable and the file stays claimed."""
        shown = display_text(relpath)
        try:
            st = os.lstat(path)
            key = rows.arrival_key(
                f"failed:{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}:{st.st_size}", relpath)
            problem.size = problem.size if problem.size is not None else st.st_size
        except FileNotFoundError:
            return Outcome.GONE
        name = self.failed.free_name(relpath)
        outcome, document_id, recorded = self.record(relpath, name, key, problem)
        if outcome is Outcome.DUPLICATE:
            # The same content is already archived; this copy only failed to extract again.
            self.claims.release(relpath)
            rows.log_outcome(outcome, relpath, problem.sha256 or "", document_id)
            return outcome
        note: dict[str, object] = {
            "reason": problem.reason, "source_path": shown, "sha256": problem.sha256,
            "size_bytes": problem.size, "document_id": document_id,
            "instance": self.builder.instance}
        try:
            placed = self.failed.put(path, relpath, note,
                                     recorded=recorded.removeprefix("failed/"))
        except OSError as exc:
            if exc.errno in TRANSIENT_OS_ERRORS:
                raise Transient(f"cannot write the failed folder: {exc.strerror}") from exc
            raise
        if f"failed/{display_text(placed)}" != recorded:  # another failure took the name
            with self.db.transaction() as cur:
                cur.execute(QUERIES["refresh_failed_document"],
                            {"id": document_id, "error": clean_text(problem.reason),
                             "stored_path": f"failed/{display_text(placed)}",
                             "store_id": self.builder.store.id})
        event(log, "failed", f"failed {shown}: {problem.reason}", level=logging.WARNING,
              path=shown, reason=problem.reason, sha256=problem.sha256 or "",
              document_id=document_id, failed_path=display_text(placed))
        return Outcome.FAILED

    def record(
        self, relpath: str, name: str, key: str, problem: Permanent
    ) -> tuple[Outcome, str, str]:
        """The failed row and its arrival under `key`, in one transaction. Returns the
        outcome, the row's id and the failed/ path the row records."""
        arrival = {**self.builder.arrival(relpath, key, problem.size),
                   "document_id": None, "outcome": "failed"}
        stored_path = f"failed/{display_text(name)}"
        with self.db.transaction() as cur:
            arrival_row = cur.execute(QUERIES["insert_arrival"], arrival).fetchone()
            if arrival_row is None:
                prior = cur.execute(QUERIES["arrival_document"], {"claim_key": key}).fetchone()
                if prior is None:
                    raise DatabaseUnavailable("conflicting arrival vanished; retrying")
                outcome = Outcome.DUPLICATE if prior["outcome"] == "duplicate" else (
                    Outcome.FAILED)
                recorded = cur.execute(QUERIES["arrival_stored_path"],
                                       {"claim_key": key}).fetchone()
                return (outcome, str(prior["document_id"]),
                        (recorded or {}).get("stored_path") or "")
            row = self.builder.document(relpath, sha256=problem.sha256, size=problem.size,
                                        stored_path=stored_path, error=problem.reason)
            outcome = Outcome.FAILED
            inserted = cur.execute(QUERIES["insert_document"], row).fetchone()
            if inserted is not None:
                document_id = inserted["id"]
            else:
                existing = cur.execute(QUERIES["find_existing_document"],
                                       {"sha256": problem.sha256, "id": None}).fetchone()
                if existing is None:
                    raise DatabaseUnavailable("conflicting row vanished; retrying")
                document_id = existing["id"]
                if existing["status"] == "failed":
                    cur.execute(QUERIES["refresh_failed_document"],
                                {"id": document_id, "error": clean_text(problem.reason),
                                 "stored_path": stored_path,
                                 "store_id": self.builder.store.id})
                else:
                    outcome = Outcome.DUPLICATE
            cur.execute(QUERIES["set_arrival_document"],
                        {"document_id": document_id, "outcome": outcome.value,
                         "arrival_id": arrival_row["id"]})
        return outcome, str(document_id), stored_path

    def file_unrecorded(self, relpath: str, path: Path, reason: str) -> None:
        """Recording the failure broke: the file still goes beside its note, so none loops
        for ever and none vanishes."""
        shown = display_text(relpath)
        placed = self.failed.put(path, relpath, {
            "reason": reason, "source_path": shown, "instance": self.builder.instance,
            "note": "no failed row was recorded; see the daemon's log"})
        event(log, "failed", f"failed {shown}: {reason}", level=logging.WARNING,
              path=shown, reason=reason, failed_path=display_text(placed))
