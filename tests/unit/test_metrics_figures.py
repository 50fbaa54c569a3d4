"""The metrics without a daemon: figures → exposition text (parsed back with prometheus_client's
parser), the database summary's cache and its bound on a fetch that hangs, and the metrics
section of the configuration."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from alfrd_daemon.config.parse import ConfigError, parse_settings
from alfrd_daemon.config.reader import split_listen
from alfrd_daemon.db.pool import DatabaseUnavailable
from alfrd_daemon.service.metrics import (
    DaemonMetrics,
    DatabaseFigures,
    DatabaseSummary,
    FiguresCollector,
    LiveFigures,
)

LIVE = LiveFigures(
    instance="host-1-abc", health="ok",
    outcomes={"ingested": 3, "duplicate": 1, "failed": 0, "retry": 2, "gone": 0},
    in_progress=1, paused=False, queue_depth=2, queue_capacity=1004, tracked=5,
    ready_waiting=1, oldest_ready_age=7.5,
    db_pool={"pool_size": 2, "pool_available": 1, "pool_max": 4, "requests_waiting": 0},
    extractor_pool=(2, 1),
    ocr={"available": True, "workers": 1, "busy": 0, "documents": 4, "pages": 9,
         "failed_attempts": 1, "failed_documents": 0})
BACKUP_AT = datetime(2026, 3, 5, 3, 0, 12, tzinfo=UTC)
DB = DatabaseFigures(documents={"extracted": 3, "pending": 1}, trashed=2,
                     job_last_success={"backup": BACKUP_AT},
                     ocr_queue={"documents_waiting": 1, "pages_waiting": 3, "running": 0,
                                "oldest_waiting": BACKUP_AT},
                     hook_runs={("post_ingest", "failed"): 2, ("post_ocr", "queued"): 1})


def scrape(live: LiveFigures | None, db: DatabaseFigures | None) -> dict[tuple[str, str], float]:
    registry = CollectorRegistry()
    registry.register(FiguresCollector(lambda: live, _up(db) if db is not None else _down()))
    text = generate_latest(registry).decode()
    return {(s.name, ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def _up(db: DatabaseFigures) -> DatabaseSummary:
    return DatabaseSummary(lambda: db)


def _down() -> DatabaseSummary:
    def fetch() -> DatabaseFigures:
        raise DatabaseUnavailable("connection refused")

    return DatabaseSummary(fetch)


def test_every_figure_reaches_the_exposition_under_its_name() -> None:
    got = scrape(LIVE, DB)
    assert got[("alfrd_database_up", "")] == 1 and got[("alfrd_healthy", "")] == 1
    assert got[("alfrd_info", "instance=host-1-abc,version=0.1.0")] == 1
    assert got[("alfrd_ingest_outcomes_total", "outcome=ingested")] == 3
    assert got[("alfrd_ingest_outcomes_total", "outcome=retry")] == 2
    assert got[("alfrd_inbox_oldest_waiting_seconds", "")] == 7.5
    assert got[("alfrd_db_pool_connections", "state=available")] == 1
    assert got[("alfrd_extractor_processes", "pool=ingest,state=busy")] == 1
    assert got[("alfrd_extractor_processes", "pool=ocr,state=size")] == 1
    assert got[("alfrd_ocr_pages_total", "")] == 9
    # Every status has a series, at 0 before its first document.
    assert got[("alfrd_documents", "status=failed")] == 0
    assert got[("alfrd_documents", "status=extracted")] == 3
    assert got[("alfrd_documents_trashed", "")] == 2
    assert got[("alfrd_job_last_success_timestamp_seconds", "job=backup")] == \
        BACKUP_AT.timestamp()
    assert got[("alfrd_ocr_queue_pages", "")] == 3
    assert got[("alfrd_hook_runs", "hook=post_ingest,state=failed")] == 2
    assert got[("alfrd_hook_runs", "hook=post_ingest,state=queued")] == 0
    assert got[("alfrd_hook_runs", "hook=post_ocr,state=queued")] == 1
    assert got[("alfrd_ocr_queue_oldest_timestamp_seconds", "")] == BACKUP_AT.timestamp()


def test_with_the_database_down_the_live_figures_remain_and_database_up_is_0() -> None:
    got = scrape(LIVE, None)
    assert got[("alfrd_database_up", "")] == 0
    assert got[("alfrd_queue_depth", "")] == 2
    assert not [k for k in got if k[0].startswith(("alfrd_documents", "alfrd_job_"))]


def test_an_unhealthy_daemon_without_ocr() -> None:
    live = LiveFigures(**{**LIVE.__dict__, "health": "workers stuck", "ocr": None})
    got = scrape(live, DB)
    assert got[("alfrd_healthy", "")] == 0
    assert not [k for k in got if k[0].startswith("alfrd_ocr_") and "queue" not in k[0]]


def test_the_histograms_count_what_the_workers_observe() -> None:
    metrics = DaemonMetrics(lambda: LIVE, DatabaseSummary(lambda: DB))
    metrics.extraction.observe(0.02)
    metrics.observe_ocr(12.0, 3)
    text = generate_latest(metrics.registry).decode()
    samples = {(s.name, s.labels.get("le")): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("alfrd_extraction_seconds_bucket", "0.025")] == 1
    assert samples[("alfrd_extraction_seconds_bucket", "0.01")] == 0
    assert samples[("alfrd_ocr_document_seconds_count", None)] == 1
    assert samples[("alfrd_ocr_document_seconds_bucket", "30.0")] == 1


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_summary_is_fetched_once_per_period_however_often_it_is_asked() -> None:
    clock, calls = Clock(), []

    def fetch() -> DatabaseFigures:
        calls.append(clock.now)
        return DB

    summary = DatabaseSummary(fetch, ttl=5.0, clock=clock)
    assert [summary.get() for _ in range(20)] == [DB] * 20
    assert calls == [100.0]
    clock.now += 5.0
    assert summary.get() is DB and calls == [100.0, 105.0]


def test_a_hanging_fetch_answers_none_and_is_not_started_twice() -> None:
    clock, release, started = Clock(), threading.Event(), []

    def fetch() -> DatabaseFigures:
        started.append(1)
        release.wait(30)
        return DB

    summary = DatabaseSummary(fetch, ttl=1.0, timeout=0.05, clock=clock)
    try:
        assert summary.get() is None
        clock.now += 2
        assert summary.get() is None and len(started) == 1  # still hanging: not asked again
    finally:
        release.set()
    assert summary._running is not None
    summary._running.join(10)
    clock.now += 2
    assert summary.get() is DB and len(started) == 2


def test_an_unreachable_database_is_asked_again_after_a_second() -> None:
    clock = Clock()
    answers: list[DatabaseFigures | Exception] = [DatabaseUnavailable("refused"), DB]

    def fetch() -> DatabaseFigures:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    summary = DatabaseSummary(fetch, ttl=5.0, clock=clock)
    assert summary.get() is None and summary.get() is None and len(answers) == 1
    clock.now += 1
    assert summary.get() is DB


@pytest.mark.parametrize(("text", "expected"), [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)),
    ("localhost:1", ("localhost", 1)),
    ("[::1]:9464", ("::1", 9464)),
    ("0.0.0.0:65535", ("0.0.0.0", 65535)),
])
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert split_listen(text) == expected


@pytest.mark.parametrize("text", ["9464", ":9464", "host:", "host:0", "host:65536",
                                  "::1:9464", "host:94x4", "[::1]"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ValueError, match="expected host:port"):
        split_listen(text)


def test_the_metrics_section() -> None:
    s = parse_settings({"state_dir": "/srv/alfrd", "metrics": {
        "listen": "127.0.0.1:9464", "textfile": "metrics/alfrd.prom"}}, source="t",
        base_dir=Path("/etc"))
    assert s.metrics.listen == "127.0.0.1:9464"
    assert s.metrics.textfile == Path("/srv/alfrd/metrics/alfrd.prom")
    off = parse_settings({}, source="t", base_dir=Path("/etc")).metrics
    assert (off.listen, off.textfile) == (None, None)
    with pytest.raises(ConfigError) as err:
        parse_settings({"metrics": {"listen": "9464", "textfile_interval": 0,
                                    "textfile": "alfrd.txt"}}, source="t", base_dir=Path("/etc"))
    assert sorted(err.value.problems) == [
        "At 'metrics.listen': got '9464', expected host:port such as 127.0.0.1:9464 or "
        "[::1]:9464 (port 1-65535)",
        "At 'metrics.textfile': got 'alfrd.txt', expected a path ending in .prom "
        "(node-exporter reads only those)",
        "At 'metrics.textfile_interval': got 0, expected a number at least 1 and at most 86400"]
