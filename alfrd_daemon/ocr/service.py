"""OcrService: the OCR stage of one process (the daemon, or `alfrd worker`).

N worker threads share one pool of OCR children; each takes one job at a time from the queue
in PostgreSQL. A LISTEN thread on a connection of its own wakes them when a document is
enqueued; they also look again every poll_seconds (a notification lost while the connection
was down) and when the next retry falls due or a lease runs out.

What goes wrong is sorted by whose fault it is:
- the document's (PermanentExtractionError, a stored file that is missing): one attempt
  counted; after max_attempts the document is failed with the reason;
- nobody's (the database away, the pool stopping or busy): the job is released uncounted;
- the host's (OcrUnavailable: Tesseract or a language missing): released uncounted, and no
  worker claims until the engine checks out again, so documents wait as pending.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import DictRow

from alfrd_daemon.config.settings import Settings
from alfrd_daemon.dates import DateResult, date_document
from alfrd_daemon.db.listen import Listener
from alfrd_daemon.db.pool import Database, DatabaseUnavailable
from alfrd_daemon.extract.api import EXTRACTOR_VERSIONS, ExtractLimits, PermanentExtractionError
from alfrd_daemon.extract.pool import ExtractorPool, ExtractorUnavailable
from alfrd_daemon.extract.sniff import FOLDER
from alfrd_daemon.ocr import rules_after
from alfrd_daemon.ocr.folder import ocr_folder, stored_file
from alfrd_daemon.ocr.queue import Job, OcrQueue
from alfrd_daemon.ocr.reader import (
    OcrLimits,
    OcrOutcome,
    OcrUnavailable,
    check_languages,
    engine_version,
    ocr_document,
    start_ocr_pool,
)
from alfrd_daemon.pgsafe import display_text
from alfrd_daemon.rules.load import RulesError, compiled

log = logging.getLogger("alfrd.ocr")

CHANNEL = "alfrd_ocr"
EXTRACTOR = f"ocr/{EXTRACTOR_VERSIONS['ocr']}"
RECHECK_ENGINE_SECONDS = 30.0  # how often an unavailable engine is looked at again
DB_RETRY_SECONDS = 2.0  # a worker's pause after the database did not answer


class LeaseLost(Exception):
    """Another worker holds the document now (our lease expired): stop reading it."""


def ocr_pool_size(workers: int) -> int:
    """ocr.workers, or 0: the cores this process may use less one (ingest), at least 1."""
    if workers > 0:
        return workers
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def ocr_limits(settings: Settings) -> OcrLimits:
    o = settings.ocr
    return OcrLimits(timeout_seconds=o.page_timeout_seconds, memory_limit_mb=o.memory_limit_mb,
                     max_pdf_pages=o.max_pages, max_text_chars=settings.extract.max_text_chars,
                     max_megapixels=o.max_megapixels, dpi=o.dpi,
                     pdf_min_page_chars=o.pdf_min_page_chars)


@dataclass
class OcrStats:
    documents: int = 0
    pages: int = 0
    failed_attempts: int = 0
    failed_documents: int = 0
    released: int = 0
    lost_leases: int = 0
    seconds: float = 0.0


class OcrService:
    def __init__(self, settings: Settings, db: Database, *, store_root: Path,
                 store_id: str | None, worker: str,
                 pool_factory: Callable[[int, OcrLimits], ExtractorPool] = start_ocr_pool):
        self.settings = settings
        self.db = db
        self.store_root = store_root
        self.limits = ocr_limits(settings)
        self.size = ocr_pool_size(settings.ocr.workers)
        self.queue = OcrQueue(db, worker=worker, lease_seconds=settings.ocr.lease_seconds,
                              max_attempts=settings.ocr.max_attempts, store_id=store_id)
        self._pool_factory = pool_factory
        self.pool: ExtractorPool | None = None
        self.stats = OcrStats()
        self.unavailable: str | None = "not started"
        self.engine: str | None = None
        self.busy: dict[str, float] = {}  # document id → when its worker took it
        self._stop = threading.Event()
        self._listener = Listener(db, CHANNEL, self._stop, self.wake, log, timeout=1.0,
                                  retry_seconds=DB_RETRY_SECONDS)
        self._cond = threading.Condition()
        self._generation = 0  # bumped by every wake-up; a worker sleeps only if it is unchanged
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._checked_at = 0.0
        # Told each document's OCR seconds and pages read (the daemon's metrics).
        self.observe: Callable[[float, int], None] | None = None

    # --- start and stop ------------------------------------------------------------------------
    def start(self) -> None:
        self._check_engine()
        for i in range(self.size):
            self._spawn(self._work_loop, f"alfrd-ocr-{i}")
        self._spawn(self._listener.run, "alfrd-ocr-listen")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop claiming; documents being read are released (their children are stopped with
        the pool). True when every thread ended within `timeout`."""
        self._stop.set()
        self.wake()
        with self._lock:  # not while _check_engine is starting the pool
            pool = self.pool
        if pool is not None:
            pool.close()  # a worker inside ocr_document gets PoolClosed and releases
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def alive(self) -> bool:
        return bool(self._threads) and all(t.is_alive() for t in self._threads)

    @property
    def listening(self) -> bool:
        return self._listener.listening

    def wake(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    # --- the engine ----------------------------------------------------------------------------
    def _check_engine(self) -> bool:
        """Languages and pool, checked now; False (with the reason kept) when OCR cannot run."""
        with self._lock:
            self._checked_at = time.monotonic()
            try:
                check_languages(self.settings.ocr.languages)
                engine = engine_version()
                if self.pool is None and not self._stop.is_set():
                    self.pool = self._pool_factory(self.size, self.limits)
            except OcrUnavailable as exc:
                self._set_unavailable(str(exc))
                return False
            except ExtractorUnavailable as exc:
                self._set_unavailable(f"the OCR processes did not start: {exc}")
                return False
            if self.unavailable is not None and self.unavailable != "not started":
                log.info("OCR is available again (%s)", engine)
            self.engine, self.unavailable = engine, None
            return True

    def _set_unavailable(self, reason: str) -> None:
        if reason != self.unavailable:
            log.warning("OCR unavailable, documents wait as pending: %s", reason)
        self.unavailable = reason

    def _engine_ready(self) -> bool:
        if self.unavailable is None:
            return True
        if time.monotonic() - self._checked_at < RECHECK_ENGINE_SECONDS:
            return False
        return self._check_engine()

    # --- the workers ---------------------------------------------------------------------------
    def _work_loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                seen = self._generation
            pause = self.settings.ocr.poll_seconds
            try:
                if self._engine_ready():
                    job = self.queue.claim()
                    if job is not None:
                        self._process(job)
                        continue
                    due = self.queue.next_due_seconds()
                    if due is not None:
                        pause = min(pause, due + 0.05)
                else:
                    pause = min(pause, RECHECK_ENGINE_SECONDS)
            except DatabaseUnavailable as exc:
                log.debug("OCR worker: database unavailable: %s", exc)
                pause = min(pause, DB_RETRY_SECONDS)
            except Exception:  # a bug must not end the worker: log it and look again later
                log.exception("OCR worker error")
                pause = min(pause, DB_RETRY_SECONDS)
            with self._cond:
                if self._generation == seen and not self._stop.is_set():
                    self._cond.wait(pause)

    def _process(self, job: Job) -> None:
        name = display_text(job.original_name)
        if job.attempts > self.queue.max_attempts:
            # Its earlier workers stopped or were killed while reading it, every time.
            reason = job.last_error or ("its OCR worker stopped or was killed while reading "
                                        "it, every time")
            self._fail(job, reason, name)
            return
        self.busy[job.document_id] = time.monotonic()
        try:
            self._read(job, name)
        finally:
            self.busy.pop(job.document_id, None)

    def _read(self, job: Job, name: str) -> None:
        path = stored_file(self.store_root, job.stored_path)
        if path is None or not path.is_file():
            self._fail(job, f"the stored file is missing: {job.stored_path!r} under "
                       f"{self.store_root}", name)
            return
        started = time.monotonic()
        assert self.pool is not None
        try:
            outcome = self._ocr(job, path)
        except LeaseLost:
            self.stats.lost_leases += 1
            log.warning("OCR of %s: another worker took it over (our lease expired)", name)
            return
        except PermanentExtractionError as exc:
            self._fail(job, exc.reason, name)
            return
        except OcrUnavailable as exc:
            self._set_unavailable(str(exc))
            self._checked_at = time.monotonic()
            self._release(job, 0.0)
            return
        except ExtractorUnavailable as exc:  # stopping, or no child would start
            if not self._stop.is_set():
                log.warning("OCR of %s put back: %s", name, exc)
            self._release(job, 0.0 if self._stop.is_set() else self.settings.workers.retry_initial)
            return
        except MemoryError:
            self._fail(job, "OCR ran out of memory", name)
            return
        except OSError as exc:
            self._fail(job, f"unreadable: {exc.strerror or exc}", name)
            return
        seconds = time.monotonic() - started
        ocr = {"engine": outcome.engine, "languages": list(outcome.languages),
               "pages": outcome.pages, "ocr_pages": outcome.ocr_pages,
               "mean_confidence": outcome.mean_confidence,
               "rotated_pages": list(outcome.rotated_pages), "seconds": round(seconds, 3),
               "truncated": outcome.truncated}
        dates = date_document(self.settings.dates, outcome.text, job.original_name,
                              dt.date.today())
        if self._complete(job, outcome.text, outcome.ocr_pages, ocr, dates):
            self.stats.documents += 1
            self.stats.pages += outcome.ocr_pages
            self.stats.seconds += seconds
            if self.observe is not None:
                self.observe(seconds, outcome.ocr_pages)
            log.info("OCR of %s done: %d pages (%d read by OCR) in %.1f s", name,
                     outcome.pages, outcome.ocr_pages, seconds)
        else:
            self.stats.lost_leases += 1
            log.warning("OCR of %s not written: another worker holds it now", name)

    def _ocr(self, job: Job, path: Path) -> OcrOutcome:
        assert self.pool is not None
        o = self.settings.ocr

        def on_page(done: int, total: int) -> None:
            self._on_page(job, done, total)

        if job.mime_type == FOLDER and job.folder_pages is not None:
            e = self.settings.extract
            extract_limits = ExtractLimits(
                timeout_seconds=e.timeout_seconds, max_text_chars=e.max_text_chars,
                max_pdf_pages=e.max_pdf_pages, memory_limit_mb=e.memory_limit_mb,
                pdf_min_page_chars=o.pdf_min_page_chars)
            return ocr_folder(self.pool, self.store_root, job.folder_pages, o.languages,
                              self.limits, extract_limits,
                              detect_orientation=o.detect_orientation, on_page=on_page)
        return ocr_document(self.pool, path, job.mime_type or "", o.languages, self.limits,
                            detect_orientation=o.detect_orientation, on_page=on_page)

    def _on_page(self, job: Job, done: int, total: int) -> None:
        try:
            still_ours = self.queue.renew(job, done, total)
        except DatabaseUnavailable as exc:
            # Keep reading: completing checks the lease, so nothing is written twice.
            log.debug("lease renewal failed: %s", exc)
            return
        if not still_ours:
            raise LeaseLost(job.document_id)

    def _complete(self, job: Job, text: str, pages: int, ocr: dict[str, Any],
                  dates: DateResult | None = None) -> bool:
        """Write the result, retrying while the database is away, for as long as the lease
        could still be ours (after that another worker may have taken it, and the result is
        dropped by the lease check anyway)."""
        give_up = time.monotonic() + self.settings.ocr.lease_seconds
        while True:
            try:
                return self.queue.complete(job, text=text, extractor=EXTRACTOR, pages=pages,
                                           ocr=ocr, then=self._rules_after, dates=dates)
            except DatabaseUnavailable as exc:
                if time.monotonic() > give_up or self._stop.is_set():
                    log.warning("OCR result of %s dropped: the database did not answer (%s); "
                                "the document is read again", job.document_id, exc)
                    return False
                self._stop.wait(DB_RETRY_SECONDS)

    def _rules_after(self, cur: psycopg.Cursor[DictRow], document_id: str) -> None:
        try:
            ruleset = compiled(self.settings.rules.inline, self.settings.rules.regex_timeout)
        except RulesError as exc:  # the daemon refuses such rules; `alfrd worker` logs them
            log.error("rules not applied after OCR: %s", exc)
            return
        # In a savepoint: a rule run that fails (a value the database refuses) costs the
        # document its rules, never its OCR text.
        try:
            with cur.connection.transaction():
                rules_after.rerun(cur, document_id, ruleset)
        except psycopg.OperationalError:
            raise  # the connection is gone: the completion is retried as a whole
        except Exception as exc:
            log.error("rules not applied after OCR of %s: %s: %s", document_id,
                      type(exc).__name__, exc)

    def reconfigure(self, settings: Settings) -> None:
        """A reload: only live keys differ (the rules, retry delays); the pool stays."""
        self.settings = settings

    def _fail(self, job: Job, reason: str, name: str) -> None:
        delay = min(self.settings.workers.retry_max,
                    self.settings.workers.retry_initial * 2 ** max(0, job.attempts - 1))
        try:
            state = self.queue.fail(job, reason, delay)
        except DatabaseUnavailable as exc:
            log.warning("OCR of %s failed (%s); not recorded, the database did not answer: %s",
                        name, reason, exc)
            return
        self.stats.failed_attempts += 1
        if state == "failed":
            self.stats.failed_documents += 1
            log.error("OCR of %s failed for good after %d attempts: %s", name, job.attempts,
                      reason)
        else:
            log.warning("OCR of %s failed (attempt %d of %d, %s): %s", name, job.attempts,
                        self.queue.max_attempts, state, reason)

    def _release(self, job: Job, delay: float) -> None:
        with contextlib.suppress(DatabaseUnavailable):
            if self.queue.release(job, delay):
                self.stats.released += 1
        self.wake()

    # --- state ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What the heartbeat records for `alfrd status`."""
        s = self.stats
        return {"available": self.unavailable is None, "unavailable": self.unavailable,
                "engine": self.engine, "languages": list(self.settings.ocr.languages),
                "workers": self.size, "busy": len(self.busy), "listening": self.listening,
                "documents": s.documents, "pages": s.pages,
                "failed_attempts": s.failed_attempts, "failed_documents": s.failed_documents,
                "pages_per_second": round(s.pages / s.seconds, 3) if s.seconds else None}
