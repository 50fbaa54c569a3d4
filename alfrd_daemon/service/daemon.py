"""Wires the parts together and runs the main loop: watch → track → pool → ingest.

The main loop is the only place that judges health (service/health.py): it pings the systemd
watchdog only while the watcher, the readiness loop and the workers are alive, and publishes a
status line for `systemctl status` and `alfrd status`. What talks to the database on a schedule
runs in the monitor thread (service/monitor.py); the watch on the inbox is kept alive by
service/inbox_watch.py; what a reload applies is decided in service/reload.py.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

from psycopg.types.json import Jsonb

from alfrd_daemon.config.parse import ConfigError, check_paths, load_settings
from alfrd_daemon.config.settings import Settings
from alfrd_daemon.db import pool as dbmod
from alfrd_daemon.db.queries import QUERIES
from alfrd_daemon.db.target import DatabaseTarget, stop_embedded_if_unused
from alfrd_daemon.extract.pool import ExtractorPool, ExtractorUnavailable, default_size
from alfrd_daemon.hooks.runner import HookRunner
from alfrd_daemon.ingest.claim import ClaimArea
from alfrd_daemon.ingest.committer import Committer
from alfrd_daemon.ingest.counters import Counters
from alfrd_daemon.ingest.failed import FailedFolder
from alfrd_daemon.ingest.partition import Partition
from alfrd_daemon.ingest.pipeline import Ingestor
from alfrd_daemon.ingest.readiness import ReadinessParams
from alfrd_daemon.ingest.store import Store
from alfrd_daemon.ingest.tracker import Tracker, TrackerSettings
from alfrd_daemon.ingest.watch import inotify_watch_limit
from alfrd_daemon.ingest.work import Outcome, WorkItem
from alfrd_daemon.ingest.writers import ignore_lease_breaks
from alfrd_daemon.jobs.scheduler import JobScheduler, tracker_rescan_interval
from alfrd_daemon.logs import event, mask_dsn, setup_logging
from alfrd_daemon.ocr.service import OcrService
from alfrd_daemon.sdnotify import Notifier
from alfrd_daemon.service.health import Vitals, health_problem
from alfrd_daemon.service.inbox_watch import InboxWatch
from alfrd_daemon.service.metrics import (
    DaemonMetrics,
    DatabaseFigures,
    DatabaseSummary,
    LiveFigures,
    fetch_database_figures,
)
from alfrd_daemon.service.metrics_export import MetricsExport
from alfrd_daemon.service.monitor import ErrorThrottle, Monitor, adopt_orphans
from alfrd_daemon.service.reload import split_reload
from alfrd_daemon.service.rules_check import check_rules
from alfrd_daemon.service.siblings import PARENT_DIED, SiblingProcesses, die_with_parent
from alfrd_daemon.service.startup import (
    StartupError,
    database_target,
    open_database,
    open_store,
    opening,
)

log = logging.getLogger("alfrd.daemon")

MAX_INTERNAL_ERRORS = 3  # unexpected errors one file may cause before it goes to failed/
# What stopping may take after the drain deadline (workers.drain_timeout): a running job's
# cancellation (jobs.join allows it 15 s), recording the stop, closing the pool and the
# embedded server. drain_timeout + this must stay below the unit's TimeoutStopSec (90 s).
STOP_GRACE_SECONDS = 20.0


def instance_host() -> str:
    return socket.gethostname().replace("/", "_")[:40]


def new_instance_id(token: str | None = None) -> str:
    """host-pid-token: what the store's temporary names and `alfrd status` read back."""
    return instance_id(os.getpid(), token or secrets.token_hex(3))


def instance_id(pid: int, token: str) -> str:
    return f"{instance_host()}-{pid}-{token}"


def extractor_share(cores: int, partition: Partition) -> int:
    """This ingest process's part of one extractor per core (extract.workers: 0): the
    processes together run as many as one process would, and each at least one."""
    share, extra = divmod(cores, partition.count)
    return max(1, share + (partition.index < extra))


class Slots:
    """Room for files between the readiness loop and the workers (queue_size + count): a file
    takes one when submitted and gives it back when done, so `taken` is the queue depth."""

    def __init__(self, size: int):
        self.size = size
        self.taken = 0
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.taken >= self.size:
                return False
            self.taken += 1
            return True

    def give(self) -> None:
        with self._lock:
            if self.taken == 0:
                raise ValueError("a slot was given back that was never taken")
            self.taken -= 1


