"""The scheduler: APScheduler's BackgroundScheduler, fed from `jobs:` and the database's memory.

APScheduler's default misfire grace (1 s) silently skips a run that was due while the machine
slept; each job has its own grace, long for the nightly ones, and on start a job whose last
success predates a passed slot runs at once (job_state remembers successes).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg.rows import dict_row

from alfrd_daemon.config.schedule import make_trigger, missed_slot, previous_fire
from alfrd_daemon.config.settings import Settings
from alfrd_daemon.db import pool as dbmod
from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.jobs.context import JobContext
from alfrd_daemon.jobs.registry import JOBS
from alfrd_daemon.jobs.runner import GROUP_WAIT_SECONDS, JobRunner, Trigger
from alfrd_daemon.logs import event, mask_dsn

if TYPE_CHECKING:
    from alfrd_daemon.ingest.tracker import Tracker

Q = load_named_queries("jobs.sql")

log = logging.getLogger("alfrd.jobs")

WAKEUP_SECONDS = 30.0  # bounds how late a run starts after a suspend or a clock jump


def tracker_rescan_interval(settings: Settings) -> float:
    """The readiness loop's own full-scan timer. While the scheduler owns rescans it is only a
    fallback, at twice watch.rescan_interval: each scheduled scan resets it, so it fires only
    if scheduled scans stop arriving, and the two never scan back to back."""
    if settings.jobs.rescan.enabled:
        return float(settings.watch.rescan_interval) * 2
    return float(settings.watch.rescan_interval)


class JobScheduler:
    """APScheduler's BackgroundScheduler, fed from `jobs:` and the database's memory."""

    def __init__(self, settings: Settings, conninfo: str, instance: str, *,
                 tracker: Tracker | None = None):
        self.settings = settings
        self.conninfo = conninfo
        self.instance = instance
        self.tracker = tracker
        self.cancel = threading.Event()
        self._sched: Any = None  # BackgroundScheduler, untyped
        self._running: dict[str, JobContext] = {}
        self._lock = threading.Condition()
        self._stop_wakeups = threading.Event()

    def available(self, settings: Settings) -> list[str]:
        """Enabled jobs this process can run (rescan only inside a daemon)."""
        return [name for name in JOBS if settings.jobs.job(name).enabled
                and (name != "rescan" or self.tracker is not None)]

    def start(self) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        # Our job_started/job_succeeded events say what APScheduler's executor would log at
        # INFO for every rescan; its warnings (missed runs, max instances) still come through.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        self._sched = BackgroundScheduler(
            timezone=self.settings.jobs.tz,
            executors={"default": ThreadPoolExecutor(max_workers=len(JOBS) + 1)},
            job_defaults={"coalesce": True, "max_instances": 1})
        self._add_jobs(self.settings)
        self._sched.start()
        # Off the caller's thread: a slow database must not hold up the daemon's start.
        self._sched.add_job(self.catch_up, id="catch-up-check", misfire_grace_time=None)
        threading.Thread(target=self._wakeups, name="alfrd-scheduler-wakeup",
                         daemon=True).start()
        names = ", ".join(f"{n} ({self.settings.jobs.job(n).schedule.describe()})"
                          for n in self.available(self.settings)) or "none"
        event(log, "scheduler_started", f"scheduled jobs: {names}")

    def _add_jobs(self, settings: Settings) -> None:
        tz = settings.jobs.tz
        for name in self.available(settings):
            job = settings.jobs.job(name)
            self._sched.add_job(self._fire, trigger=make_trigger(job.schedule, tz), args=[name],
                                id=name, name=name, misfire_grace_time=int(job.misfire_grace),
                                coalesce=True, max_instances=1, replace_existing=True)

    def _wakeups(self) -> None:
        # APScheduler sleeps on a monotonic clock, which stands still while the machine is
        # suspended; a regular wakeup re-reads the wall clock so missed runs start promptly.
        while not self._stop_wakeups.wait(WAKEUP_SECONDS):
            with contextlib.suppress(Exception):
                self._sched.wakeup()

    def catch_up(self, now: datetime | None = None) -> list[str]:
        """Run at once every job whose last success predates a slot that has passed."""
        settings = self.settings
        tz = settings.jobs.tz
        now = now or datetime.now(tz)
        due = []
        try:
            with dbmod.connect(self.conninfo, connect_timeout=settings.database.connect_timeout,
                               autocommit=True, row_factory=dict_row) as conn:
                for name in self.available(settings):
                    if not JOBS[name].catch_up:
                        continue
                    conn.execute(Q["job_register"], {"job": name})
                    row = conn.execute(Q["job_reference"], {"job": name}).fetchone()
                    slot = missed_slot(settings.jobs.job(name).schedule, tz,
                                       row["reference"], now) if row else None
                    if slot is not None:
                        due.append(name)
        except (dbmod.DatabaseUnavailable, psycopg.Error) as exc:
            log.warning("could not check for overdue jobs: %s", mask_dsn(str(exc)))
            return []
        for name in due:
            log.info("job %s is overdue (missed while no daemon ran it); running it now", name)
            # A one-off run: the regular job keeps its fire times. Should both coincide, the
            # job's lock and its slot in job_runs let only one of them work.
            self._sched.add_job(self._fire, args=[name, "catch-up"], id=f"{name}@catch-up",
                                replace_existing=True, misfire_grace_time=None)
        return due

    def _fire(self, name: str, trigger: Trigger = "schedule", lock_wait: float = 0.0) -> None:
        settings = self.settings
        spec = JOBS[name]
        slot = None
        if spec.scope == "database" and trigger in ("schedule", "catch-up"):
            tz = settings.jobs.tz
            slot = previous_fire(settings.jobs.job(name).schedule, tz, datetime.now(tz))
        runner = JobRunner(settings, self.conninfo, self.instance, tracker=self.tracker,
                           cancel=self.cancel,
                           on_context=lambda ctx: self._track(name, trigger, ctx))
        try:
            result = runner.run(name, trigger=trigger, slot=slot, lock_wait=lock_wait)
        except dbmod.DatabaseUnavailable as exc:
            log.warning("job %s not run: %s", name, mask_dsn(str(exc)))
            return
        if result.outcome == "skipped":
            log.debug("job %s skipped: %s", name, result.message)

    def _track(self, name: str, trigger: str, ctx: JobContext | None) -> None:
        key = f"{name}:{trigger}"
        with self._lock:
            if ctx is None:
                self._running.pop(key, None)
                self._lock.notify_all()
            else:
                self._running[key] = ctx

    def trigger(self, name: str, reason: Trigger = "reload") -> None:
        """Run a job now, in the scheduler's threads; waits for a run already in progress
        (which may be working from the old settings) instead of skipping."""
        timeout = getattr(self.settings.jobs.job(name), "timeout", GROUP_WAIT_SECONDS)
        self._sched.add_job(self._fire, args=[name, reason, timeout], id=f"{name}@{reason}",
                            replace_existing=True, misfire_grace_time=None)

    def reschedule(self, new: Settings) -> None:
        """Apply reloaded settings: changed schedules, enabled flags, time zone; a changed
        search.language starts a full reindex."""
        old, self.settings = self.settings, new
        if old.jobs != new.jobs:
            for name in JOBS:
                with contextlib.suppress(Exception):  # JobLookupError: was not scheduled
                    self._sched.remove_job(name)
            self._add_jobs(new)
            log.info("job schedules reloaded")
        if old.search.language != new.search.language:
            event(log, "reindex_requested", f"search.language changed from "
                  f"{old.search.language} to {new.search.language}: reindexing every document",
                  old=old.search.language, new=new.search.language)
            self.trigger("reindex")

    def alive(self) -> bool | None:
        """Whether APScheduler's own thread runs; None while there is none (not started yet,
        or shut down). APScheduler offers no public way to ask, so only this method looks."""
        thread = getattr(self._sched, "_thread", None)
        return thread.is_alive() if isinstance(thread, threading.Thread) else None

    def stop(self) -> None:
        """No new runs; runs in progress go on (join decides how long)."""
        self._stop_wakeups.set()
        if self._sched is not None and self._sched.running:
            self._sched.shutdown(wait=False)

    def join(self, timeout: float) -> bool:
        """Wait for running jobs up to `timeout`, then abandon them (their queries are
        cancelled, their children stopped). True if none had to be abandoned."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._running and time.monotonic() < deadline:
                self._lock.wait(min(1.0, max(0.0, deadline - time.monotonic())))
            abandoned = list(self._running)
        if not abandoned:
            return True
        log.warning("abandoning running jobs at shutdown: %s", ", ".join(abandoned))
        self.cancel.set()
        with self._lock:
            end = time.monotonic() + 15
            while self._running and time.monotonic() < end:
                self._lock.wait(1.0)
        return False
