"""What the Prometheus endpoint and the textfile say: the daemon's live figures (read from its
parts at scrape time), the database's summaries (cached, so a scrape storm cannot load
PostgreSQL, and bounded, so a scrape while the database is down or frozen still answers),
and the histograms the workers feed as they go.

Turning figures into metric families is a pure function (`families`), tested without a
daemon; the daemon fills `LiveFigures`, `DatabaseFigures` comes from `DatabaseSummary`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from psycopg.rows import dict_row

from alfrd_daemon import __version__
from alfrd_daemon.db.pool import Database, DatabaseUnavailable
from alfrd_daemon.db.queries import load_named_queries

log = logging.getLogger("alfrd.metrics")

FAILURE_CACHE_SECONDS = 1.0
DB_TIMEOUT_SECONDS = 3.0  # a scrape waits this long for them, then says the database is down
EXTRACTION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# documents.status (001_initial.sql): each is reported, at 0 too, so a rate or an alert on one
# has a series before its first document.
DOCUMENT_STATUSES = ("pending", "extracted", "processing", "completed", "failed")
HOOK_STATES = ("queued", "running", "failed")  # hooks.sql hook_counts
OCR_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


@dataclass(frozen=True)
class LiveFigures:
    """One look at the running daemon, taken at scrape time. Ages are in seconds."""

    instance: str
    health: str  # "ok" or the problem
    outcomes: Mapping[str, int]  # ingest outcomes since start: ingested, duplicate, …
    in_progress: int
    paused: bool  # intake waits: files fail transiently (the database is away, disk full)
    queue_depth: int  # files handed to the workers or waiting for a worker
    queue_capacity: int
    tracked: int  # inbox files being watched until they settle
    ready_waiting: int  # settled, waiting for room in the queue
    oldest_ready_age: float | None
    db_pool: Mapping[str, int]  # psycopg_pool's get_stats()
    extractor_pool: tuple[int, int] | None  # (size, busy)
    ocr: Mapping[str, Any] | None  # OcrService.state() plus pool size/busy; None: OCR off


@dataclass(frozen=True)
class WorkerFigures:
    """One look at `alfrd worker`: only the OCR stage runs there."""

    instance: str
    healthy: bool  # its OCR threads live
    ocr: Mapping[str, Any]  # OcrService.state()


@dataclass(frozen=True)
class DatabaseFigures:
    documents: Mapping[str, int]  # by status, trashed ones left out
    trashed: int
    job_last_success: Mapping[str, datetime]
    ocr_queue: Mapping[str, Any]  # ocr.sql ocr_queue_summary
    hook_runs: Mapping[tuple[str, str], int] = field(default_factory=dict)  # (hook, state)


def fetch_database_figures(db: Database) -> DatabaseFigures:
    q = load_named_queries("metrics.sql")
    ocr = load_named_queries("ocr.sql")
    with db.connection(timeout=DB_TIMEOUT_SECONDS) as conn, conn.transaction(), \
            conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SET LOCAL statement_timeout = '5s'")
        docs = cur.execute(q["metrics_documents"]).fetchall()
        jobs = cur.execute(q["metrics_job_last_success"]).fetchall()
        queue = cur.execute(ocr["ocr_queue_summary"]).fetchone() or {}
        hooks = cur.execute(load_named_queries("hooks.sql")["hook_counts"]).fetchall()
    return DatabaseFigures(
        documents={r["status"]: int(r["n"]) for r in docs},
        trashed=sum(int(r["trashed"]) for r in docs),
        job_last_success={r["job"]: r["last_success"] for r in jobs},
        ocr_queue=dict(queue),
        hook_runs={(r["hook"], r["state"]): int(r["n"]) for r in hooks})


@dataclass
class DatabaseSummary:
    """The database's figures, fetched at most every `ttl` seconds (every second after a
    failure), each fetch bounded by `timeout`; None while the database does not answer. One
    fetch at a time: scrapes that arrive meanwhile wait for it, or get None while an earlier
    one still hangs."""

    fetch: Callable[[], DatabaseFigures]
    ttl: float = 5.0
    timeout: float = DB_TIMEOUT_SECONDS
    clock: Callable[[], float] = time.monotonic
    _last: DatabaseFigures | None = None
    _at: float | None = None
    _running: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self) -> DatabaseFigures | None:
        with self._lock:
            # A failure is kept only briefly: the database may be back (or just opened).
            fresh = self.ttl if self._last is not None else min(self.ttl, FAILURE_CACHE_SECONDS)
            if self._at is not None and self.clock() - self._at < fresh:
                return self._last
            if self._running is not None and self._running.is_alive():
                return None  # the last fetch hangs: the database does not answer
            box: list[DatabaseFigures | None] = [None]
            worker = threading.Thread(target=self._fetch_into, args=(box,),
                                      name="alfrd-metrics-db", daemon=True)
            self._running = worker
            worker.start()
            worker.join(self.timeout)
            self._last = box[0] if not worker.is_alive() else None
            self._at = self.clock()
            return self._last

    def _fetch_into(self, box: list[DatabaseFigures | None]) -> None:
        try:
            box[0] = self.fetch()
        except DatabaseUnavailable as exc:
            log.debug("metrics: database figures unavailable: %s", exc)
        except Exception as exc:  # a scrape must answer whatever the database says
            log.warning("metrics: cannot read the database figures: %s", exc)


Figures = LiveFigures | WorkerFigures


def families(live: Figures | None, db: DatabaseFigures | None) -> Iterator[Metric]:
    """The metric families of one scrape."""
    info = GaugeMetricFamily("alfrd_info", "The daemon's instance and version.",
                             labels=["instance", "version"])
    if live is not None:
        info.add_metric([live.instance, __version__], 1)
    yield info
    yield GaugeMetricFamily("alfrd_database_up",
                            "1 while the database answers the metrics' summary queries.",
                            value=0 if db is None else 1)
    if isinstance(live, LiveFigures):
        yield from _live_families(live)
    elif isinstance(live, WorkerFigures):
        yield from _worker_families(live)
    if db is not None:
        yield from _database_families(db)


def _live_families(live: LiveFigures) -> Iterator[Metric]:
    yield GaugeMetricFamily("alfrd_healthy", "1 while the daemon's health check passes.",
                            value=1 if live.health == "ok" else 0)
    outcomes = CounterMetricFamily("alfrd_ingest_outcomes",
                                   "Inbox files by how their ingest ended, since start.",
                                   labels=["outcome"])
    for outcome, n in sorted(live.outcomes.items()):
        outcomes.add_metric([outcome], n)
    yield outcomes
    yield GaugeMetricFamily("alfrd_ingest_in_progress", "Files being ingested now.",
                            value=live.in_progress)
    yield GaugeMetricFamily("alfrd_ingest_paused",
                            "1 while intake waits because files fail transiently.",
                            value=1 if live.paused else 0)
    yield GaugeMetricFamily("alfrd_queue_depth",
                            "Files handed to the workers, being read or waiting for one.",
                            value=live.queue_depth)
    yield GaugeMetricFamily("alfrd_queue_capacity", "Room for files in the workers' queue.",
                            value=live.queue_capacity)
    yield GaugeMetricFamily("alfrd_inbox_tracked", "Inbox files watched until they settle.",
                            value=live.tracked)
    yield GaugeMetricFamily("alfrd_inbox_ready_waiting",
                            "Settled inbox files waiting for room in the queue.",
                            value=live.ready_waiting)
    yield GaugeMetricFamily("alfrd_inbox_oldest_waiting_seconds",
                            "How long the oldest settled inbox file has waited for the "
                            "queue (0: none waits).", value=live.oldest_ready_age or 0.0)
    pool = GaugeMetricFamily("alfrd_db_pool_connections",
                             "Database pool connections: size (open), available, max.",
                             labels=["state"])
    for state, key in (("open", "pool_size"), ("available", "pool_available"),
                       ("max", "pool_max")):
        pool.add_metric([state], live.db_pool.get(key, 0))
    yield pool
    yield GaugeMetricFamily("alfrd_db_pool_requests_waiting",
                            "Callers waiting for a database connection.",
                            value=live.db_pool.get("requests_waiting", 0))
    workers = GaugeMetricFamily("alfrd_extractor_processes",
                                "Extractor processes by pool (ingest, ocr) and state.",
                                labels=["pool", "state"])
    if live.extractor_pool is not None:
        size, busy = live.extractor_pool
        workers.add_metric(["ingest", "size"], size)
        workers.add_metric(["ingest", "busy"], busy)
    if live.ocr is not None:
        workers.add_metric(["ocr", "size"], live.ocr.get("workers", 0))
        workers.add_metric(["ocr", "busy"], live.ocr.get("busy", 0))
    yield workers
    if live.ocr is not None:
        yield from _ocr_families(live.ocr)


def _worker_families(live: WorkerFigures) -> Iterator[Metric]:
    yield GaugeMetricFamily("alfrd_healthy", "1 while the worker's OCR threads live.",
                            value=1 if live.healthy else 0)
    workers = GaugeMetricFamily("alfrd_extractor_processes",
                                "Extractor processes by pool (ingest, ocr) and state.",
                                labels=["pool", "state"])
    workers.add_metric(["ocr", "size"], live.ocr.get("workers", 0))
    workers.add_metric(["ocr", "busy"], live.ocr.get("busy", 0))
    yield workers
    yield from _ocr_families(live.ocr)


def _ocr_families(ocr: Mapping[str, Any]) -> Iterator[Metric]:
    yield GaugeMetricFamily("alfrd_ocr_available",
                            "1 while this daemon's OCR engine and languages are usable.",
                            value=1 if ocr.get("available") else 0)
    for name, key, text in (
            ("alfrd_ocr_documents", "documents", "Documents read by OCR since start."),
            ("alfrd_ocr_pages", "pages", "Pages read by OCR since start."),
            ("alfrd_ocr_failed_attempts", "failed_attempts",
             "OCR attempts that failed since start."),
            ("alfrd_ocr_failed_documents", "failed_documents",
             "Documents whose OCR failed for good since start.")):
        yield CounterMetricFamily(name, text, value=ocr.get(key, 0))


def _database_families(db: DatabaseFigures) -> Iterator[Metric]:
    docs = GaugeMetricFamily("alfrd_documents", "Documents by status (not in the trash).",
                             labels=["status"])
    for status in sorted(set(DOCUMENT_STATUSES) | set(db.documents)):
        docs.add_metric([status], db.documents.get(status, 0))
    yield docs
    yield GaugeMetricFamily("alfrd_documents_trashed", "Documents in the trash.",
                            value=db.trashed)
    jobs = GaugeMetricFamily("alfrd_job_last_success_timestamp_seconds",
                             "When each scheduled job last succeeded (Unix time).",
                             labels=["job"])
    for job, at in sorted(db.job_last_success.items()):
        jobs.add_metric([job], at.timestamp())
    yield jobs
    q = db.ocr_queue
    yield GaugeMetricFamily("alfrd_ocr_queue_documents", "Documents waiting for OCR.",
                            value=int(q.get("documents_waiting") or 0))
    yield GaugeMetricFamily("alfrd_ocr_queue_pages", "Pages waiting for OCR (estimated).",
                            value=int(q.get("pages_waiting") or 0))
    yield GaugeMetricFamily("alfrd_ocr_queue_running", "Documents being read by OCR.",
                            value=int(q.get("running") or 0))
    hooks = GaugeMetricFamily("alfrd_hook_runs",
                              "Hook runs waiting (queued), running or failed, by hook.",
                              labels=["hook", "state"])
    for hook in sorted({h for h, _ in db.hook_runs}):
        for state in HOOK_STATES:
            hooks.add_metric([hook, state], db.hook_runs.get((hook, state), 0))
    yield hooks
    oldest = q.get("oldest_waiting")
    yield GaugeMetricFamily("alfrd_ocr_queue_oldest_timestamp_seconds",
                            "When the oldest document waiting for OCR was queued (Unix "
                            "time; 0: none waits).",
                            value=oldest.timestamp() if isinstance(oldest, datetime) else 0)


class FiguresCollector(Collector):
    """Reads the daemon and the database summary at each scrape."""

    def __init__(self, live: Callable[[], Figures | None], summary: DatabaseSummary):
        self.live = live
        self.summary = summary

    def collect(self) -> Iterator[Metric]:
        try:
            live = self.live()
        except Exception:  # a part half built or torn down: say what the database says
            log.exception("metrics: cannot read the daemon's figures")
            live = None
        yield from families(live, self.summary.get())


class DaemonMetrics:
    """A registry of its own (several daemons in one test process do not collide), the
    histograms the workers feed, and the collector."""

    def __init__(self, live: Callable[[], Figures | None], summary: DatabaseSummary):
        self.registry = CollectorRegistry(auto_describe=False)
        self.extraction = Histogram(
            "alfrd_extraction_seconds", "Text extraction of one inbox file, in seconds.",
            buckets=EXTRACTION_BUCKETS, registry=self.registry)
        self.ocr = Histogram(
            "alfrd_ocr_document_seconds", "OCR of one document (all its pages), in seconds.",
            buckets=OCR_BUCKETS, registry=self.registry)
        self.registry.register(FiguresCollector(live, summary))

    def observe_ocr(self, seconds: float, _pages: int) -> None:
        self.ocr.observe(seconds)
