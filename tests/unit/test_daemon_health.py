"""Health watches every long-lived part: a dead one is fatal, a stale one unhealthy. The
judgement is pure (Vitals in, problem out); the monitor's schedule is one `tick`; one test
checks that a Daemon that was never started reads its real threads into Vitals."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from alfrd_daemon.config.parse import load_settings
from alfrd_daemon.ingest.counters import Counters
from alfrd_daemon.sdnotify import Notifier
from alfrd_daemon.service.daemon import Daemon
from alfrd_daemon.service.health import (
    MONITOR_STALE_SECONDS,
    READINESS_STALE_SECONDS,
    Vitals,
    health_problem,
)
from alfrd_daemon.service.monitor import HEARTBEAT_SECONDS, ErrorThrottle, Monitor
from tests.helpers import write_config

NOW = 1000.0


def test_nothing_started_is_healthy() -> None:
    assert health_problem(Vitals(), NOW) is None


def test_a_dead_monitor_is_fatal_unless_we_stop() -> None:
    assert health_problem(Vitals(monitor_alive=False), NOW) == "fatal: the monitor thread died"
    assert health_problem(Vitals(monitor_alive=False, stopping=True), NOW) is None


def test_a_monitor_that_stopped_beating_is_unhealthy() -> None:
    stale = Vitals(monitor_alive=True, monitor_beat=NOW - MONITOR_STALE_SECONDS - 1)
    problem = health_problem(stale, NOW)
    assert problem is not None and problem.startswith("monitor stalled")
    assert not problem.startswith("fatal")


def test_a_beating_monitor_is_healthy() -> None:
    assert health_problem(Vitals(monitor_alive=True, monitor_beat=NOW - 1), NOW) is None


def test_a_dead_readiness_loop_is_fatal_even_while_stopping() -> None:
    for stopping in (False, True):
        assert health_problem(Vitals(readiness_alive=False, stopping=stopping),
                              NOW) == "fatal: the readiness loop died"


def test_a_stalled_readiness_loop_is_unhealthy() -> None:
    stale = Vitals(readiness_alive=True, readiness_beat=NOW - READINESS_STALE_SECONDS - 1)
    assert health_problem(stale, NOW) == "readiness loop stalled"


@pytest.mark.parametrize(("vitals", "problem"), [
    (Vitals(committer_alive=False), "fatal: the committer died"),
    (Vitals(watcher_alive=False), "fatal: the file watcher died"),
    (Vitals(scheduler_alive=False), "fatal: the job scheduler died"),
    (Vitals(ocr_alive=False), "fatal: an OCR worker thread died"),
    (Vitals(hooks_alive=False), "fatal: a hook runner thread died"),
    (Vitals(watch_problem="inbox missing: /in"), "inbox missing: /in"),
])
def test_each_dead_part_is_named(vitals: Vitals, problem: str) -> None:
    assert health_problem(vitals, NOW) == problem


def test_stuck_work_is_unhealthy_only_when_every_worker_is_stuck() -> None:
    long_ago = NOW - 61
    assert health_problem(Vitals(workers=2, workers_busy_since=(long_ago,)), NOW) is None
    stuck = health_problem(Vitals(workers=2, workers_busy_since=(long_ago, long_ago)), NOW)
    assert stuck == "workers stuck: all 2 busy on one file each for over 60 s"
    assert health_problem(Vitals(committer_busy_since=long_ago),
                          NOW) == "committer stuck: one commit has taken over 60 s"


@pytest.fixture
def daemon(tmp_path: Path) -> Daemon:
    settings = load_settings(str(write_config(tmp_path, "postgresql://nobody@127.0.0.1/none")))
    return Daemon(settings, notifier=Notifier(None))


def test_a_daemon_reads_its_threads_into_vitals(daemon: Daemon) -> None:
    assert daemon.health_problem() is None  # never started: nothing to judge
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    daemon.tracker_thread = thread
    assert daemon.vitals().readiness_alive is False
    assert daemon.health_problem() == "fatal: the readiness loop died"


class _Recorder:
    """Stands in for the database, the tracker and the claim area: records what was asked."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def check(self) -> None:
        self.calls.append("check")

    def transaction(self, timeout: float | None = None) -> Any:
        self.calls.append("heartbeat")
        raise RuntimeError("no database here")

    def dead_instances(self) -> list[Path]:
        self.calls.append("adopt")
        return []


def _monitor(tmp_path: Path, recorder: _Recorder, counters: Counters) -> Monitor:
    settings = load_settings(str(write_config(tmp_path, "postgresql://nobody@127.0.0.1/none")))
    fake = cast(Any, recorder)
    return Monitor(db=fake, counters=counters, tracker=fake, claims=fake, store=None,
                   instance="test", host="test", settings=lambda: settings, state=dict,
                   stop=threading.Event(), errors=ErrorThrottle(logging.getLogger("alfrd.t")))


def test_a_tick_beats_and_runs_each_duty_when_due(tmp_path: Path) -> None:
    recorder = _Recorder()
    monitor = _monitor(tmp_path, recorder, Counters())
    monitor.tick(NOW)
    assert monitor.beat == NOW
    # A failing duty is reported and the others still run.
    assert recorder.calls == ["check", "heartbeat", "adopt"]
    recorder.calls.clear()
    monitor.tick(NOW + 1)
    assert recorder.calls == [] and monitor.beat == NOW + 1
    monitor.tick(NOW + HEARTBEAT_SECONDS)
    assert recorder.calls == ["heartbeat"]


def test_a_retry_that_went_through_is_told_as_recovered(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    monitor = _monitor(tmp_path, _Recorder(), Counters())
    monitor.db_ok = False
    with caplog.at_level(logging.INFO, logger="alfrd.daemon"):
        monitor.tick(NOW)
    assert monitor.db_ok
    assert "files go through again; resuming" in caplog.text


def test_errors_are_reported_at_most_once_a_minute_with_a_count(
        caplog: pytest.LogCaptureFixture) -> None:
    throttle = ErrorThrottle(logging.getLogger("alfrd.test"), every=60)
    with caplog.at_level(logging.ERROR, logger="alfrd.test"):
        for _ in range(5):
            throttle.report("heartbeat", ValueError("read-only"))
    assert len(caplog.records) == 1
    assert caplog.records[0].exc_info is not None
    assert "heartbeat failed: ValueError: read-only" in caplog.records[0].getMessage()
    throttle.every = 0
    with caplog.at_level(logging.ERROR, logger="alfrd.test"):
        throttle.report("heartbeat", ValueError("read-only"))
    assert "4 more since the last report" in caplog.records[-1].getMessage()