class Daemon:
    def __init__(self, settings: Settings, *, config_path: str | None = None,
                 notifier: Notifier | None = None, partition: Partition | None = None,
                 parent_pid: int | None = None, log_level: str | None = None,
                 instance_token: str | None = None):
        self.settings = settings
        self.config_path = config_path
        self.log_level = log_level
        # A sibling ingest process (service/siblings.py) takes only its partition and leaves
        # the jobs, OCR, hooks, metrics and the service manager to the primary, its parent.
        self.parent_pid = parent_pid
        self.partition = partition or Partition(0, settings.workers.processes)
        self.siblings: SiblingProcesses | None = None
        # The built-in sender even when systemd-python is there: libsystemd's sd_notify blocks
        # on a full socket with the GIL held, and a slow receiver would then stop every thread
        # (seen: a benchmark that stopped reading froze ingest); ours gives up after a second.
        self.notifier = notifier or Notifier.from_env(transport="fallback")
        self.instance = new_instance_id(instance_token)
        self.counters = Counters()
        self.stop_event = threading.Event()
        self.reload_requested = threading.Event()
        self.reload_error: str | None = None
        self.errors = ErrorThrottle(log)  # of the monitor's duties and of re-arming the watch
        self.target: DatabaseTarget | None = None
        self.db: dbmod.Database | None = None
        self.claims: ClaimArea | None = None
        self.store: Store | None = None
        self.committer: Committer | None = None
        self.ingestor: Ingestor | None = None
        self.extractors: ExtractorPool | None = None
        self.releaser: ThreadPoolExecutor | None = None  # releases claimed copies after commit
        self._releases: list[Callable[[], None]] = []  # the committer's batch so far (its thread)
        self.executor: ThreadPoolExecutor | None = None
        self.slots = Slots(settings.workers.queue_size + settings.workers.count)
        self.busy: dict[int, float] = {}  # worker thread → when it took its current file
        self.internal_errors: dict[str, int] = {}  # relpath → unexpected errors so far
        self.tracker: Tracker | None = None
        self.tracker_thread: threading.Thread | None = None
        self.watch: InboxWatch | None = None
        self.jobs: JobScheduler | None = None
        self.monitor: Monitor | None = None
        self.ocr: OcrService | None = None
        self.metrics: DaemonMetrics | None = None
        self.metrics_export: MetricsExport | None = None
        self.hooks: HookRunner | None = None
        self.exit_code = 0
        self.abandoned = False  # set when shutdown left work running past the drain deadline

    # --- start ---------------------------------------------------------------------------------
    def start(self) -> None:
        s = self.settings
        check_rules(s)
        problems = check_paths(s)
        if problems:
            raise StartupError("; ".join(problems))
        with opening("inbox", s.inbox.path):
            s.inbox.path.mkdir(parents=True, exist_ok=True)
        with opening("state directory", s.state_dir):
            s.state_dir.mkdir(parents=True, exist_ok=True)
        if self.parent_pid is None:
            self._start_metrics()  # first: a taken port fails the start before anything runs
        # The embedded server or the configured one, waited for, migrated, with the pool open.
        target = self.target = database_target(s)
        db = self.db = dbmod.Database(
            target.conninfo, min_size=s.database.pool_min, max_size=s.database.pool_max,
            connect_timeout=s.database.connect_timeout,
            reconnect_timeout=s.database.reconnect_timeout)
        open_database(db, s.database.startup_timeout)
        store = self.store = Store(s.store_path, fsync=s.store.fsync, instance=self.instance)
        with opening("store", s.store_path):
            open_store(store, db)
        # Threads of their own: a slow hook never holds up an ingest worker. Started before
        # anything is ingested, and even without hooks: it records in the database which
        # hooks this host has, and the triggers enqueue runs only for those.
        if self.parent_pid is None:
            self.hooks = HookRunner(s.hooks, db, store_root=s.store_path, store_id=store.id,
                                    instance=self.instance, host=instance_host())
            self.hooks.start()
        failed = FailedFolder(s.failed_path)
        with opening("failed folder", s.failed_path):
            failed.open()
        claims = self.claims = ClaimArea(s.inbox.path, self.instance)
        with opening("claim area", claims.root):
            claims.open()
        self.committer = Committer(db, s.store_path, fsync=s.store.fsync,
                                   in_flight=lambda: self.slots.taken,
                                   max_batch=s.workers.commit_batch,
                                   after_batch=self._release_batch)
        self.committer.start()
        extractors = self.extractors = ExtractorPool(
            size=s.extract.workers or extractor_share(default_size(), self.partition),
            recycle_after=s.extract.recycle_after,
            memory_limit_mb=s.extract.memory_limit_mb)
        try:
            extractors.start()  # the libraries load now, not with the first PDF
        except ExtractorUnavailable as exc:
            raise StartupError(f"cannot start the extractor processes: {exc}") from exc
        self.releaser = ThreadPoolExecutor(max_workers=s.workers.count,
                                           thread_name_prefix="alfrd-release")
        self.ingestor = Ingestor(settings=s, db=db, store=store, claims=claims,
                                 failed=failed, counters=self.counters,
                                 committer=self.committer, on_complete=self._complete,
                                 extractors=extractors, release_later=self._release_later,
                                 in_flight=lambda: self.slots.taken)
        if self.metrics is not None:  # before the first file
            self.ingestor.reader.observe = self.metrics.extraction.observe
        self.executor = ThreadPoolExecutor(max_workers=s.workers.count,
                                           thread_name_prefix="alfrd-worker")
        tracker = self.tracker = Tracker(self._tracker_settings(s), self._submit,
                                         intake_open=self._intake_open,
                                         owns=self.partition.owns)
        watch = self.watch = InboxWatch(settings=lambda: self.settings, tracker=tracker,
                                        claims=claims, errors=self.errors,
                                        mode_changed=self._retune_tracker)
        # Watch first (events queue up), then scan: a file landing in between is not missed.
        with opening("watch on the inbox", s.inbox.path):
            watch.arm()
        self._retune_tracker()  # now that the real watch mode is known
        with opening("claim area", claims.root):
            adopt_orphans(claims, tracker, store, instance_host())
        self.tracker_thread = threading.Thread(target=tracker.run, name="alfrd-readiness",
                                               daemon=True)
        self.tracker_thread.start()
        share = f", files of partition {self.partition}" if self.partition.count > 1 else ""
        event(log, "started", f"watching {s.inbox.path} ({watch.mode}{share}); database "
              f"{mask_dsn(target.conninfo) or 'from PG* environment'}",
              instance=self.instance, watch_mode=watch.mode, partition=str(self.partition),
              sd_notify=self.notifier.transport if self.notifier.enabled else "off")
        if self.parent_pid is None:
            self.jobs = JobScheduler(s, target.conninfo, self.instance, tracker=tracker)
            self.jobs.start()
        if s.ocr.enabled and self.parent_pid is None:
            # Its own processes: a long scan never holds up the ingest of other files.
            self.ocr = OcrService(s, db, store_root=s.store_path, store_id=store.id,
                                  worker=self.instance)
            if self.metrics is not None:
                self.ocr.observe = self.metrics.observe_ocr
            self.ocr.start()
        self.monitor = Monitor(db=db, counters=self.counters, tracker=tracker, claims=claims,
                               store=store, instance=self.instance, host=instance_host(),
                               settings=lambda: self.settings, state=self.state,
                               stop=self.stop_event, errors=self.errors)
        if self.parent_pid is None and self.partition.count > 1:
            # Last: they open the same database and store, which are ready now.
            self.siblings = SiblingProcesses(
                self.partition.count, self.config_path, database_url=target.conninfo or None,
                instance_of=instance_id,
                log_level=self.log_level)
            self.siblings.start()

    def _start_metrics(self) -> None:
        """Off unless configured. Bound before the other parts exist: a scrape meanwhile
        finds them missing (live_figures copes) and the database not yet open."""
        m = self.settings.metrics
        if m.listen is None and m.textfile is None:
            return
        metrics = self.metrics = DaemonMetrics(
            self.live_figures, DatabaseSummary(self._database_figures, ttl=m.cache_seconds))
        self.metrics_export = MetricsExport(m, metrics.registry)
        self.metrics_export.start()

    def _database_figures(self) -> DatabaseFigures:
        if self.db is None:
            raise dbmod.DatabaseUnavailable("the database is not open yet")
        return fetch_database_figures(self.db)

    def _tracker_settings(self, s: Settings) -> TrackerSettings:
        mode = self.watch.mode if self.watch is not None else "?"
        return TrackerSettings(
            inbox=s.inbox.path,
            params=ReadinessParams(
                settle_seconds=s.watch.settle_seconds, quiet_seconds=s.watch.quiet_seconds,
                stale_write_seconds=s.watch.stale_write_seconds,
                close_events=mode == "inotify"),
            ignore_files=s.inbox.ignore_files, ignore_dirs=s.inbox.ignore_dirs,
            recursive=s.inbox.recursive, rescan_interval=tracker_rescan_interval(s),
            max_tracked=max(1000, 4 * (s.workers.queue_size + s.workers.count)),
            retry_initial=s.workers.retry_initial, retry_max=s.workers.retry_max,
            watch_limit=inotify_watch_limit() if mode == "inotify" else None,
            folder_quiet_max=s.watch.folder_quiet_max_seconds)

    def _retune_tracker(self) -> None:
        """The readiness rules follow the settings and the watch mode (close events)."""
        assert self.tracker is not None
        self.tracker.s = self._tracker_settings(self.settings)

    # --- the pool ------------------------------------------------------------------------------
    def _intake_open(self) -> bool:
        return self.counters.transient_since is None and not self.stop_event.is_set()

    def _submit(self, item: WorkItem) -> bool:
        if self.stop_event.is_set() or not self.slots.take():
            return False
        assert self.executor is not None
        try:
            self.executor.submit(self._work, item)
        except RuntimeError:  # shutting down
            self.slots.give()
            return False
        return True

    def _work(self, item: WorkItem) -> None:
        assert self.ingestor is not None
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
        assert self.ingestor is not None
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
        self.slots.give()
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
        if self.parent_pid is not None:
            signal.signal(PARENT_DIED, self._parent_died)
            if not die_with_parent(self.parent_pid):
                log.error("cannot start: ingest process %s: its parent (pid %d) is gone",
                          self.partition, self.parent_pid)
                return 1
        try:
            self.start()
        except (StartupError, ConfigError, OSError) as exc:
            # OSError: a start-up step not wrapped by `opening`; its text names the path.
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
        monitor = self.monitor
        assert monitor is not None
        _run_bounded(lambda: monitor.guarded("heartbeat", monitor.heartbeat), 2.0,
                     "alfrd-first-heartbeat")
        monitor.start()
        if self.siblings is not None:
            # READY=1 means every ingest process watches the inbox: a file dropped right
            # after it must not wait for its process to start.
            late = self.siblings.wait_started(self.db, self.settings.database.startup_timeout) \
                if self.db is not None else []
            if late:
                log.warning("ingest processes %s are not up after %g s; ready without them "
                            "(their files wait until they are)", ", ".join(map(str, late)),
                            self.settings.database.startup_timeout)
        self.notifier.ready(self.status_line())
        try:
            while not self.stop_event.wait(self._tick()):
                if self.reload_requested.is_set():
                    self.reload_requested.clear()
                    self.reload()
                if self.watch is not None:
                    self.watch.check()
                if self.siblings is not None:
                    self.siblings.check()
                problem = self.health_problem()
                self.notifier.status(self.status_line(problem))
                if problem is None:
                    self.notifier.watchdog()
                elif problem.startswith("fatal"):
                    log.error("%s; exiting so the service manager restarts us", problem)
                    self.stop_event.set()
                    self.exit_code = 1
        finally:
            self.shutdown()
        if self.abandoned:
            self._exit_past_abandoned_threads(self.exit_code)
        return self.exit_code

    def _tick(self) -> float:
        interval = self.notifier.watchdog_interval
        return min(1.0, interval) if interval else 1.0

    # --- health and state ----------------------------------------------------------------------
    def vitals(self) -> Vitals:
        """One look at every long-lived part, for health_problem."""
        thread, committer, monitor = self.tracker_thread, self.committer, self.monitor
        monitor_alive = monitor.alive() if monitor is not None else None
        return Vitals(
            stopping=self.stop_event.is_set(),
            readiness_alive=thread.is_alive() if thread is not None else None,
            readiness_beat=self.tracker.heartbeat if self.tracker is not None else None,
            committer_alive=committer.alive() if committer is not None else None,
            committer_busy_since=committer.busy_since if committer is not None else None,
            watcher_alive=self.watch.alive() if self.watch is not None else None,
            watch_problem=self.watch.problem if self.watch is not None else None,
            monitor_alive=monitor_alive,
            monitor_beat=monitor.beat if monitor is not None and monitor_alive is not None
            else None,
            scheduler_alive=self.jobs.alive() if self.jobs is not None else None,
            ocr_alive=self.ocr.alive() if self.ocr is not None else None,
            hooks_alive=self.hooks.alive() if self.hooks is not None else None,
            workers=self.settings.workers.count,
            workers_busy_since=tuple(self.busy.values()),
            stuck_seconds=self.settings.workers.stuck_seconds)

    def health_problem(self) -> str | None:
        return health_problem(self.vitals(), time.monotonic())

    def status_line(self, problem: str | None = None) -> str:
        c = self.counters.snapshot()
        state = "ok" if c["last_transient"] is None else f"WAITING ({c['last_transient']})"
        parts = [f"ingested {c['ingested']}", f"duplicates {c['duplicates']}",
                 f"failed {c['failed']}", f"queue {self.slots.taken}", f"database {state}"]
        if self.siblings is not None:
            parts.append(f"ingest processes {1 + self.siblings.running()}/"
                         f"{self.partition.count}")
        if self.ocr is not None:
            parts.append(f"OCR {self.ocr.stats.documents} read" if self.ocr.unavailable is None
                         else f"OCR UNAVAILABLE ({self.ocr.unavailable})")
        if self.reload_error:
            parts.append(f"config reload rejected: {self.reload_error}")
        if problem:
            parts.append(problem)
        return ", ".join(parts)[:400]

    def state(self) -> dict[str, Any]:
        """What the heartbeat records for `alfrd status`."""
        c = self.counters.snapshot()
        return {**c,
                "queue_depth": self.slots.taken,
                "tracked": self.tracker.tracked if self.tracker else 0,
                "backlog": bool(self.tracker and self.tracker.backlog),
                "watch_mode": self.watch.mode if self.watch is not None else "?",
                "watcher_alive": bool(self.watch is not None and self.watch.alive()),
                "inbox": str(self.settings.inbox.path),
                "partition": str(self.partition),
                "health": self.health_problem() or "ok",
                "reload_error": self.reload_error,
                "ocr": self.ocr.state() if self.ocr is not None else None,
                "hooks": self.hooks.state() if self.hooks is not None else None}

    def live_figures(self) -> LiveFigures:
        """What the metrics read at each scrape (from the scrape's thread)."""
        c = self.counters.snapshot()
        now = time.monotonic()
        waiting, since = self.tracker.waiting() if self.tracker is not None else (0, None)
        ocr: dict[str, Any] | None = None
        if self.ocr is not None:
            ocr = self.ocr.state()
        return LiveFigures(
            instance=self.instance, health=self.health_problem() or "ok",
            outcomes={"ingested": c["ingested"], "duplicate": c["duplicates"],
                      "failed": c["failed"], "retry": c["retries"], "gone": c["gone"]},
            in_progress=c["in_progress"], paused=self.counters.transient_since is not None,
            queue_depth=self.slots.taken, queue_capacity=self.slots.size,
            tracked=self.tracker.tracked if self.tracker is not None else 0,
            ready_waiting=waiting, oldest_ready_age=now - since if since is not None else None,
            db_pool=dict(self.db.pool.get_stats()) if self.db is not None else {},
            extractor_pool=(self.extractors.size, self.extractors.busy())
            if self.extractors is not None else None,
            ocr=ocr)

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

    def _parent_died(self, _signum: int, _frame: object) -> None:
        if not self.stop_event.is_set():
            log.warning("ingest process %s: the daemon that started it is gone; stopping",
                        self.partition)
        self.stop_event.set()

    def reload(self) -> None:
        """Re-read the YAML; apply what can change live, keep the old settings if it is bad."""
        self.notifier.reloading()
        if self.siblings is not None:
            self.siblings.signal_all(signal.SIGHUP)  # each reads the file itself
        try:
            new = load_settings(self.config_path)
            check_rules(new)
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
        assert self.ingestor is not None
        self.ingestor.reconfigure(new)
        if self.ocr is not None:
            self.ocr.reconfigure(new)
        self._retune_tracker()
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
        if self.siblings is not None:
            self.siblings.signal_all(signal.SIGTERM)  # once: they drain alongside us
        if self.metrics_export is not None:
            self.metrics_export.stop()
        if self.jobs is not None:
            self.jobs.stop()  # no new runs; a running one shares the deadline below
        if self.watch is not None:
            self.watch.stop()
        if self.tracker is not None:
            self.tracker.stop()
        if self.ocr is not None:
            # Documents being read go back to the queue (released, not counted).
            self.ocr.stop(timeout=_left(drain_by, 10))
        if self.hooks is not None:
            # A hook still running is killed and its run put back (it runs again at start).
            self.hooks.stop(timeout=_left(drain_by, 5))
        self.abandoned = not self._drain_all(drain_by)
        if self.abandoned:
            log.warning("drain timeout (%g s) passed with work in progress; its files stay "
                        "claimed and are finished by the next start",
                        self.settings.workers.drain_timeout)
        close_by = drain_by + STOP_GRACE_SECONDS
        if self.watch is not None:
            self.watch.join(timeout=_left(close_by, 5))
        if self.tracker_thread is not None:
            self.tracker_thread.join(timeout=_left(close_by, 5))
        # Work still running usually means the database does not answer: do not wait for it
        # again to record the stop and close the pool.
        self._record_stop(_left(close_by, 1 if self.abandoned else 2))
        if self.siblings is not None and not self.siblings.stop(_left(close_by, at_least=1)):
            log.warning("an ingest process did not stop in time and was killed; its claimed "
                        "files are finished by the next start")
        self._shutdown_partial(close_by)
        event(log, "stopped", "stopped, leaving unfinished work claimed" if self.abandoned
              else "stopped cleanly",
              **{k: v for k, v in self.counters.snapshot().items() if isinstance(v, int)})

    def _drain_all(self, deadline: float) -> bool:
        """In-flight files, then the committer's queue, then running jobs, all by `deadline`.
        True when everything finished."""
        finished = True
        if self.executor is not None:
            finished = self._drain(self.executor, _left(deadline))
        if self.committer is not None:
            self.committer.stop(_left(deadline))
            finished = finished and not self.committer.alive()
        if self.releaser is not None:  # after the committer: it hands releases on
            finished = self._drain(self.releaser, _left(deadline), cancel=False) and finished
        if self.jobs is not None:
            # Past the deadline a running job is cancelled (jobs.join allows it a short grace).
            finished = self.jobs.join(_left(deadline)) and finished
        return finished

    def _release_later(self, work: Callable[[], None]) -> None:
        """Releases of the committer's verdicts wait for the end of their batch and go to a
        releaser together: one hand-off per batch instead of one per file."""
        if self.committer is not None and threading.current_thread() is self.committer.thread:
            self._releases.append(work)
        else:
            self._hand_releases([work])

    def _release_batch(self) -> None:
        """The committer's batch is through (runs in the committer thread)."""
        works, self._releases = self._releases, []
        if works:
            self._hand_releases(works)

    def _hand_releases(self, works: list[Callable[[], None]]) -> None:
        assert self.releaser is not None
        try:
            self.releaser.submit(run_each, works)
        except RuntimeError:  # draining already (a late commit): release them here
            run_each(works)

    @staticmethod
    def _drain(executor: ThreadPoolExecutor, timeout: float, *, cancel: bool = True) -> bool:
        """Wait at most `timeout` for the executor's work; `cancel` drops what has not begun
        (files not yet read stay in the inbox; releases must all run)."""
        done = threading.Event()

        def wait_all() -> None:
            executor.shutdown(wait=True, cancel_futures=cancel)
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
                cur.execute(QUERIES["stop_instance"],
                            {"instance": self.instance, "state": state})

        _run_bounded(write, timeout, "alfrd-stop-record")

    def _abort_start(self) -> None:
        """Stop what a failed start had already set going, before closing the rest."""
        if self.watch is not None:
            with contextlib.suppress(RuntimeError):
                self.watch.stop()
        if self.tracker is not None:
            self.tracker.stop()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        if self.committer is not None and self.committer.alive():
            self.committer.stop(5)
        if self.jobs is not None:
            self.jobs.stop()
        if self.ocr is not None:
            self.ocr.stop(timeout=5)
        if self.metrics_export is not None:
            self.metrics_export.stop()
        if self.hooks is not None:
            self.hooks.stop(timeout=5)

    def _shutdown_partial(self, close_by: float | None = None) -> None:
        close_by = time.monotonic() + STOP_GRACE_SECONDS if close_by is None else close_by
        if self.extractors is not None:  # after the workers: none waits on an extractor now
            self.extractors.close()
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


def run_each(works: list[Callable[[], None]]) -> None:
    for work in works:
        try:
            work()
        except Exception:  # one file's release must not keep the others of its batch
            log.exception("releasing a committed file failed")
