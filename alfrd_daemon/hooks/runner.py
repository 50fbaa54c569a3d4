"""HookRunner: the threads of the daemon that run hooks, apart from the ingest workers.

`hooks.workers` threads each claim one run at a time from PostgreSQL and run its command
(hooks/command.py); a LISTEN thread on a connection of its own wakes them when a trigger
enqueues a run, and they also look every POLL_SECONDS (a notification lost while the
connection was down, a retry falling due, a lease running out).

Runs are at-least-once: a run whose daemon was killed mid-run is taken again, at once by the
next daemon on the same host (its process is gone; what is left of the hook is ended first),
else by any runner once its lease (hooks.timeout_seconds plus LEASE_MARGIN_SECONDS) has
passed. A hook's failure is recorded
and never touches the document's status, text or tags.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alfrd_daemon.config.hooks import HooksSettings
from alfrd_daemon.db.listen import Listener
from alfrd_daemon.db.pool import Database, DatabaseUnavailable
from alfrd_daemon.hooks.command import LEASE_VARIABLE, HookResult, hook_environment, run_hook
from alfrd_daemon.hooks.queue import HookQueue, Run
from alfrd_daemon.logs import event
from alfrd_daemon.pgsafe import display_text

log = logging.getLogger("alfrd.hooks")

CHANNEL = "alfrd_hooks"
POLL_SECONDS = 30.0
DB_RETRY_SECONDS = 2.0
LEASE_MARGIN_SECONDS = 30.0  # past the time limit: killing and recording take a moment
RETRY_DELAY_SECONDS = 30.0  # times the attempt: the second try after 30 s, the third 60 s
LISTEN_TIMEOUT = 0.25
LOG_OUTPUT_CHARS = 1000  # of the output tail, in the log line


@dataclass
class HookStats:
    done: int = 0
    failed: int = 0
    released: int = 0
    lost_leases: int = 0


def stored_path(store_root: Path, relative: str | None) -> str:
    """The absolute path of a document's stored file; empty when the row names none or a
    name that could point outside the store."""
    if not relative or relative.startswith("/") or ".." in Path(relative).parts:
        return ""
    return str(store_root / relative)


class HookRunner:
    def __init__(self, settings: HooksSettings, db: Database, *, store_root: Path,
                 store_id: str | None, instance: str, host: str,
                 environ: Callable[[], dict[str, str]] = lambda: dict(os.environ)):
        self.settings = settings
        self.commands = settings.commands()
        self.db = db
        self.store_root = store_root
        self.queue = HookQueue(db, instance=instance, host=host, store_id=store_id,
                               lease_seconds=settings.timeout_seconds + LEASE_MARGIN_SECONDS)
        self.environ = environ
        self.stats = HookStats()
        self.busy: dict[str, float] = {}  # "<hook> <document id>" → when it started
        self.declared = False
        self._stop = threading.Event()
        self._listener = Listener(db, CHANNEL, self._stop, self.wake, log, timeout=LISTEN_TIMEOUT,
                                  retry_seconds=DB_RETRY_SECONDS)
        self._cond = threading.Condition()
        self._generation = 0
        self._threads: list[threading.Thread] = []

    # --- start and stop ------------------------------------------------------------------------
    def start(self) -> None:
        """Declare this host's hooks (also when it has none: that stops their enqueueing),
        then, if there are hooks, start the runners."""
        self._declare()
        if not self.commands:
            return
        for i in range(self.settings.workers):
            self._spawn(self._work_loop, f"alfrd-hook-{i}")
        self._spawn(self._listener.run, "alfrd-hook-listen")

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop claiming; a hook still running is killed and its run put back (it runs again
        at the next start). True when every thread ended within `timeout`."""
        self._stop.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    def alive(self) -> bool:
        return all(t.is_alive() for t in self._threads)

    @property
    def listening(self) -> bool:
        return self._listener.listening

    def wake(self) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def _declare(self) -> None:
        if self.declared:
            return
        try:
            skipped = self.queue.declare(self.commands)
            released = self.queue.release_dead() if self.commands else 0
        except DatabaseUnavailable as exc:
            log.warning("hooks: could not record this host's hooks yet: %s", exc)
            return
        self.declared = True
        if skipped:
            log.info("hooks: %d queued runs skipped: no host has their hook any more", skipped)
        if released:
            log.info("hooks: %d runs of a daemon that died on this host taken again", released)

    # --- the runners ---------------------------------------------------------------------------
    def _work_loop(self) -> None:
        hooks = sorted(self.commands)
        while not self._stop.is_set():
            with self._cond:
                seen = self._generation
            pause = POLL_SECONDS
            try:
                self._declare()
                run = self.queue.claim(hooks)
                if run is not None:
                    self._process(run)
                    continue
            except DatabaseUnavailable as exc:
                log.debug("hook runner: database unavailable: %s", exc)
                pause = DB_RETRY_SECONDS
            except Exception:  # a bug must not end the runner: log it and look again later
                log.exception("hook runner error")
                pause = DB_RETRY_SECONDS
            with self._cond:
                if self._generation == seen and not self._stop.is_set():
                    self._cond.wait(pause)

    def _process(self, run: Run) -> None:
        doc = run.document
        name = display_text(doc.get("original_name") or "")
        if doc.get("deleted_at") is not None:
            self._finish(run, "skipped", HookResult(None, "the document is in the trash", "",
                                                    0.0), name)
            return
        env = hook_environment(self.environ(), run.hook, doc,
                               stored_path(self.store_root, doc.get("stored_path")))
        env[LEASE_VARIABLE] = run.owner
        key = f"{run.hook} {run.document_id}"
        self.busy[key] = time.monotonic()
        event(log, "hook_started", f"{run.hook} hook started for {name}",
              level=logging.DEBUG, document_id=run.document_id, hook=run.hook,
              attempt=run.attempts)
        try:
            result = run_hook(self.commands[run.hook], env, self.settings.timeout_seconds,
                              self._stop)
        finally:
            self.busy.pop(key, None)
        if self._stop.is_set() and not result.ok:
            # Cut short by our own stop: not the hook's failure. It runs again.
            with contextlib.suppress(DatabaseUnavailable):
                if self.queue.release(run):
                    self.stats.released += 1
            log.info("%s hook for %s interrupted by the stop; it runs again at the next "
                     "start", run.hook, name)
            return
        if result.ok:
            self._finish(run, "done", result, name)
        elif run.attempts <= self.settings.retries:
            self._finish(run, "queued", result, name,
                         delay=RETRY_DELAY_SECONDS * run.attempts)
        else:
            self._finish(run, "failed", result, name)

    def _finish(self, run: Run, state: str, result: HookResult, name: str, *,
                delay: float = 0.0) -> None:
        give_up = time.monotonic() + LEASE_MARGIN_SECONDS
        while True:
            try:
                recorded = self.queue.finish(run, state=state, exit_code=result.exit_code,
                                             error=result.error, output=result.output,
                                             delay_seconds=delay)
                break
            except DatabaseUnavailable as exc:
                if time.monotonic() > give_up or self._stop.is_set():
                    log.warning("%s hook for %s: outcome not recorded, the database did not "
                                "answer (%s); it runs again", run.hook, name, exc)
                    return
                self._stop.wait(DB_RETRY_SECONDS)
        if not recorded:
            self.stats.lost_leases += 1
            log.warning("%s hook for %s: outcome dropped, the run was taken over or queued "
                        "again meanwhile", run.hook, name)
            return
        fields: dict[str, Any] = {"document_id": run.document_id, "hook": run.hook,
                                  "exit_code": result.exit_code,
                                  "seconds": round(result.seconds, 3),
                                  "output": result.output[-LOG_OUTPUT_CHARS:]}
        if state == "done":
            self.stats.done += 1
            event(log, "hook_done", f"{run.hook} hook done for {name}", **fields)
        elif state == "skipped":
            event(log, "hook_skipped", f"{run.hook} hook skipped for {name}: {result.error}",
                  **fields)
        else:
            self.stats.failed += state == "failed"
            again = f"; tried again in {delay:g} s" if state == "queued" else ""
            event(log, "hook_failed", f"{run.hook} hook failed for {name}: {result.error}"
                  f"{again}", level=logging.WARNING, error=result.error, **fields)

    # --- state ---------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """What the heartbeat records for `alfrd status`."""
        s = self.stats
        return {"hooks": sorted(self.commands), "workers": self.settings.workers,
                "busy": len(self.busy), "listening": self.listening, "done": s.done,
                "failed": s.failed, "released": s.released}
