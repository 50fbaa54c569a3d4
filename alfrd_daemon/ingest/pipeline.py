"""One file (or one ALFRD document folder) from the inbox to a committed row.

claim (atomic rename) → hash while reading once → extract → link into the store → one
transaction (document, arrival, NOTIFY) → only then forget the claimed copy. A permanent
problem ends in failed/ with a note and a failed row; a transient one (database away, disk
full) leaves the file claimed and asks for a retry.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import logging
import os
import socket
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from alfrd_daemon.config.settings import Settings
from alfrd_daemon.db.pool import QUERIES, Database, DatabaseUnavailable
from alfrd_daemon.extract.core import Extraction, ExtractLimits, PermanentExtractionError, extract
from alfrd_daemon.ingest import committer, folderdoc
from alfrd_daemon.ingest.claim import ClaimArea, ClaimBusy, FileIdentity, Release
from alfrd_daemon.ingest.committer import Committer, Pending
from alfrd_daemon.ingest.failed import FailedFolder
from alfrd_daemon.ingest.paths import merge_tags, tags_for
from alfrd_daemon.ingest.store import Incoming, SourceReadError, SourceTooLarge, Store
from alfrd_daemon.ingest.writers import writer_open
from alfrd_daemon.logs import event
from alfrd_daemon.pgsafe import clean_json, clean_tags, clean_text, display_text

log = logging.getLogger("alfrd.ingest")

# Disk full and friends: the file is fine, the machine is not; try again later.
TRANSIENT_OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM,
                       errno.EMFILE, errno.ENFILE}


class Outcome(Enum):
    INGESTED = "ingested"
    DUPLICATE = "duplicate"
    FAILED = "failed"
    GONE = "gone"
    RETRY = "retry"
    BUSY = "busy"
    PENDING = "pending"  # handed to the committer; finished later through on_complete
    WRITING = "writing"  # a writer still has it open: not claimed, judged again later


@dataclass(frozen=True)
class WorkItem:
    relpath: str
    claimed: bool = False
    attempt: int = 0


class Permanent(Exception):
    """This file can never be ingested as it is; `reason` says why."""

    def __init__(self, reason: str, sha256: str | None = None, size: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.sha256 = sha256
        self.size = size


class Transient(Exception):
    """Not the file's fault (database away, disk full): keep it claimed and retry."""


class StillWriting(Exception):
    """The claimed file changed while it was read, or a writer still holds it: nothing is
    wrong with the machine, so intake goes on; this file is read again after a pause."""


@dataclass
class Counters:
    ingested: int = 0
    duplicates: int = 0
    failed: int = 0
    retries: int = 0
    gone: int = 0
    in_progress: int = 0
    last_transient: str | None = None
    transient_since: float | None = None
    # Since when files have failed transiently with no file going through; unlike
    # transient_since, a passing probe does not clear it (a probe can pass while files fail).
    failing_since: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, outcome: Outcome) -> None:
        with self.lock:
            if outcome is Outcome.INGESTED:
                self.ingested += 1
            elif outcome is Outcome.DUPLICATE:
                self.duplicates += 1
            elif outcome is Outcome.FAILED:
                self.failed += 1
            elif outcome is Outcome.RETRY:
                self.retries += 1
            elif outcome is Outcome.GONE:
                self.gone += 1
            if outcome not in (Outcome.RETRY, Outcome.BUSY):
                self.transient_since = None
                self.last_transient = None
                self.failing_since = None

    def transient(self, reason: str) -> None:
        with self.lock:
            self.last_transient = reason
            if self.transient_since is None:
                self.transient_since = time.monotonic()
            if self.failing_since is None:
                self.failing_since = time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "ingested": self.ingested,
                "duplicates": self.duplicates,
                "failed": self.failed,
                "retries": self.retries,
                "gone": self.gone,
                "in_progress": self.in_progress,
                "last_transient": self.last_transient,
            }


@dataclass(frozen=True)
class ReadResult:
    sha256: str
    size: int
    claim_key: str
    identity: FileIdentity | None = None  # fstat of the descriptor that was read
    incoming: Incoming | None = None  # the private copy of exactly the bytes hashed


