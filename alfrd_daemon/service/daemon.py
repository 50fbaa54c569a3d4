"""Wires the parts together and runs the main loop: watch → track → pool → ingest.

The main loop is the only place that judges health: it pings the systemd watchdog only while
the watcher, the readiness loop and the workers are alive, probes the database (and the store)
while they are failing, and publishes a status line for `systemctl status` and `alfrd status`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any, NoReturn

import psycopg
from psycopg.types.json import Jsonb

from alfrd_daemon.config.parse import ConfigError, check_paths, load_settings
from alfrd_daemon.config.settings import LIVE_KEYS, PATH_FIELDS, Settings
from alfrd_daemon.db import pool as dbmod
from alfrd_daemon.db.cluster import ClusterError
from alfrd_daemon.db.target import DatabaseTarget, resolve_database, stop_embedded_if_unused
from alfrd_daemon.ingest.claim import ClaimArea
from alfrd_daemon.ingest.committer import Committer
from alfrd_daemon.ingest.counters import Counters
from alfrd_daemon.ingest.failed import FailedFolder
from alfrd_daemon.ingest.pipeline import Ingestor
from alfrd_daemon.ingest.readiness import ReadinessParams
from alfrd_daemon.ingest.store import Store, StoreIdentityError
from alfrd_daemon.ingest.tracker import Tracker, TrackerSettings
from alfrd_daemon.ingest.watch import (
    EventTranslator,
    InboxState,
    choose_mode,
    directory_identity,
    inotify_watch_limit,
    judge_inbox,
    start_observer,
    watching,
)
from alfrd_daemon.ingest.work import Outcome, WorkItem
from alfrd_daemon.ingest.writers import ignore_lease_breaks
from alfrd_daemon.jobs.runner import JobScheduler, tracker_rescan_interval
from alfrd_daemon.logs import EVENT_ATTR, FIELDS_ATTR, event, mask_dsn, setup_logging
from alfrd_daemon.sdnotify import Notifier

log = logging.getLogger("alfrd.daemon")

HEARTBEAT_SECONDS = 5.0
POOL_CHECK_SECONDS = 30.0
PROBE_SECONDS = 2.0
STUCK_SECONDS = 10.0  # files failing transiently this long with none going through: degraded
MAX_INTERNAL_ERRORS = 3  # unexpected errors one file may cause before it goes to failed/
# The monitor's slowest bounded duty (an outage probe: pool wait, a direct connection, a fresh
# pool) takes about 20 s; a beat older than this means it hangs (a frozen server).
MONITOR_STALE_SECONDS = 60.0
READINESS_STALE_SECONDS = 30.0
ERROR_REPORT_SECONDS = 60.0  # one traceback per failing duty per minute, not one per tick
# What stopping may take after the drain deadline (workers.drain_timeout): a running job's
# cancellation (jobs.join allows it 15 s), recording the stop, closing the pool and the
# embedded server. drain_timeout + this must stay below the unit's TimeoutStopSec (90 s).
STOP_GRACE_SECONDS = 20.0


class StartupError(Exception):
    """The daemon cannot start; the message says what to fix."""


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


def setting_keys(settings: Settings) -> list[str]:
    """Every setting as its YAML key: "state_dir", "paths.store", "watch.mode", "jobs.backup"."""
    by_field = {name: key for key, name in PATH_FIELDS.items()}
    keys = []
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.name == "source":
            continue
        if is_dataclass(value):
            keys += [f"{f.name}.{sub.name}" for sub in fields(value)]
        else:
            keys.append(by_field.get(f.name, f.name))
    return keys


def setting_value(settings: Settings, key: str) -> Any:
    """The value of a YAML key ("watch.mode", "paths.store", "state_dir") in `settings`."""
    if key in PATH_FIELDS:
        return getattr(settings, PATH_FIELDS[key])
    section, _, name = key.partition(".")
    value = getattr(settings, section)
    return getattr(value, name) if name else value


def with_setting(settings: Settings, key: str, value: Any) -> Settings:
    if key in PATH_FIELDS:
        return replace(settings, **{PATH_FIELDS[key]: value})
    section, _, name = key.partition(".")
    if not name:
        return replace(settings, **{section: value})
    return replace(settings, **{section: replace(getattr(settings, section), **{name: value})})


def split_reload(running: Settings, loaded: Settings) -> tuple[Settings, list[str]]:
    """What a reload leaves running: `loaded` with every key outside LIVE_KEYS put back to
    its running value, so the daemon never half-applies one (store.fsync on for the workers
    but not for the committer); and the keys that changed but wait for a restart."""
    effective, waiting = loaded, []
    for key in setting_keys(running):
        if key in LIVE_KEYS:
            continue
        old = setting_value(running, key)
        if setting_value(loaded, key) != old:
            waiting.append(key)
            effective = with_setting(effective, key, old)
    return effective, waiting


def instance_host() -> str:
    return socket.gethostname().replace("/", "_")[:40]


def new_instance_id() -> str:
    return f"{instance_host()}-{os.getpid()}-{secrets.token_hex(3)}"


class Daemon:
    def __init__(self, settings: Settings, *, config_path: str | None = None,
                 notifier: Notifier | None = None):
        self.settings = settings
        self.config_path = config_path
        self.notifier = notifier or Notifier.from_env()
        self.instance = new_instance_id()
        self.counters = Counters()
        self.stop_event = threading.Event()
        self.reload_requested = threading.Event()
        self.target: DatabaseTarget | None = None
        self.db: dbmod.Database | None = None
        self.claims: ClaimArea | None = None
        self.store: Store | None = None
        self.tracker: Tracker | None = None
        self.observer: Any = None
        self.watch_mode = "?"
        self.executor: ThreadPoolExecutor | None = None
        self.slots = threading.BoundedSemaphore(
            settings.workers.queue_size + settings.workers.count)
        self.tracker_thread: threading.Thread | None = None
        self.reload_error: str | None = None
        self.jobs: JobScheduler | None = None
        self._db_ok = True
        self.busy: dict[int, float] = {}  # worker thread → when it took its current file
        self.internal_errors: dict[str, int] = {}  # relpath → unexpected errors so far
        self.monitor_thread: threading.Thread | None = None
        self.committer: Committer | None = None
        self.monitor_beat = time.monotonic()
        self.abandoned = False  # set when shutdown left work running past the drain deadline
        self.monitor_errors = ErrorThrottle(log)
        self._inbox_identity: tuple[int, int] | None = None  # of the inbox we armed the watch on
        self.watch_problem: str | None = None  # inbox missing, or the watch could not re-arm

    # --- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        s = self.settings
        problems = check_paths(s)
        if problems:
            raise StartupError("; ".join(problems))
        with _opening("inbox", s.inbox.path):
            s.inbox.path.mkdir(parents=True, exist_ok=True)
        with _opening("state directory", s.state_dir):
            s.state_dir.mkdir(parents=True, exist_ok=True)
        self._connect_database()
        store = self.store = Store(s.store_path, fsync=s.store.fsync, instance=self.instance)
        with _opening("store", s.store_path):
            self._open_store(store)
        failed = FailedFolder(s.failed_path)
        with _opening("failed folder", s.failed_path):
            failed.open()
        self.claims = ClaimArea(s.inbox.path, self.instance)
        with _opening("claim area", self.claims.root):
            self.claims.open()
        self.committer = Committer(self.db, s.store_path, fsync=s.store.fsync,
                                   max_batch=s.workers.commit_batch)
        self.committer.start()
        self.ingestor = Ingestor(settings=s, db=self.db, store=store, claims=self.claims,
                                 failed=failed, counters=self.counters,
                                 committer=self.committer, on_complete=self._complete)
        self.executor = ThreadPoolExecutor(max_workers=s.workers.count,
                                           thread_name_prefix="alfrd-worker")
        self.tracker = Tracker(self._tracker_settings(s), self._submit,
                               intake_open=self._intake_open)
        # Watch first (events queue up), then scan: a file landing in between is not missed.
        with _opening("watch on the inbox", s.inbox.path):
            self._start_observer()
        self.tracker.s = self._tracker_settings(s)  # now that the real watch mode is known
        with _opening("claim area", self.claims.root):
            self._adopt_orphans()
        self.tracker_thread = threading.Thread(target=self.tracker.run, name="alfrd-readiness",
                                               daemon=True)
        self.tracker_thread.start()
        event(log, "started", f"watching {s.inbox.path} ({self.watch_mode}); database "
              f"{mask_dsn(self.target.conninfo) or 'from PG* environment'}",
              instance=self.instance, watch_mode=self.watch_mode,
              sd_notify=self.notifier.transport if self.notifier.enabled else "off")
        self.jobs = JobScheduler(s, self.target.conninfo, self.instance, tracker=self.tracker)
        self.jobs.start()

    def _connect_database(self) -> None:
        """The embedded server or the configured one, waited for (it may still be starting or
        recovering: a restart right after a crash), migrated, with the pool open."""
        s = self.settings
        waited = "(raise database.startup_timeout if it needs longer)"
        try:
            self.target = resolve_database(s)
        except dbmod.DatabaseUnavailable as exc:
            raise StartupError(f"embedded PostgreSQL: {exc} {waited}") from exc
        except (ClusterError, OSError, psycopg.Error) as exc:
            # What the cluster raises for a reason worth a line: a failed pg_ctl or initdb, a
            # directory it cannot make, a database it cannot create. Anything else is a bug.
            raise StartupError(f"embedded PostgreSQL: {exc}") from exc
        self.db = dbmod.Database(
            self.target.conninfo, min_size=s.database.pool_min, max_size=s.database.pool_max,
            connect_timeout=s.database.connect_timeout,
            reconnect_timeout=s.database.reconnect_timeout)
        try:
            self.db.open(timeout=s.database.startup_timeout)
        except dbmod.DatabaseUnavailable as exc:
            raise StartupError(f"{exc} {waited}") from exc
        try:
            with self.db.connection() as conn:
                applied = dbmod.migrate(conn)
        except (dbmod.DatabaseUnavailable, psycopg.Error) as exc:
            raise StartupError(f"cannot apply the schema migrations: {exc}") from exc
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))

    def _open_store(self, store: Store) -> None:
        """Open the store, then register it before any row names it (rows refer to it)."""
        assert self.db is not None
        try:
            store.open()
        except StoreIdentityError as exc:
            raise StartupError(f"{exc.filename}: {exc.strerror}") from exc
        try:
            with self.db.transaction() as cur:
                store.register(cur)
        except dbmod.DatabaseUnavailable as exc:
            raise StartupError(str(exc)) from exc
        log.info("store %s: id %s", store.root, store.id)

    def _tracker_settings(self, s: Settings) -> TrackerSettings:
        return TrackerSettings(
            inbox=s.inbox.path,
            params=ReadinessParams(
                settle_seconds=s.watch.settle_seconds, quiet_seconds=s.watch.quiet_seconds,
                stale_write_seconds=s.watch.stale_write_seconds,
                close_events=self.watch_mode == "inotify"),
            ignore_files=s.inbox.ignore_files, ignore_dirs=s.inbox.ignore_dirs,
            recursive=s.inbox.recursive, rescan_interval=tracker_rescan_interval(s),
            max_tracked=max(1000, 4 * (s.workers.queue_size + s.workers.count)),
            retry_initial=s.workers.retry_initial, retry_max=s.workers.retry_max,
            watch_limit=inotify_watch_limit() if self.watch_mode == "inotify" else None,
            folder_quiet_max=s.watch.folder_quiet_max_seconds)

    def _start_observer(self) -> None:
        assert self.tracker is not None
        s = self.settings
        handler = EventTranslator(s.inbox.path, self.tracker.signal)
        self._inbox_identity = directory_identity(s.inbox.path)
        self.observer, self.watch_mode = start_observer(
            choose_mode(s.watch.mode, s.inbox.path), s.inbox.path, handler,
            recursive=s.inbox.recursive, poll_interval=s.watch.poll_interval)

    def _adopt_orphans(self) -> None:
        """Claims left by a crash (ours or another daemon's on this inbox) are finished first."""
        assert self.claims is not None and self.tracker is not None
        for dead in self.claims.dead_instances():
            adopted = self.claims.adopt(dead)
            if adopted:
                event(log, "adopted", f"resuming {len(adopted)} claimed files left by "
                      f"{dead.name}", count=len(adopted), previous_instance=dead.name)
                self.tracker.adopt(adopted)
        if self.store is not None and (removed := self.store.remove_dead_temporaries(
                instance_host())):
            log.info("removed %d temporary store copies left by a crashed daemon", removed)

    # --- the pool ------------------------------------------------------------------------------
    def _intake_open(self) -> bool:
        return self.counters.transient_since is None and not self.stop_event.is_set()

    def _submit(self, item: WorkItem) -> bool:
        if self.stop_event.is_set() or not self.slots.acquire(blocking=False):
            return False
        assert self.executor is not None
        try:
            self.executor.submit(self._work, item)
        except RuntimeError:  # shutting down
            self.slots.release()
            return False
        return True

    def _work(self, item: WorkItem) -> None:
        assert self.tracker is not None and self.claims is not None
        outcome = Outcome.RETRY
        me = threading.get_ident()
        self.busy[me] = time.monotonic()
        try:
            outcome = self.ingestor.process(item)
            self.internal_errors.pop(item.relpath, None)
        except Exception as exc:
            outcome = self._internal_error(item, exc)
        finally:
            self.busy.pop(me, None)
            if outcome is not Outcome.PENDING:
                self._complete(item, outcome)

    def _internal_error(self, item: WorkItem, exc: Exception) -> Outcome:
        """A bug must not kill a worker or lose the file: it stays where it is and is retried
        (without pausing intake: the next file is probably fine), and after a few such errors
        it goes to failed/ with the error as its reason instead of looping for ever."""
        log.exception("unexpected error on %s", item.relpath)
        if len(self.internal_errors) > 10_000:
            self.internal_errors.clear()
        count = self.internal_errors.get(item.relpath, 0) + 1
        self.internal_errors[item.relpath] = count
        if count < MAX_INTERNAL_ERRORS:
            return Outcome.RETRY
        del self.internal_errors[item.relpath]
        reason = f"internal error ({count} times): {type(exc).__name__}: {exc}"
        try:
            return self.ingestor.fail_internal(item, reason)
        except Exception:
            log.exception("could not file %s under failed/", item.relpath)
            return Outcome.RETRY

    def _complete(self, item: WorkItem, outcome: Outcome) -> None:
        """A file is done (from a worker, or from the committer for batched files): free its
        slot and tell the readiness loop, which retries claimed files that hit a snag."""
        assert self.tracker is not None and self.claims is not None
        self.slots.release()
        if outcome is Outcome.WRITING:
            self.tracker.writing(item)
        elif outcome is Outcome.RETRY:
            claimed = os.path.lexists(self.claims.path(item.relpath))
            if claimed:
                item = WorkItem(item.relpath, claimed=True, attempt=item.attempt)
            self.tracker.finished(item, claimed, False)
        else:
            self.tracker.finished(item, False, outcome is Outcome.BUSY)

    # --- main loop -----------------------------------------------------------------------------
    def run(self) -> int:
        self._install_signals()
        try:
            self.start()
        except (StartupError, ConfigError, OSError) as exc:
            # OSError: a start-up step not wrapped by _opening; its text names the path.
            log.error("cannot start: %s", exc)
            self.notifier.status(f"cannot start: {exc}")
            self._abort_start()
            self._shutdown_partial()
            return 1
        except BaseException:
            # A bug: its traceback is the report, but the pool and the embedded server we
            # may have started are closed all the same.
            self._abort_start()
            self._shutdown_partial()
            raise
        _run_bounded(lambda: self._guarded("heartbeat", self._heartbeat), 2.0,
                     "alfrd-first-heartbeat")
        self.monitor_beat = time.monotonic()
        self.monitor_thread = threading.Thread(target=self._monitor, name="alfrd-monitor",
                                               daemon=True)
        self.monitor_thread.start()
        self.notifier.ready(self.status_line())
        try:
            while not self.stop_event.wait(self._tick()):
                if self.reload_requested.is_set():
                    self.reload_requested.clear()
                    self.reload()
                self.check_watch()
                problem = self.health_problem()
                self.notifier.status(self.status_line(problem))
                if problem is None:
                    self.notifier.watchdog()
                elif problem.startswith("fatal"):
                    log.error("%s; exiting so the service manager restarts us", problem)
                    self.stop_event.set()
                    self._exit_code = 1
        finally:
            self.shutdown()
        code = getattr(self, "_exit_code", 0)
        if self.abandoned:
            self._exit_past_abandoned_threads(code)
        return code

    def _monitor(self) -> None:
        """Everything that talks to the database on a schedule. Its own thread, because a
        frozen server can block a query for ever, and the main loop must keep judging health."""
        next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
        next_check = next_probe = 0.0
        next_adopt = time.monotonic() + self.settings.watch.rescan_interval
        assert self.db is not None
        while not self.stop_event.wait(0.5):
            now = self.monitor_beat = time.monotonic()
            if self.counters.transient_since is not None and now >= next_probe:
                next_probe = now + PROBE_SECONDS
                self._guarded("outage probe", self._probe)
            elif not self._db_ok and self.counters.failing_since is None:
                # A retry went through before a probe could tell: say so, or the next
                # problem would never be reported as degraded.
                self._db_ok = True
                event(log, "recovered", "files go through again; resuming")
            if now >= next_check:
                next_check = now + POOL_CHECK_SECONDS
                self._guarded("pool check", self.db.check)
            if now >= next_heartbeat:
                next_heartbeat = now + HEARTBEAT_SECONDS
                self._guarded("heartbeat", self._heartbeat)
            if now >= next_adopt:
                # Another daemon on this inbox died and nobody restarted it: its claims would
                # otherwise wait for the next start of some daemon.
                next_adopt = now + self.settings.watch.rescan_interval
                self._guarded("adopting a dead daemon's claims", self._adopt_orphans)

    def _guarded(self, duty: str, action: Callable[[], object]) -> None:
        """One periodic duty failing in a way nobody foresaw (a read-only standby after a
        failover, a bug) must not end the thread that does all the others: log, carry on."""
        try:
            action()
        except Exception as exc:
            self.monitor_errors.report(duty, exc)

    def _tick(self) -> float:
        interval = self.notifier.watchdog_interval
        return min(1.0, interval) if interval else 1.0

    def health_problem(self) -> str | None:
        """None while every long-lived thread is alive and beating; a dead one is fatal (the
        service manager restarts us), a stale one or a lost watch is unhealthy (no watchdog
        pings, so a lasting problem also ends in a restart)."""
        stopping = self.stop_event.is_set()
        if self.tracker_thread is not None and not self.tracker_thread.is_alive():
            return "fatal: the readiness loop died"
        if self.committer is not None and not self.committer.alive() and not stopping:
            return "fatal: the committer died"
        if self.watch_problem is not None:
            return self.watch_problem
        if self.observer is not None and not self.observer.is_alive():
            return "fatal: the file watcher died"
        if self.monitor_thread is not None and not self.monitor_thread.is_alive() and (
                not stopping):
            return "fatal: the monitor thread died"
        if _scheduler_alive(self.jobs) is False and not stopping:
            return "fatal: the job scheduler died"
        now = time.monotonic()
        if self.tracker is not None and now - self.tracker.heartbeat > READINESS_STALE_SECONDS:
            return "readiness loop stalled"
        if self.monitor_thread is not None and now - self.monitor_beat > MONITOR_STALE_SECONDS:
            return f"monitor stalled: no beat for {now - self.monitor_beat:.0f} s"
        since = self.committer.busy_since if self.committer is not None else None
        if since is not None and now - since > self.settings.workers.stuck_seconds:
            return (f"committer stuck: one commit has taken over "
                    f"{self.settings.workers.stuck_seconds:g} s")
        busy = list(self.busy.values())
        limit = self.settings.workers.stuck_seconds
        if len(busy) >= self.settings.workers.count and now - max(busy) > limit:
            return f"workers stuck: all {len(busy)} busy on one file each for over {limit:g} s"
        return None

    # --- the watch: noticed when it goes deaf, re-armed ----------------------------------------
    def check_watch(self) -> None:
        """The watch dies silently with the directory it watches, and our claim lock with it,
        when the inbox is deleted and re-created (a sync tool, `rm -rf inbox && mkdir inbox`).
        Called every main-loop tick: say so, and re-arm once an inbox is there again."""
        if self.claims is None or (self.observer is not None and not self.observer.is_alive()):
            return  # not started, or the observer thread itself died: fatal, not re-armed
        inbox = self.settings.inbox.path
        # Our open claim lock pins the old directory: its inode number cannot be reused, so
        # comparing identities is reliable, and the kernel holds back IN_DELETE_SELF until we
        # let go of it, so the watch alone would never tell.
        state = judge_inbox(self._inbox_identity, directory_identity(inbox))
        if state is InboxState.MISSING:
            if self.watch_problem is None or not self.watch_problem.startswith("inbox missing"):
                event(log, "inbox_missing", f"the inbox {inbox} is gone; waiting for it to be "
                      "created again", level=logging.WARNING, path=str(inbox))
            self.watch_problem = f"inbox missing: {inbox}"
            return
        reasons = [why for why, lost in (
            ("the inbox was replaced", state is InboxState.REPLACED),
            ("the watch on the inbox ended", not watching(self.observer)),
            ("our claim lock left the inbox", self.claims.lost()),
        ) if lost]
        if reasons:
            self.rearm_watch("; ".join(reasons))
        elif self.watch_problem is not None:
            self.watch_problem = None
            event(log, "watch_rearmed", f"the inbox {inbox} is back", path=str(inbox))

    def rearm_watch(self, reason: str) -> None:
        """Stop the old observer, lock a fresh claim area, watch the inbox now at the path, and
        scan it whole: files that arrived meanwhile raised no event we saw."""
        assert self.claims is not None and self.tracker is not None
        inbox = self.settings.inbox.path
        old_mode = self.watch_mode
        old, self.observer = self.observer, None  # None until re-armed: retried each tick
        if old is not None:
            with contextlib.suppress(Exception):
                old.stop()
                old.join(timeout=2)
        try:
            if self.claims.lost():  # not when only the observer failed to start last time
                self.claims.reopen()
            self._start_observer()
        except OSError as exc:
            # Gone again already, or unreadable: unhealthy, and tried again on the next tick.
            self.watch_problem = f"file watcher lost ({reason}); cannot re-arm: {exc}"
            self.monitor_errors.report("re-arming the watch", exc)
            return
        if self.watch_mode != old_mode:
            self.tracker.s = self._tracker_settings(self.settings)
        self.tracker.request_scan("")
        self.watch_problem = None
        event(log, "watch_rearmed", f"{reason}: watching {inbox} again ({self.watch_mode}), "
              "claim area re-created, scanning it whole", level=logging.WARNING,
              path=str(inbox), reason=reason, watch_mode=self.watch_mode)

    def _probe(self) -> None:
        """While files fail transiently, check whether the obstacle is gone; then retry at once
        instead of waiting out the backoff."""
        assert self.db is not None and self.tracker is not None
        ok = self.db.healthy() and _writable(self.settings.store_path)
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
            if not self._db_ok and not stuck:
                event(log, "recovered", "database and store reachable again; resuming")
                self._db_ok = True
            self.tracker.wake_retries()
        if (not ok or stuck) and self._db_ok:
            self._db_ok = False
            event(log, "degraded", f"waiting: {reason}", level=logging.WARNING,
                  reason=reason or "")

    def status_line(self, problem: str | None = None) -> str:
        c = self.counters.snapshot()
        queue = self.settings.workers.queue_size + self.settings.workers.count - (
            self.slots._value)  # type: ignore[attr-defined]
        state = "ok" if c["last_transient"] is None else f"WAITING ({c['last_transient']})"
        parts = [f"ingested {c['ingested']}", f"duplicates {c['duplicates']}",
                 f"failed {c['failed']}", f"queue {queue}", f"database {state}"]
        if self.reload_error:
            parts.append(f"config reload rejected: {self.reload_error}")
        if problem:
            parts.append(problem)
        return ", ".join(parts)[:400]

    def state(self) -> dict[str, Any]:
        c = self.counters.snapshot()
        return {**c,
                "queue_depth": self.settings.workers.queue_size + self.settings.workers.count
                - self.slots._value,  # type: ignore[attr-defined]
                "tracked": self.tracker.tracked if self.tracker else 0,
                "backlog": bool(self.tracker and self.tracker.backlog),
                "watch_mode": self.watch_mode,
                "watcher_alive": bool(self.observer and self.observer.is_alive()),
                "inbox": str(self.settings.inbox.path),
                "health": self.health_problem() or "ok",
                "reload_error": self.reload_error}

    def _heartbeat(self) -> None:
        assert self.db is not None
        try:
            with self.db.transaction(timeout=2) as cur:
                cur.execute(dbmod.QUERIES["upsert_instance"], {
                    "instance": self.instance, "hostname": socket.gethostname(),
                    "pid": os.getpid(), "state": Jsonb(self.state())})
        except dbmod.DatabaseUnavailable:
            pass

    # --- reload and signals --------------------------------------------------------------------
    def _install_signals(self) -> None:
        def stop(signum: int, _frame: object) -> None:
            self.stop_event.set()
            # A second signal takes the default action: the user really wants us gone.
            signal.signal(signum, signal.SIG_DFL)

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, lambda *_: self.reload_requested.set())
        ignore_lease_breaks()

    def reload(self) -> None:
        """Re-read the YAML; apply what can change live, keep the old settings if it is bad."""
        self.notifier.reloading()
        try:
            new = load_settings(self.config_path)
        except ConfigError as exc:
            self.reload_error = exc.problems[0] if exc.problems else str(exc)
            log.error("config reload rejected, keeping the running settings: %s", exc)
            self.notifier.ready(self.status_line())
            return
        new, restart_needed = split_reload(self.settings, new)
        if restart_needed:
            log.warning("reload: these settings change only on restart and keep their running "
                        "values until then: %s", ", ".join(restart_needed))
        self.settings = new
        self.ingestor.reconfigure(new)
        assert self.tracker is not None
        self.tracker.s = self._tracker_settings(new)
        if self.jobs is not None:
            self.jobs.reschedule(new)  # a changed search.language starts a full reindex
        setup_logging(new.logging.level)
        self.reload_error = None
        event(log, "reloaded", f"configuration reloaded from {new.source}")
        self.notifier.ready(self.status_line())

    # --- stop ----------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop intake; workers, committer and jobs share one deadline, workers.drain_timeout
        from now; then close within STOP_GRACE_SECONDS. Work still running then is abandoned:
        its files stay claimed and the next start finishes them."""
        drain_by = time.monotonic() + self.settings.workers.drain_timeout
        self.stop_event.set()
        self.notifier.stopping(self.status_line())
        if self.jobs is not None:
            self.jobs.stop()  # no new runs; a running one shares the deadline below
        if self.observer is not None:
            self.observer.stop()
        if self.tracker is not None:
            self.tracker.stop()
        self.abandoned = not self._drain_all(drain_by)
        if self.abandoned:
            log.warning("drain timeout (%g s) passed with work in progress; its files stay "
                        "claimed and are finished by the next start",
                        self.settings.workers.drain_timeout)
        close_by = drain_by + STOP_GRACE_SECONDS
        if self.observer is not None:
            with contextlib.suppress(RuntimeError):
                self.observer.join(timeout=_left(close_by, 5))
        if self.tracker_thread is not None:
            self.tracker_thread.join(timeout=_left(close_by, 5))
        # Work still running usually means the database does not answer: do not wait for it
        # again to record the stop and close the pool.
        self._record_stop(_left(close_by, 1 if self.abandoned else 2))
        self._shutdown_partial(close_by)
        event(log, "stopped", "stopped, leaving unfinished work claimed" if self.abandoned
              else "stopped cleanly",
              **{k: v for k, v in self.counters.snapshot().items() if isinstance(v, int)})

    def _drain_all(self, deadline: float) -> bool:
        """In-flight files, then the committer's queue, then running jobs, all by `deadline`.
        True when everything finished."""
        finished = True
        if self.executor is not None:
            finished = self._drain(_left(deadline))
        if self.committer is not None:
            self.committer.stop(_left(deadline))
            finished = finished and not self.committer.alive()
        if self.jobs is not None:
            # Past the deadline a running job is cancelled (jobs.join allows it a short grace).
            finished = self.jobs.join(_left(deadline)) and finished
        return finished

    def _drain(self, timeout: float) -> bool:
        assert self.executor is not None
        done = threading.Event()

        def wait_all() -> None:
            self.executor.shutdown(wait=True, cancel_futures=True)  # type: ignore[union-attr]
            done.set()

        threading.Thread(target=wait_all, daemon=True).start()
        return done.wait(timeout)

    def _record_stop(self, timeout: float) -> None:
        """Mark our instance row stopped, giving up after `timeout`."""
        if self.db is None:
            return
        db, state = self.db, Jsonb(self.state())

        def write() -> None:
            with contextlib.suppress(dbmod.DatabaseUnavailable), db.transaction(
                    timeout=2) as cur:
                cur.execute(dbmod.QUERIES["stop_instance"],
                            {"instance": self.instance, "state": state})

        _run_bounded(write, timeout, "alfrd-stop-record")

    def _abort_start(self) -> None:
        """Stop what a failed start had already set going, before closing the rest."""
        if self.observer is not None:
            with contextlib.suppress(RuntimeError):
                self.observer.stop()
        if self.tracker is not None:
            self.tracker.stop()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        if self.committer is not None and self.committer.alive():
            self.committer.stop(5)
        if self.jobs is not None:
            self.jobs.stop()

    def _shutdown_partial(self, close_by: float | None = None) -> None:
        close_by = time.monotonic() + STOP_GRACE_SECONDS if close_by is None else close_by
        if self.claims is not None:
            self.claims.close()
        if self.db is not None:
            self.db.close(timeout=_left(close_by, 0.5 if self.abandoned else 5))
        if self.target is not None:
            with contextlib.suppress(Exception):
                stop_embedded_if_unused(self.target, timeout=_left(close_by, 30, at_least=1))

    def _exit_past_abandoned_threads(self, code: int) -> NoReturn:
        """Threads still blocked in abandoned work (a frozen database) would keep the process
        alive: Python joins its worker threads at exit, without a timeout, and the service
        manager would have to SIGKILL us. Everything worth keeping is on disk or committed."""
        logging.shutdown()
        os._exit(code)


def _run_bounded(work: Callable[[], None], timeout: float, name: str) -> None:
    """Run `work` in a thread of its own for at most `timeout` seconds. For database calls the
    main thread makes: against a frozen server even taking a connection from the pool can hang
    (the pool checks it with a query), and the main thread must go on to handle SIGTERM."""
    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    worker.join(timeout)


def _left(deadline: float, cap: float = math.inf, *, at_least: float = 0.0) -> float:
    """Seconds until `deadline`, at most `cap`, at least `at_least`."""
    return max(at_least, min(cap, deadline - time.monotonic()))


@contextlib.contextmanager
def _opening(what: str, path: Path) -> Iterator[None]:
    """An OSError while creating or opening one of our directories is a start-up problem
    (outside the unit's ReadWritePaths=, read-only, under a regular file): one line naming
    the path and the error, never a traceback."""
    try:
        yield
    except OSError as exc:
        raise StartupError(f"cannot open the {what} {path}: {_os_reason(exc, path)}") from exc


def _os_reason(exc: OSError, path: Path) -> str:
    """strerror, plus the path the kernel refused when it is not the one we named."""
    reason = exc.strerror or str(exc)
    refused = os.fsdecode(exc.filename) if exc.filename is not None else None
    return f"{reason}: {refused}" if refused and refused != str(path) else reason


def _scheduler_alive(jobs: JobScheduler | None) -> bool | None:
    """Whether APScheduler's own thread runs (None when there is no scheduler thread yet)."""
    thread = getattr(getattr(jobs, "_sched", None), "_thread", None)
    return thread.is_alive() if isinstance(thread, threading.Thread) else None


def _writable(path: Path) -> bool:
    """Can the store take a small file right now (disk full → no)?"""
    try:
        with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
        return True
    except OSError:
        return False
