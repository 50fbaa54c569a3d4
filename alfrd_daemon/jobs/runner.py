"""Scheduled jobs: which exist, how one run is made safe and recorded, and the scheduler.

A database-wide job (backup, restore-test, reindex, prune) runs under a session advisory lock
held on a dedicated connection for the whole run. The pool is no place for it: measured, a
session lock taken on a pooled connection survives the connection's return to the pool. A
dedicated connection's lock is released when its holder dies, even by SIGKILL. With the lock
held, the run checks job_runs for its slot (the fire time it serves, the same on every daemon
because schedules are computed, not counted from start-up), so however many daemons share the
database each scheduled run happens once.

Instance jobs (rescan, retry-failed) act on this daemon's own folders and take no database lock.

APScheduler's default misfire grace (1 s) silently skips a run that was due while the machine
slept; each job has its own grace, long for the nightly ones, and on start a job whose last
success predates a passed slot runs at once (job_state remembers successes).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from alfrd_daemon.config.jobs import JOB_ATTRS
from alfrd_daemon.config.schedule import make_trigger, missed_slot, next_fire, previous_fire
from alfrd_daemon.db import pool as dbmod
from alfrd_daemon.db.locks import advisory_key
from alfrd_daemon.db.pgtools import NoSuitableTool
from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.jobs.backup import run_backup
from alfrd_daemon.jobs.context import Cancelled, JobContext, JobFailed, Reporter
from alfrd_daemon.jobs.prune import run_prune
from alfrd_daemon.jobs.reindex import run_reindex
from alfrd_daemon.jobs.restore import run_restore_test
from alfrd_daemon.jobs.retry import run_retry_failed
from alfrd_daemon.logs import event, mask_dsn

Q = load_named_queries("jobs.sql")

log = logging.getLogger("alfrd.jobs")

GROUP_WAIT_SECONDS = 3600.0  # a backup waits this long for a running reindex, and vice versa
LOCK_POLL_SECONDS = 1.0
WAKEUP_SECONDS = 30.0  # bounds how late a run starts after a suspend or a clock jump
Trigger = Literal["schedule", "catch-up", "manual", "reload"]


def _run_rescan(ctx: JobContext) -> dict[str, Any]:
    if ctx.tracker is None:
        raise JobFailed("rescan asks a running daemon's watcher to scan its inbox; it cannot "
                        "run outside the daemon")
    ctx.tracker.request_scan()
    return {"requested": True}


@dataclass(frozen=True)
class JobSpec:
    name: str
    run: Callable[[JobContext], dict[str, Any] | None]
    # database: once per slot across all daemons (advisory lock); instance: every daemon.
    scope: Literal["database", "instance"]
    # Jobs of one group never overlap: REINDEX CONCURRENTLY waits for pg_dump's snapshot.
    group: str | None = None
    catch_up: bool = True


JOBS: dict[str, JobSpec] = {
    "backup": JobSpec("backup", run_backup, "database", group="maintenance"),
    "restore-test": JobSpec("restore-test", run_restore_test, "database"),
    "reindex": JobSpec("reindex", run_reindex, "database", group="maintenance"),
    "rescan": JobSpec("rescan", _run_rescan, "instance", catch_up=False),
    "retry-failed": JobSpec("retry-failed", run_retry_failed, "instance"),
    "prune": JobSpec("prune", run_prune, "database"),
}
assert set(JOBS) == set(JOB_ATTRS)


def tracker_rescan_interval(settings: Any) -> float:
    """The readiness loop's own full-scan timer. While the scheduler owns rescans it is only a
    fallback, at twice watch.rescan_interval: each scheduled scan resets it, so it fires only
    if scheduled scans stop arriving, and the two never scan back to back."""
    if settings.jobs.rescan.enabled:
        return float(settings.watch.rescan_interval) * 2
    return float(settings.watch.rescan_interval)


@dataclass
class RunResult:
    outcome: Literal["succeeded", "failed", "skipped", "abandoned"]
    message: str = ""
    run_id: int | None = None
    details: dict[str, Any] | None = None


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(details, default=str))  # type: ignore[no-any-return]


class JobRunner:
    """Runs one job now: lock, slot check, history row, the work, the outcome."""

    def __init__(self, settings: Any, conninfo: str, instance: str, *, tracker: Any = None,
                 reporter: Reporter | None = None, cancel: threading.Event | None = None,
                 on_context: Callable[[JobContext | None], None] | None = None):
        self.settings = settings
        self.conninfo = conninfo
        self.instance = instance
        self.tracker = tracker
        self.reporter = reporter
        self.cancel = cancel or threading.Event()
        self.on_context = on_context

    def run(self, name: str, *, trigger: Trigger = "manual", slot: datetime | None = None,
            lock_wait: float = 0.0) -> RunResult:
        """Raises DatabaseUnavailable if the history cannot even be reached."""
        spec = JOBS[name]
        ctx = JobContext(name=name, settings=self.settings, conninfo=self.conninfo,
                         instance=self.instance, tracker=self.tracker, reporter=self.reporter,
                         connect_timeout=self.settings.database.connect_timeout)
        if self.on_context:
            self.on_context(ctx)
        relay = threading.Thread(target=self._relay_cancel, args=(ctx,), daemon=True)
        relay.start()
        try:
            if spec.scope == "instance":
                return self._run_instance(spec, ctx, trigger)
            return self._run_locked(spec, ctx, trigger, slot, lock_wait)
        finally:
            ctx.cancel.set()  # ends the relay thread
            if self.on_context:
                self.on_context(None)

    def _relay_cancel(self, ctx: JobContext) -> None:
        while not ctx.cancel.is_set():
            if self.cancel.wait(0.5):
                ctx.abort()
                return

    def _history(self) -> psycopg.Connection:
        return dbmod.connect(self.conninfo, connect_timeout=self.settings.database
                             .connect_timeout, autocommit=True, row_factory=dict_row)

    def _run_locked(self, spec: JobSpec, ctx: JobContext, trigger: Trigger,
                    slot: datetime | None, lock_wait: float) -> RunResult:
        with self._history() as conn:
            if not self._acquire(conn, f"job:{spec.name}", lock_wait):
                holder = conn.execute(Q["job_running_elsewhere"], {"job": spec.name}).fetchone()
                who = f" by {holder['instance']} since {holder['started_at']:%H:%M:%S}" \
                    if holder else " elsewhere"
                return RunResult("skipped", f"{spec.name} is already running{who}")
            for stale in conn.execute(Q["job_abandon_stale"], {"job": spec.name}).fetchall():
                log.warning("job %s: run %s of %s was left unfinished; marked abandoned",
                            spec.name, stale["id"], stale["instance"])
            if slot is not None:
                served = conn.execute(Q["job_slot_served"],
                                      {"job": spec.name, "slot": slot}).fetchone()
                if served is not None:
                    return RunResult("skipped", f"{spec.name} for {slot:%Y-%m-%d %H:%M} was "
                                     f"already run by {served['instance']}")
            row = conn.execute(Q["job_start"], {"job": spec.name, "instance": self.instance,
                                                "trigger": trigger, "slot": slot}).fetchone()
            assert row is not None
            waited = time.monotonic()
            if spec.group and not self._acquire(conn, f"group:{spec.group}",
                                                GROUP_WAIT_SECONDS):
                result = RunResult("abandoned", "the daemon is stopping", row["id"]) \
                    if self.cancel.is_set() else RunResult(
                        "failed", f"waited {GROUP_WAIT_SECONDS:.0f} s for another "
                        f"{spec.group} job (backup or reindex) to finish", row["id"])
            else:
                if time.monotonic() - waited > LOCK_POLL_SECONDS:
                    ctx.details["waited_for"] = {spec.group: round(time.monotonic() - waited, 1)}
                result = self._work(spec, ctx, trigger)
                result.run_id = row["id"]
            details = _jsonable({**ctx.details, **({"error": result.message}
                                                  if result.outcome != "succeeded" else {})})
            result.details = details
            try:
                conn.execute(Q["job_finish"], {"id": row["id"], "outcome": result.outcome,
                                               "details": Jsonb(details)})
                if result.outcome == "succeeded":
                    conn.execute(Q["job_record_success"],
                                 {"job": spec.name, "started_at": row["started_at"]})
            except psycopg.Error as exc:
                # The next run that gets the lock marks this one abandoned.
                log.error("job %s: could not record its outcome (%s): %s", spec.name,
                          result.outcome, mask_dsn(str(exc)))
            return result

    def _run_instance(self, spec: JobSpec, ctx: JobContext, trigger: Trigger) -> RunResult:
        started = datetime.now(UTC)
        result = self._work(spec, ctx, trigger)
        result.details = _jsonable({**ctx.details, **({"error": result.message}
                                                      if result.outcome != "succeeded" else {})})
        try:
            with self._history() as conn:
                row = conn.execute(Q["job_record"], {
                    "job": spec.name, "instance": self.instance, "trigger": trigger,
                    "started_at": started, "outcome": result.outcome,
                    "details": Jsonb(result.details)}).fetchone()
                result.run_id = row["id"] if row else None
                if result.outcome == "succeeded":
                    conn.execute(Q["job_record_success"],
                                 {"job": spec.name, "started_at": started})
        except (dbmod.DatabaseUnavailable, psycopg.Error) as exc:
            log.debug("job %s ran but its history was not recorded: %s", spec.name, exc)
        return result

    def _work(self, spec: JobSpec, ctx: JobContext, trigger: Trigger) -> RunResult:
        started = time.monotonic()
        event(log, "job_started", f"job {spec.name} started ({trigger})", job=spec.name,
              trigger=trigger, level=logging.DEBUG if spec.name == "rescan" else logging.INFO)
        try:
            extra = spec.run(ctx)
            if extra:
                ctx.details.update(extra)
            result = RunResult("succeeded", f"{spec.name} succeeded")
        except Cancelled as exc:
            result = RunResult("abandoned", str(exc))
        except (JobFailed, NoSuitableTool) as exc:
            result = RunResult("failed", mask_dsn(str(exc)))
        except (dbmod.DatabaseUnavailable, psycopg.Error, OSError) as exc:
            result = RunResult("failed", mask_dsn(f"{type(exc).__name__}: {exc}".strip()))
        except Exception as exc:  # a bug in a job must not kill the scheduler thread
            log.exception("job %s crashed", spec.name)
            result = RunResult("failed", mask_dsn(f"internal error: {type(exc).__name__}: "
                                                  f"{exc}"))
        ctx.details["seconds"] = round(time.monotonic() - started, 3)
        level = logging.INFO if result.outcome == "succeeded" else logging.ERROR
        if spec.name == "rescan" and result.outcome == "succeeded":
            level = logging.DEBUG
        event(log, f"job_{result.outcome}", f"job {spec.name} {result.outcome}"
              + ("" if result.outcome == "succeeded" else f": {result.message}"),
              level=level, job=spec.name, trigger=trigger, seconds=ctx.details["seconds"])
        return result

    def _acquire(self, conn: psycopg.Connection, name: str, wait: float) -> bool:
        deadline = time.monotonic() + wait
        key = advisory_key(name)
        while True:
            row = conn.execute(Q["job_try_lock"], {"key": key}).fetchone()
            if row and row["locked"]:
                return True
            if time.monotonic() >= deadline or self.cancel.wait(LOCK_POLL_SECONDS):
                return False


# --- the scheduler -------------------------------------------------------------------------------
class JobScheduler:
    """APScheduler's BackgroundScheduler, fed from `jobs:` and the database's memory."""

    def __init__(self, settings: Any, conninfo: str, instance: str, *, tracker: Any = None):
        self.settings = settings
        self.conninfo = conninfo
        self.instance = instance
        self.tracker = tracker
        self.cancel = threading.Event()
        self._sched: Any = None
        self._running: dict[str, JobContext] = {}
        self._lock = threading.Condition()
        self._stop_wakeups = threading.Event()

    def available(self, settings: Any) -> list[str]:
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

    def _add_jobs(self, settings: Any) -> None:
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

    def reschedule(self, new: Any) -> None:
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

    def next_runs(self) -> dict[str, datetime | None]:
        return {job.id: job.next_run_time for job in self._sched.get_jobs() if job.id in JOBS}

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


# --- status --------------------------------------------------------------------------------------
def job_status(conn: psycopg.Connection, settings: Any = None,
               now: datetime | None = None) -> list[dict[str, Any]]:
    """One entry per job for `alfrd status`: last run, its outcome, and the next run computed
    from the configured schedule (what a running daemon with this configuration does)."""
    with conn.cursor(row_factory=dict_row) as cur:
        latest = {r["job"]: r for r in cur.execute(Q["job_latest_runs"]).fetchall()}
        state = {r["job"]: r for r in cur.execute(Q["job_states"]).fetchall()}
    out = []
    for name in [*JOBS, *sorted(set(latest) - set(JOBS))]:
        last = latest.get(name)
        entry: dict[str, Any] = {
            "job": name,
            "last_outcome": last["outcome"] if last else None,
            "last_started": last["started_at"] if last else None,
            "last_finished": last["finished_at"] if last else None,
            "last_instance": last["instance"] if last else None,
            "last_error": (last["details"] or {}).get("error") if last else None,
            "last_success": state[name]["last_success"] if name in state else None,
            "next_run": None,
        }
        if settings is not None and name in JOBS:
            job = settings.jobs.job(name)
            tz = settings.jobs.tz
            current = now or datetime.now(tz)
            entry["enabled"] = job.enabled
            entry["schedule"] = job.schedule.describe()
            if job.enabled:
                entry["next_run"] = next_fire(job.schedule, tz, current)
                ref = state.get(name)
                entry["overdue"] = bool(JOBS[name].catch_up and ref and missed_slot(
                    job.schedule, tz, ref["last_success"] or ref["first_scheduled"], current))
        out.append(entry)
    return out