@dataclass
class Prepared:
    """Everything the database transaction needs, gathered before it starts."""

    row: dict[str, Any]
    arrival: dict[str, Any]


def kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a UNIX socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISLNK, "a symbolic link (links are never followed)"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


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
    ):
        self.settings = settings
        self.db = db
        self.store = store
        self.claims = claims
        self.failed = failed
        self.counters = counters or Counters()
        self.committer = committer
        self.on_complete = on_complete
        self.instance = claims.instance
        self.hostname = socket.gethostname()

    def reconfigure(self, settings: Settings) -> None:
        self.settings = settings

    @property
    def limits(self) -> ExtractLimits:
        e = self.settings.extract
        return ExtractLimits(timeout_seconds=e.timeout_seconds, max_text_chars=e.max_text_chars,
                             max_pdf_pages=e.max_pdf_pages, memory_limit_mb=e.memory_limit_mb)

    # --- entry point ---------------------------------------------------------------------------
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
                    return self._process_folder(relpath, path)
                return self._process_file(relpath, path, item)
            except Permanent as exc:  # on every path: a permanent problem never loops
                return self._fail(relpath, path, exc)
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
                return False  # never opened; _read files it under failed/
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
        name = display_text(Path(relpath).name)
        batched = self.committer is not None and item.attempt == 0
        sync_here = not batched or (self.committer is not None
                                    and self.committer.wants_worker_fsync())
        read = self._read(path, sync=sync_here)
        try:
            assert read.incoming is not None
            # Extraction reads the private copy: the bytes that were hashed and get stored.
            extraction = self._extract(read.incoming.path, Path(relpath).name)
            stored = self._store(read, sync=sync_here)
        except BaseException:
            self.store.discard(read.incoming)
            raise
        row = self._row(relpath, read, extraction, stored)
        arrival = self._arrival(relpath, name, read)
        if batched:
            assert self.committer is not None
            self.committer.submit(Pending(row, arrival, functools.partial(
                self._committed, item, read), stored=self.store.path(read.sha256),
                durable=sync_here))
            return Outcome.PENDING
        try:
            outcome, document_id = self._record(Prepared(row, arrival))
        except Permanent as exc:
            return self._fail(relpath, path, exc)
        self._log_outcome(outcome, relpath, read.sha256, document_id)
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
            self._log_outcome(outcome, relpath, read.sha256, str(document_id))
            self.counters.add(outcome)
            if not self._release(relpath, read):
                outcome = Outcome.RETRY
        if self.on_complete is not None:
            self.on_complete(item, outcome)

    def _release(self, relpath: str, read: ReadResult) -> bool:
        """Forget the claimed copy, but only if it is still the file that was read. If not,
        its new content is a new arrival: False, and the caller has it ingested again."""
        assert read.identity is not None
        verdict = self.claims.release_unchanged(relpath, read.identity)
        if verdict is Release.RELEASED:
            return True
        shown = display_text(relpath)
        why = ("it changed after it was read" if verdict is Release.CHANGED
               else "a writer still has it open")
        event(log, "changed_after_read", f"{shown}: {why}; its new content is ingested too",
              level=logging.WARNING, path=shown, sha256=read.sha256, reason=verdict.value)
        return False

    def _read(self, path: Path, *, sync: bool = True) -> ReadResult:
        """Copy into the store while hashing, reading the file once, never following links
        and never blocking on a FIFO."""
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise Permanent(f"{kind_of(st.st_mode)}: only regular files are ingested")
        limit = self.settings.workers.max_file_size
        if st.st_size > limit:
            raise Permanent(f"too large: {st.st_size} bytes, the limit (workers.max_file_size) "
                            f"is {limit}", size=st.st_size)
        if st.st_size == 0:
            raise Permanent("empty file (0 bytes)", size=0)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except PermissionError as exc:
            raise Permanent(f"unreadable: {exc.strerror}", size=st.st_size) from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Permanent("a symbolic link (links are never followed)") from exc
            raise
        try:
            return self._copy_fd(fd, limit, sync=sync)
        finally:
            os.close(fd)

    def _copy_fd(self, fd: int, limit: int, *, sync: bool = True) -> ReadResult:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise Permanent(f"{kind_of(before.st_mode)}: only regular files are ingested")
        try:
            incoming = self.store.receive(fd, limit=limit,
                                          sync=sync and self.settings.store.fsync)
        except SourceTooLarge as exc:
            raise Permanent(f"too large: more than {limit} bytes (still growing)",
                            size=exc.size) from exc
        except SourceReadError as exc:
            if exc.error.errno in TRANSIENT_OS_ERRORS:
                raise Transient(f"read error: {exc.error.strerror}") from exc
            raise Permanent(f"unreadable: {exc.error.strerror}", size=exc.size) from exc
        except OSError as exc:
            raise Transient(f"cannot write the store: {exc.strerror or exc}") from exc
        after = os.fstat(fd)
        if FileIdentity.of(after) != FileIdentity.of(before) or after.st_size != incoming.size:
            self.store.discard(incoming)
            raise StillWriting("it changed while it was read")
        if incoming.size == 0:
            self.store.discard(incoming)
            raise Permanent("empty file (0 bytes)", size=0)
        sha = incoming.sha256
        key = f"{after.st_dev}:{after.st_ino}:{after.st_mtime_ns}:{incoming.size}:{sha}"
        return ReadResult(sha, incoming.size, key, FileIdentity.of(after), incoming)

    def _extract(self, path: Path, name: str) -> Extraction:
        try:
            return extract(path, self.limits, name=name)
        except PermanentExtractionError as exc:
            raise Permanent(exc.reason) from exc
        except MemoryError as exc:
            raise Permanent("extraction ran out of memory") from exc
        except OSError as exc:
            if exc.errno in TRANSIENT_OS_ERRORS:
                raise Transient(f"extraction: {exc.strerror}") from exc
            raise Permanent(f"unreadable during extraction: {exc.strerror}") from exc
        except Exception as exc:  # an extractor bug must fail one file, not the daemon
            log.exception("extractor crashed on %s", display_text(name))
            raise Permanent(f"extractor error: {type(exc).__name__}: {exc}") from exc

    def _store(self, read: ReadResult, *, sync: bool = True) -> str:
        assert read.incoming is not None
        try:
            return self.store.adopt(read.incoming, sync=self.settings.store.fsync and sync)
        except OSError as exc:
            raise Transient(f"cannot write the store: {exc.strerror or exc}") from exc

    def _row(
        self, relpath: str, read: ReadResult, x: Extraction, stored: str | None,
        *, doc_id: str | None = None, tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        meta = dict(x.metadata)
        if x.truncated:
            meta["text_truncated"] = True
        if metadata:
            meta.update(metadata)
        return {
            "id": doc_id,
            "sha256": read.sha256,
            "original_name": display_text(Path(relpath).name),
            "source_path": display_text(relpath),
            "tags": clean_tags(tags if tags is not None else self._tags(relpath)),
            "mime_type": x.mime_type,
            "size_bytes": read.size,
            "stored_path": stored,
            "status": x.status,
            "title": clean_text(x.title) if x.title else None,
            "extracted_text": clean_text(x.text),
            "extractor": x.extractor,
            "search_config": self.settings.search.language,
            "metadata": Jsonb(clean_json(meta)),
            "error": None,
            "store_id": self.store.id,
        }

    def _tags(self, relpath: str) -> list[str]:
        return tags_for(relpath, subdirs_as_tags=self.settings.inbox.subdirs_as_tags)

    def _arrival(self, relpath: str, name: str, read: ReadResult) -> dict[str, Any]:
        return {
            "claim_key": f"{read.claim_key}:{_path_tag(relpath)}",
            "source_path": display_text(relpath),
            "original_name": name,
            "size_bytes": read.size,
            "instance": self.instance,
        }

    def _record(self, p: Prepared) -> tuple[Outcome, str]:
        """One file's transaction, written by the same code as a committer batch."""
        try:
            [(outcome, document_id, replayed)] = committer.write_rows(
                self.db, [(p.row, p.arrival)])
        except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
            raise Permanent(f"the database refused the row: {exc}") from exc
        if replayed:
            log.info("claim replayed after a restart; already recorded: %s",
                     p.arrival["source_path"])
        return Outcome(outcome), document_id

    def _log_outcome(self, outcome: Outcome, relpath: str, sha: str, doc_id: str) -> None:
        shown = display_text(relpath)
        if outcome is Outcome.INGESTED:
            event(log, "ingested", f"ingested {shown}", path=shown, sha256=sha,
                  document_id=doc_id)
        else:
            event(log, "duplicate", f"duplicate of {doc_id}: {shown}", path=shown, sha256=sha,
                  document_id=doc_id)

    # --- failures ------------------------------------------------------------------------------
    def _fail(self, relpath: str, path: Path, problem: Permanent) -> Outcome:
        """Record the failure, then move the file beside its note. If the database is away
        this raises DatabaseUnavailable and the file stays claimed."""
        shown = display_text(relpath)
        try:
            st = os.lstat(path)
            key = (f"failed:{st.st_dev}:{st.st_ino}:{st.st_mtime_ns}:{st.st_size}:"
                   f"{_path_tag(relpath)}")
            problem.size = problem.size if problem.size is not None else st.st_size
        except FileNotFoundError:
            return Outcome.GONE
        name = self.failed.free_name(relpath)
        outcome, document_id, recorded = self._record_failure(relpath, name, key, problem)
        if outcome is Outcome.DUPLICATE:
            # The same content is already archived; this copy only failed to extract again.
            self.claims.release(relpath)
            self._log_outcome(outcome, relpath, problem.sha256 or "", document_id)
            return outcome
        note = {"reason": problem.reason, "source_path": shown, "sha256": problem.sha256,
                "size_bytes": problem.size, "document_id": document_id,
                "instance": self.instance}
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
                             "store_id": self.store.id})
        event(log, "failed", f"failed {shown}: {problem.reason}", level=logging.WARNING,
              path=shown, reason=problem.reason, sha256=problem.sha256 or "",
              document_id=document_id, failed_path=display_text(placed))
        return Outcome.FAILED

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
            outcome = self._fail(relpath, path, Permanent(reason))
        except DatabaseUnavailable:
            raise
        except Exception:
            log.exception("recording the failure of %s failed too", display_text(relpath))
            shown = display_text(relpath)
            placed = self.failed.put(path, relpath, {
                "reason": reason, "source_path": shown, "instance": self.instance,
                "note": "no failed row was recorded; see the daemon's log"})
            event(log, "failed", f"failed {shown}: {reason}", level=logging.WARNING,
                  path=shown, reason=reason, failed_path=display_text(placed))
            outcome = Outcome.FAILED
        self.counters.add(outcome)
        return outcome

    def _record_failure(
        self, relpath: str, name: str, key: str, problem: Permanent
    ) -> tuple[Outcome, str, str]:
        """The arrival goes first: a failure replayed after a crash finds its key taken and
        reuses the row it made, even when the content (and so the sha256) was never known.
        Returns the outcome, the row's id and the failed/ path the row records."""
        shown = display_text(relpath)
        arrival = {"claim_key": key, "source_path": shown,
                   "original_name": display_text(Path(relpath).name),
                   "size_bytes": problem.size, "instance": self.instance,
                   "document_id": None, "outcome": "failed"}
        stored_path = f"failed/{display_text(name)}"
        with self.db.transaction() as cur:
            arrival_row = cur.execute(QUERIES["insert_arrival"], arrival).fetchone()
            if arrival_row is None:
                prior = cur.execute(QUERIES["arrival_document"], {"claim_key": key}).fetchone()
                outcome = Outcome.DUPLICATE if prior["outcome"] == "duplicate" else (
                    Outcome.FAILED)
                recorded = cur.execute(QUERIES["arrival_stored_path"],
                                       {"claim_key": key}).fetchone()
                return (outcome, str(prior["document_id"]),
                        (recorded or {}).get("stored_path") or "")
            row = {
                "id": None, "sha256": problem.sha256, "original_name": arrival["original_name"],
                "source_path": shown, "tags": clean_tags(self._tags(relpath)), "mime_type": None,
                "size_bytes": problem.size, "stored_path": stored_path, "status": "failed",
                "title": None, "extracted_text": None, "extractor": None,
                "search_config": self.settings.search.language, "metadata": Jsonb({}),
                "error": clean_text(problem.reason), "store_id": self.store.id,
            }
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
                                 "stored_path": stored_path, "store_id": self.store.id})
                else:
                    outcome = Outcome.DUPLICATE
            cur.execute(QUERIES["set_arrival_document"],
                        {"document_id": document_id, "outcome": outcome.value,
                         "arrival_id": arrival_row["id"]})
        return outcome, str(document_id), stored_path

    # --- ALFRD document folders ----------------------------------------------------------------
    def _process_folder(self, relpath: str, path: Path) -> Outcome:
        pages: list[tuple[folderdoc.Page, ReadResult, Extraction]] = []
        reads: list[ReadResult] = []  # each page's private copy, removed unless adopted
        try:
            try:
                meta = self._read_meta(path)
                for page in meta.pages:
                    read = self._read(path / page.file)
                    reads.append(read)
                    assert read.incoming is not None
                    pages.append((page, read, self._extract(read.incoming.path, page.file)))
            except folderdoc.InvalidFolder as exc:
                raise Permanent(f"invalid document folder: {exc}") from exc
            except Permanent as exc:
                raise Permanent(f"document folder page: {exc.reason}") from exc
            page_meta = []
            for page, read, extraction in pages:
                stored = self._store(read)
                page_meta.append({"file": display_text(page.file), "type": page.type,
                                  "order": page.order, "sha256": read.sha256,
                                  "size": read.size, "mime_type": extraction.mime_type,
                                  "stored_path": stored, "status": extraction.status})
        finally:
            for read in reads:
                self.store.discard(read.incoming)  # an adopted copy is gone already
        digest = folderdoc.folder_digest([(p, r.sha256) for p, r, _ in pages])
        text = "\n\n".join(x.text for _, _, x in pages if x.text)
        status = "extracted" if all(x.status == "extracted" for *_, x in pages) else "pending"
        combined = Extraction(text=text, mime_type="application/x-alfrd-folder", status=status,
                              extractor="folder/1+" + "+".join(sorted({x.extractor for *_, x
                                                                       in pages})))
        total = sum(r.size for _, r, _ in pages)
        first_key = pages[0][1].claim_key
        read = ReadResult(digest, total, f"folder:{meta.id}:{first_key}")
        tags = merge_tags(self._tags(relpath), list(meta.tags))
        metadata = {"folder": {"id": meta.id, "created_at": meta.created_at,
                               "source": meta.source, "extra": meta.extra, "pages": page_meta}}
        row = self._row(relpath, read, combined, page_meta[0]["stored_path"], doc_id=meta.id,
                        tags=tags, metadata=metadata)
        arrival = self._arrival(relpath, display_text(Path(relpath).name), read)
        outcome, document_id = self._record(Prepared(row, arrival))
        self.claims.release(relpath)
        self._log_outcome(outcome, relpath, digest, document_id)
        return outcome

    def _read_meta(self, folder: Path) -> folderdoc.FolderMeta:
        meta_path = folder / folderdoc.META_NAME
        st = os.lstat(meta_path)
        if not stat.S_ISREG(st.st_mode):
            raise folderdoc.InvalidFolder("meta.json is not a regular file")
        if st.st_size > folderdoc.MAX_META_BYTES:
            raise folderdoc.InvalidFolder(
                f"meta.json is {st.st_size} bytes, more than {folderdoc.MAX_META_BYTES}")
        fd = os.open(meta_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            raw = os.read(fd, folderdoc.MAX_META_BYTES + 1)
        finally:
            os.close(fd)
        meta = folderdoc.parse_meta(raw)
        for page in meta.pages:
            try:
                page_st = os.lstat(folder / page.file)
            except FileNotFoundError as exc:
                raise folderdoc.InvalidFolder(f"page {page.file!r} is missing") from exc
            if not stat.S_ISREG(page_st.st_mode):
                raise folderdoc.InvalidFolder(
                    f"page {page.file!r} is {kind_of(page_st.st_mode)}")
        return meta


def _path_tag(relpath: str) -> str:
    """Part of an arrival key: the relative path, which a claim keeps across crashes and
    adoption. Two hard links to one inode dropped under two names share device, inode, mtime
    and content, yet are two arrivals; only a replay of the same claim has the same path."""
    return hashlib.sha256(os.fsencode(relpath)).hexdigest()[:16]

