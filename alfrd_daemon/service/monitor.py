"""The monitor: everything the daemon does against the database on a schedule (heartbeat,
pool check, the outage probe) and the adoption of claims left by dead daemons. It runs in a
thread of its own because a frozen server can block a query for ever, and the main loop must
keep judging health; `tick` is one pass, so its schedule is tested without a thread."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from alfrd_daemon.config.settings import Settings
from alfrd_daemon.db import pool as dbmod
from alfrd_daemon.db.queries import QUERIES
from alfrd_daemon.ingest.claim import ClaimArea
from alfrd_daemon.ingest.counters import Counters
from alfrd_daemon.ingest.store import Store
from alfrd_daemon.ingest.tracker import Tracker
from alfrd_daemon.logs import EVENT_ATTR, FIELDS_ATTR, event

log = logging.getLogger("alfrd.daemon")

HEARTBEAT_SECONDS = 5.0
POOL_CHECK_SECONDS = 30.0
PROBE_SECONDS = 2.0
STUCK_SECONDS = 10.0  # files failing transiently this long with none going through: degraded
ERROR_REPORT_SECONDS = 60.0  # one traceback per failing duty per minute, not one per tick
TICK_SECONDS = 0.5


class ErrorThrottle:
    """Logs a duty's unexpected error with its traceback at most once per `every` seconds, and
    how many went unlogged in between, so a failure that repeats every tick stays readable."""

    def __init__(self, logger: logging.Logger, every: float = ERROR_REPORT_SECONDS):
        self.logger = logger
        self.every = every
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def report(self, duty: str, exc: BaseException) -> None:
        now = time.monotonic()
        last = self._last.get(duty)
        if last is not None and now - last < self.every:
            self._skipped[duty] = self._skipped.get(duty, 0) + 1
            return
        self._last[duty] = now
        skipped = self._skipped.pop(duty, 0)
        more = f" ({skipped} more since the last report)" if skipped else ""
        self.logger.error("%s", f"{duty} failed: {type(exc).__name__}: {exc}{more}; carrying on",
                          exc_info=exc, extra={EVENT_ATTR: "internal_error",
                                               FIELDS_ATTR: {"duty": duty, "skipped": skipped}})


def adopt_orphans(claims: ClaimArea, tracker: Tracker, store: Store | None, host: str) -> None:
    """Claims left by a crash (ours or another daemon's on this inbox) go to work first; the
    temporary store copies of this host's dead daemons are removed."""
    for dead in claims.dead_instances():
        adopted = claims.adopt(dead)
        if adopted:
            event(log, "adopted", f"resuming {len(adopted)} claimed files left by "
                  f"{dead.name}", count=len(adopted), previous_instance=dead.name)
            tracker.adopt(adopted)
    if store is not None and (removed := store.remove_dead_temporaries(host)):
        log.info("removed %d temporary store copies left by a crashed daemon", removed)


def writable(path: Path) -> bool:
    """Can the store take a small file right now (disk full → no)?"""
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
        return True
    except OSError:
        return False


class Monitor:
    """The monitor thread and its duties. `beat` is when it last began a pass (health reads
    it: a beat too old means a duty hangs); `db_ok` whether we last said "recovered" rather
    than "degraded", so each change is told once."""

    def __init__(self, *, db: dbmod.Database, counters: Counters, tracker: Tracker,
                 claims: ClaimArea, store: Store, instance: str, host: str,
                 settings: Callable[[], Settings], state: Callable[[], dict[str, Any]],
                 stop: threading.Event, errors: ErrorThrottle):
        self.db = db
        self.counters = counters
        self.tracker = tracker
        self.claims = claims
        self.store = store
        self.instance = instance
        self.host = host
        self.settings = settings  # read on each use: a reload may change them
        self.state = state
        self.stop = stop
        self.errors = errors
        self.db_ok = True
        self.beat = time.monotonic()
        self.thread: threading.Thread | None = None
        self._next_heartbeat = self._next_check = self._next_probe = self._next_adopt = 0.0

    def start(self) -> None:
        now = self.beat = time.monotonic()
        self._next_heartbeat = now + HEARTBEAT_SECONDS
        self._next_check = self._next_probe = 0.0
        self._next_adopt = now + self.settings().watch.rescan_interval
        self.thread = threading.Thread(target=self._run, name="alfrd-monitor", daemon=True)
        self.thread.start()

    def alive(self) -> bool | None:
        """Whether the thread runs; None before start()."""
        return self.thread.is_alive() if self.thread is not None else None

    def _run(self) -> None:
        while not self.stop.wait(TICK_SECONDS):
            self.tick(time.monotonic())

    def tick(self, now: float) -> None:
        """One pass: every duty that is due at `now`."""
        self.beat = now
        if self.counters.transient_since is not None and now >= self._next_probe:
            self._next_probe = now + PROBE_SECONDS
            self.guarded("outage probe", self.probe)
        elif not self.db_ok and self.counters.failing_since is None:
            # A retry went through before a probe could tell: say so, or the next
            # problem would never be reported as degraded.
            self.db_ok = True
            event(log, "recovered", "files go through again; resuming")
        if now >= self._next_check:
            self._next_check = now + POOL_CHECK_SECONDS
            self.guarded("pool check", self.db.check)
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + HEARTBEAT_SECONDS
            self.guarded("heartbeat", self.heartbeat)
        if now >= self._next_adopt:
            # Another daemon on this inbox died and nobody restarted it: its claims would
            # otherwise wait for the next start of some daemon.
            self._next_adopt = now + self.settings().watch.rescan_interval
            self.guarded("adopting a dead daemon's claims", self.adopt)

    def guarded(self, duty: str, action: Callable[[], object]) -> None:
        """One periodic duty failing in a way nobody foresaw (a read-only standby after a
        failover, a bug) must not end the thread that does all the others: log, carry on."""
        try:
            action()
        except Exception as exc:
            self.errors.report(duty, exc)

    def heartbeat(self) -> None:
        """Our instance row: alive, and the state `alfrd status` shows."""
        try:
            with self.db.transaction(timeout=2) as cur:
                cur.execute(QUERIES["upsert_instance"], {
                    "instance": self.instance, "hostname": socket.gethostname(),
                    "pid": os.getpid(), "state": Jsonb(self.state())})
        except dbmod.DatabaseUnavailable:
            pass

    def adopt(self) -> None:
        adopt_orphans(self.claims, self.tracker, self.store, self.host)

    def probe(self) -> None:
        """While files fail transiently, check whether the obstacle is gone; then retry at once
        instead of waiting out the backoff."""
        ok = self.db.healthy() and writable(self.settings().store_path)
        failing = self.counters.failing_since
        # The probe can pass while files still fail (a small probe file fits a nearly full
        # disk that a document does not): failing for long with nothing going through is
        # degraded too.
        stuck = failing is not None and time.monotonic() - failing > STUCK_SECONDS
        reason = self.counters.last_transient
        if ok:
            with self.counters.lock:
                self.counters.transient_since = None
                self.counters.last_transient = None
            if not self.db_ok and not stuck:
                event(log, "recovered", "database and store reachable again; resuming")
                self.db_ok = True
            self.tracker.wake_retries()
        if (not ok or stuck) and self.db_ok:
            self.db_ok = False
            event(log, "degraded", f"waiting: {reason}", level=logging.WARNING,
                  reason=reason or "")
