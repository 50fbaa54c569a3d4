"""Pure rules of start-up, reload and stop: which settings a SIGHUP applies, how a libpq
connection error is told in one line, and the stop budget against the unit's TimeoutStopSec."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from alfrd_daemon.config.parse import parse_settings
from alfrd_daemon.config.settings import LIVE_KEYS, RESTART_KEYS, Settings, WorkerSettings
from alfrd_daemon.db.pool import connection_problem
from alfrd_daemon.service.daemon import (
    STOP_GRACE_SECONDS,
    setting_keys,
    setting_value,
    split_reload,
)

REPO = Path(__file__).resolve().parents[2]


def settings(**sections: object) -> Settings:
    return parse_settings(sections, source="test", base_dir=Path("/srv/alfrd"))


def test_every_setting_is_either_live_or_restart_only() -> None:
    """A new setting must be placed: unplaced, a reload would silently half-apply it."""
    keys = set(setting_keys(settings()))
    assert not LIVE_KEYS & RESTART_KEYS, LIVE_KEYS & RESTART_KEYS
    assert keys - LIVE_KEYS - RESTART_KEYS == set(), "not classified as live or restart-only"
    assert (LIVE_KEYS | RESTART_KEYS) - keys == set(), "classified but not a setting"


def test_keys_read_the_values_the_yaml_names() -> None:
    s = settings(paths={"store": "/data/store"}, watch={"mode": "polling"})
    assert setting_value(s, "paths.store") == Path("/data/store")
    assert setting_value(s, "watch.mode") == "polling"
    assert setting_value(s, "state_dir") == Path("/srv/alfrd/var")


def test_a_reload_applies_live_keys_and_keeps_restart_only_ones_running() -> None:
    running = settings()
    loaded = settings(store={"fsync": False}, workers={"commit_batch": 8, "max_file_size": 100},
                      inbox={"recursive": False, "ignore_files": ["*.skip"]},
                      watch={"poll_interval": 9, "settle_seconds": 4},
                      paths={"store": "/elsewhere"}, logging={"level": "WARNING"})
    effective, waiting = split_reload(running, loaded)
    assert waiting == ["inbox.recursive", "paths.store", "watch.poll_interval",
                       "workers.commit_batch", "store.fsync"]
    # Restart-only keys keep their running values, so every part agrees on them …
    assert effective.store.fsync is True and effective.workers.commit_batch == 256
    assert effective.inbox.recursive is True and effective.watch.poll_interval == 2.0
    assert effective.store_path == running.store_path
    # … and live keys take the new ones.
    assert effective.workers.max_file_size == 100 and effective.watch.settle_seconds == 4
    assert effective.inbox.ignore_files == ("*.skip",) and effective.logging.level == "WARNING"


def test_an_unchanged_reload_needs_no_restart() -> None:
    effective, waiting = split_reload(settings(), settings())
    assert waiting == [] and effective == settings()


@pytest.mark.parametrize(("message", "reason"), [
    ('connection failed: connection to server on socket "/run/pg/.s.PGSQL.5432" failed: '
     "FATAL:  the database system is starting up",
     "the database system is starting up"),
    ('connection failed: connection to server on socket "/run/pg/.s.PGSQL.5432" failed: '
     "FATAL:  the database system is not accepting connections\nDETAIL:  Hot standby mode is "
     "disabled.",
     "the database system is not accepting connections (Hot standby mode is disabled.)"),
    ('connection failed: connection to server at "10.0.0.5", port 5432 failed: Connection '
     "refused\n\tIs the server running on that host and accepting TCP/IP connections?",
     'connection to server at "10.0.0.5", port 5432 failed: Connection refused'),
    ("", "Exception"),
])
def test_a_connection_error_is_told_in_one_line(message: str, reason: str) -> None:
    assert connection_problem(Exception(message)) == reason


@pytest.mark.parametrize("unit", ["alfrd-daemon.service", "alfrd-daemon@.service"])
def test_the_default_stop_fits_the_units_stop_timeout(unit: str) -> None:
    """drain_timeout (one deadline for workers, committer and jobs) plus what closing takes
    after it must end before systemd's SIGKILL, with room to spare."""
    text = (REPO / "systemd" / unit).read_text()
    [timeout] = re.findall(r"^TimeoutStopSec=(\d+)$", text, flags=re.MULTILINE)
    assert WorkerSettings().drain_timeout + STOP_GRACE_SECONDS + 5 <= int(timeout)


def test_the_documented_config_lists_exactly_the_restart_only_settings() -> None:
    text = (REPO / "config" / "alfrd.yaml").read_text()
    block = re.search(r"^#   restart: (.*?)\n(?!#            )", text,
                      flags=re.MULTILINE | re.DOTALL)
    assert block is not None, "config/alfrd.yaml lists no restart-only settings"
    listed = {key.strip() for key in block.group(1).replace("#", " ").split(",")}
    assert listed == RESTART_KEYS
