"""health_problem watches every long-lived thread: a dead one is fatal, a stale one unhealthy.
A Daemon object that was never started, given real threads."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alfrd_daemon.config.parse import load_settings
from alfrd_daemon.sdnotify import Notifier
from alfrd_daemon.service.daemon import MONITOR_STALE_SECONDS, Daemon, ErrorThrottle
from tests.helpers import write_config


@pytest.fixture
def daemon(tmp_path: Path) -> Daemon:
    settings = load_settings(str(write_config(tmp_path, "postgresql://nobody@127.0.0.1/none")))
    return Daemon(settings, notifier=Notifier(None))


@pytest.fixture
def hanging() -> Iterator[threading.Event]:
    """Set to let the threads of a test end."""
    release = threading.Event()
    yield release
    release.set()


def test_a_dead_monitor_is_fatal(daemon: Daemon) -> None:
    thread = threading.Thread(target=lambda: None, name="alfrd-monitor")  # ended, as on an error
    thread.start()
    thread.join()
    daemon.monitor_thread = thread
    assert daemon.health_problem() == "fatal: the monitor thread died"


def test_a_monitor_that_stopped_beating_is_unhealthy(daemon: Daemon,
                                                     hanging: threading.Event) -> None:
    def beat_then_hang() -> None:  # its last beat long ago, now stuck in one duty
        daemon.monitor_beat = time.monotonic() - MONITOR_STALE_SECONDS - 1
        hanging.wait()

    daemon.monitor_thread = threading.Thread(target=beat_then_hang, daemon=True)
    daemon.monitor_thread.start()
    problem = daemon.health_problem()
    assert problem is not None and problem.startswith("monitor stalled")
    assert not problem.startswith("fatal")


def test_a_beating_monitor_is_healthy(daemon: Daemon, hanging: threading.Event) -> None:
    def beat() -> None:
        while not hanging.wait(0.05):
            daemon.monitor_beat = time.monotonic()

    daemon.monitor_thread = threading.Thread(target=beat, daemon=True)
    daemon.monitor_thread.start()
    assert daemon.health_problem() is None


def test_a_dead_readiness_loop_is_fatal(daemon: Daemon) -> None:
    thread = threading.Thread(target=lambda: None)
    thread.start()
    thread.join()
    daemon.tracker_thread = thread
    assert daemon.health_problem() == "fatal: the readiness loop died"


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
