"""One file from the inbox to a committed row.

claim (atomic rename) → hash while reading once → extract → link into the store → one
transaction (document, arrival, NOTIFY) → only then forget the claimed copy. A permanent
problem ends in failed/ with a note and a failed row (failures.py); a transient one (database
away, disk full) leaves the file claimed and asks for a retry. An ALFRD document folder takes
the same way through folders.py.
"""

from __future__ import annotations

import functools
import logging
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from alfrd_daemon.config.settings import Settings
from alfrd_daemon.db.pool import Database, DatabaseUnavailable
from alfrd_daemon.extract.pool import ExtractorPool
from alfrd_daemon.ingest import folderdoc, rows
from alfrd_daemon.ingest.claim import ClaimArea, ClaimBusy, Release
from alfrd_daemon.ingest.committer import Committer, Pending
from alfrd_daemon.ingest.counters import Counters
from alfrd_daemon.ingest.errors import TRANSIENT_OS_ERRORS, Permanent, StillWriting, Transient
from alfrd_daemon.ingest.failed import FailedFolder
from alfrd_daemon.ingest.failures import FailureRecorder
from alfrd_daemon.ingest.folders import FolderIngestor
from alfrd_daemon.ingest.reading import Reader, ReadResult
from alfrd_daemon.ingest.rows import RowBuilder
from alfrd_daemon.ingest.store import Store
from alfrd_daemon.ingest.work import Outcome, WorkItem
from alfrd_daemon.ingest.writers import writer_open
from alfrd_daemon.logs import event
from alfrd_daemon.pgsafe import display_text

log = logging.getLogger("alfrd.ingest")


