"""One run of a job made safe and recorded: the lock, the slot check, the job_runs row, the
work and its outcome; and the jobs' last runs for `alfrd status`.

A database-wide job (backup, restore-test, reindex, prune) runs under a session advisory lock
held on a dedicated connection for the whole run. The pool is no place for it: measured, a
session lock taken on a pooled connection survives the connection's return to the pool. A
dedicated connection's lock is released when its holder dies, even by SIGKILL. With the lock
held, the run checks job_runs for its slot (the fire time it serves, the same on every daemon
because schedules are computed, not counted from start-up), so however many daemons share the
database each scheduled run happens once.

Instance jobs (rescan, retry-failed) act on this daemon's own folders and take no database lock.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import psycopg
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb

from alfrd_daemon.config.schedule import missed_slot, next_fire
from alfrd_daemon.config.settings import Settings
from alfrd_daemon.db import pool as dbmod
from alfrd_daemon.db.locks import advisory_key
from alfrd_daemon.db.pgtools import NoSuitableTool
from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.jobs.context import Cancelled, JobContext, JobFailed, Reporter
from alfrd_daemon.jobs.registry import JOBS, JobSpec
from alfrd_daemon.logs import event, mask_dsn

if TYPE_CHECKING:
    from alfrd_daemon.ingest.tracker import Tracker

Q = load_named_queries("jobs.sql")

log = logging.getLogger("alfrd.jobs")

GROUP_WAIT_SECONDS = 3600.0  # a backup waits this long for a running reindex, and vice versa
LOCK_POLL_SECONDS = 1.0
Trigger = Literal["schedule", "catch-up", "manual", "reload"]


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

    def __init__(self, settings: Settings, conninfo: str, instance: str, *,
                 tracker: Tracker | None = None,
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

    def _history(self) -> psycopg.Connection[DictRow]:
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

    def _acquire(self, conn: psycopg.Connection[DictRow], name: str, wait: float) -> bool:
        deadline = time.monotonic() + wait
        key = advisory_key(name)
        while True:
            row = conn.execute(Q["job_try_lock"], {"key": key}).fetchone()
            if row and row["locked"]:
                return True
            if time.monotonic() >= deadline or self.cancel.wait(LOCK_POLL_SECONDS):
                return False


# --- status --------------------------------------------------------------------------------------
def job_status(conn: psycopg.Connection[Any], settings: Settings | None = None,
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