class Ingestor:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        store: Store,
        claims: ClaimArea,
        failed: FailedFolder,
        counters: Counters | None = None,
        committer: Committer | None = None,
        on_complete: Callable[[WorkItem, Outcome], None] | None = None,
        extractors: ExtractorPool | None = None,
        release_later: Callable[[Callable[[], None]], None] | None = None,
        in_flight: Callable[[], int],
    ):
        self.settings = settings
        self.db = db
        self.store = store
        self.claims = claims
        self.counters = counters or Counters()
        self.committer = committer
        self.on_complete = on_complete
        self.reader = Reader(settings, store, extractors)
        # Where the committer has claimed copies released (unlink frees the copy's inode and
        # blocks: serial in the committer it capped throughput); None: in the caller.
        self.release_later = release_later
        # Files handed to the workers and not finished yet: no default, so no caller forgets
        # it (with none, every worker of a backlog fsyncs each file).
        self.in_flight = in_flight
        self.builder = RowBuilder(settings, store, claims.instance)
        self.failures = FailureRecorder(db=db, claims=claims, failed=failed,
                                        builder=self.builder)
        self.folders = FolderIngestor(db=db, claims=claims, reader=self.reader,
                                      builder=self.builder)

    def reconfigure(self, settings: Settings) -> None:
        self.settings = self.reader.settings = self.builder.settings = settings

    # --- entry points --------------------------------------------------------------------------
    def process(self, item: WorkItem) -> Outcome:
        with self.counters.lock:
            self.counters.in_progress += 1
        try:
            outcome = self._process(item)
        finally:
            with self.counters.lock:
                self.counters.in_progress -= 1
        if outcome is not Outcome.PENDING:
            self.counters.add(outcome)
        return outcome

    def fail_internal(self, item: WorkItem, reason: str) -> Outcome:
        """A file that keeps raising unexpected errors goes to failed/ with that reason. If
        recording the failure is what breaks, it is still moved beside its note: no file
        loops for ever, and none vanishes."""
        relpath = item.relpath
        path = self.claims.path(relpath)
        if not os.path.lexists(path):
            claimed = self.claims.claim(relpath)
            if claimed is None:
                return Outcome.GONE
            path = claimed
        try:
            outcome = self.failures.fail(relpath, path, Permanent(reason))
        except DatabaseUnavailable:
            raise
        except Exception:
            log.exception("recording the failure of %s failed too", display_text(relpath))
            self.failures.file_unrecorded(relpath, path, reason)
            outcome = Outcome.FAILED
        self.counters.add(outcome)
        return outcome

    def _process(self, item: WorkItem) -> Outcome:
        relpath = item.relpath
        if item.claimed:
            path = self.claims.path(relpath)
            if not os.path.lexists(path):
                return Outcome.GONE
            if self._writer_holds(path):
                return Outcome.RETRY  # stays claimed; looked at again after the backoff
        else:
            if self._writer_holds(self.claims.inbox / relpath):
                log.debug("still open for writing, not claimed yet: %s", display_text(relpath))
                return Outcome.WRITING
            try:
                claimed = self.claims.claim(relpath)
            except ClaimBusy:
                return Outcome.BUSY
            except OSError as exc:
                if exc.errno in TRANSIENT_OS_ERRORS:
                    self._transient(relpath, f"cannot claim: {exc.strerror}")
                    return Outcome.BUSY
                raise
            if claimed is None:
                log.debug("gone before claim: %s", relpath)
                return Outcome.GONE
            path = claimed
        try:
            try:
                st = os.lstat(path)
                if stat.S_ISDIR(st.st_mode) and (path / folderdoc.META_NAME).is_file():
                    return self.folders.process(relpath, path)
                return self._process_file(relpath, path, item)
            except Permanent as exc:  # on every path: a permanent problem never loops
                return self.failures.fail(relpath, path, exc)
        except StillWriting as exc:
            log.info("%s: %s; reading it again later", display_text(relpath), exc)
            return Outcome.RETRY
        except Transient as exc:
            self._transient(relpath, str(exc))
            return Outcome.RETRY
        except DatabaseUnavailable as exc:
            self._transient(relpath, f"database unavailable: {exc}")
            return Outcome.RETRY
        except FileNotFoundError:
            # Someone removed our claimed copy (an operator, or a concurrent `alfrd check`).
            return Outcome.GONE

    def _writer_holds(self, path: Path) -> bool:
        """A regular file that some process still has open for writing, where the kernel can
        tell (watch.lease_check). A writer that has held it for stale_write_seconds without
        writing does not hold it up for ever: it is read, and checked again before release."""
        if not self.settings.watch.lease_check:
            return False
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode):
                return False  # never opened; the reader files it under failed/
            if time.time() - st.st_mtime_ns / 1e9 > self.settings.watch.stale_write_seconds:
                return False
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
                         | os.O_NOCTTY)
        except OSError:
            return False  # gone or unreadable: the normal path gives the outcome
        try:
            return writer_open(fd) is True
        finally:
            os.close(fd)

    def _transient(self, relpath: str, reason: str) -> None:
        self.counters.transient(reason)
        event(log, "retry", f"will retry {display_text(relpath)}: {reason}",
              level=logging.WARNING, path=display_text(relpath), reason=reason)

    # --- one file ------------------------------------------------------------------------------
    def _process_file(self, relpath: str, path: Path, item: WorkItem) -> Outcome:
        """First attempts go through the committer (group commit, one syncfs per batch);
        retries take the one-file path, flushing and committing on their own."""
        batched = self.committer is not None and item.attempt == 0
        sync_here = not batched or (self.committer is not None
                                    and self.committer.wants_worker_fsync(self.in_flight()))
        read = self.reader.read(path, sync=sync_here)
        try:
            # Extraction reads the private copy: the bytes that were hashed and get stored.
            extraction = self.reader.extract(read.incoming.path, Path(relpath).name)
            stored = self.reader.adopt(read, sync=sync_here)
        except BaseException:
            self.store.discard(read.incoming)
            raise
        prepared = self.builder.prepare(relpath, sha256=read.sha256, size=read.size,
                                        claim_key=read.claim_key, extraction=extraction,
                                        stored_path=stored)
        if batched:
            assert self.committer is not None
            self.committer.submit(Pending(prepared.row, prepared.arrival, functools.partial(
                self._committed, item, read), stored=self.store.path(read.sha256),
                durable=sync_here))
            return Outcome.PENDING
        try:
            outcome, document_id = rows.write_one(self.db, prepared)
        except Permanent as exc:
            return self.failures.fail(relpath, path, exc)
        rows.log_outcome(outcome, relpath, read.sha256, document_id)
        if not self._release(relpath, read):
            self.counters.add(outcome)
            return Outcome.RETRY
        return outcome

    def _committed(self, item: WorkItem, read: ReadResult, result: str | BaseException,
                   document_id: str | None, replayed: bool) -> None:
        """The committer's verdict on one file (runs in the committer thread)."""
        relpath = item.relpath
        if isinstance(result, BaseException):
            reason = (f"database unavailable: {result}" if isinstance(result, DatabaseUnavailable)
                      else f"commit failed: {type(result).__name__}: {result}")
            self._transient(relpath, reason)
            outcome = Outcome.RETRY  # stays claimed; the retry commits on its own
            self.counters.add(outcome)
        else:
            outcome = Outcome(result)
            if replayed:
                log.info("claim replayed after a restart; already recorded: %s",
                         display_text(relpath))
            rows.log_outcome(outcome, relpath, read.sha256, str(document_id))
            self.counters.add(outcome)
            done = functools.partial(self._release_and_finish, item, read, outcome)
            if self.release_later is not None:
                self.release_later(done)
            else:
                done()
            return
        if self.on_complete is not None:
            self.on_complete(item, outcome)

    def _release_and_finish(self, item: WorkItem, read: ReadResult, outcome: Outcome) -> None:
        """After the commit: forget the claimed copy (or have it read again), then report."""
        try:
            if not self._release(item.relpath, read):
                outcome = Outcome.RETRY
        except Exception:  # the row is committed; the claimed copy is replayed as a no-op
            log.exception("releasing the claimed copy of %s failed", display_text(item.relpath))
            outcome = Outcome.RETRY
        if self.on_complete is not None:
            self.on_complete(item, outcome)

    def _release(self, relpath: str, read: ReadResult) -> bool:
        """Forget the claimed copy, but only if it is still the file that was read. If not,
        its new content is a new arrival: False, and the caller has it ingested again."""
        verdict = self.claims.release_unchanged(relpath, read.identity)
        if verdict is Release.RELEASED:
            return True
        shown = display_text(relpath)
        why = ("it changed after it was read" if verdict is Release.CHANGED
               else "a writer still has it open")
        event(log, "changed_after_read", f"{shown}: {why}; its new content is ingested too",
              level=logging.WARNING, path=shown, sha256=read.sha256, reason=verdict.value)
        return False
