"""`alfrd worker`: only the OCR stage, for a host that adds OCR capacity to a daemon elsewhere.

It reads the same configuration as the daemon: the database, and the store (paths.store)
that holds the files, which must be the daemon's store, shared (NFS, a cluster file system).
It watches no inbox and runs no jobs. Like the daemon it sends READY=1 once it is taking
work, WATCHDOG=1 while its workers live, STOPPING=1 on SIGTERM, and records a heartbeat that
`alfrd status` shows.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time

from psycopg.types.json import Jsonb

from alfrd_daemon.config.parse import ConfigError, check_paths
from alfrd_daemon.config.settings import Settings
from alfrd_daemon.db import pool as dbmod
from alfrd_daemon.db.queries import QUERIES
from alfrd_daemon.db.target import DatabaseTarget, stop_embedded_if_unused
from alfrd_daemon.ingest.store import Store
from alfrd_daemon.logs import event, mask_dsn
from alfrd_daemon.ocr.service import OcrService
from alfrd_daemon.sdnotify import Notifier
from alfrd_daemon.service.daemon import instance_host, new_instance_id
from alfrd_daemon.service.rules_check import check_rules
from alfrd_daemon.service.startup import (
    StartupError,
    database_target,
    open_database,
    open_store,
    opening,
)

log = logging.getLogger("alfrd.worker")

HEARTBEAT_SECONDS = 5.0
STOP_SECONDS = 15.0  # releasing the documents being read, then closing


class OcrWorker:
    def __init__(self, settings: Settings, *, notifier: Notifier | None = None):
        self.settings = settings
        self.notifier = notifier or Notifier.from_env(transport="fallback")
        self.instance = new_instance_id()
        self.stop_event = threading.Event()
        self.target: DatabaseTarget | None = None
        self.db: dbmod.Database | None = None
        self.service: OcrService | None = None

    def start(self) -> None:
        s = self.settings
        try:
            check_rules(s)  # it runs them after OCR
        except ConfigError as exc:
            raise StartupError(str(exc)) from exc
        problems = [p for p in check_paths(s) if "inbox" not in p]  # no inbox here
        if problems:
            raise StartupError("; ".join(problems))
        target = self.target = database_target(s)
        db = self.db = dbmod.Database(
            target.conninfo, min_size=1, max_size=max(2, s.database.pool_max),
            connect_timeout=s.database.connect_timeout,
            reconnect_timeout=s.database.reconnect_timeout, name="alfrd-worker")
        open_database(db, s.database.startup_timeout)
        store = Store(s.store_path, fsync=s.store.fsync, instance=self.instance)
        with opening("store", s.store_path):
            open_store(store, db)
        self.service = OcrService(s, db, store_root=s.store_path, store_id=store.id,
                                  worker=self.instance)
        self.service.start()
        event(log, "started", f"OCR worker on {s.store_path}; database "
              f"{mask_dsn(target.conninfo) or 'from PG* environment'}",
              instance=self.instance, workers=self.service.size)

    def run(self) -> int:
        def stop(signum: int, _frame: object) -> None:
            self.stop_event.set()
            signal.signal(signum, signal.SIG_DFL)  # a second signal: really gone

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # no reload: settings change on restart
        try:
            self.start()
        except (StartupError, OSError) as exc:
            log.error("cannot start: %s", exc)
            self.notifier.status(f"cannot start: {exc}")
            self._close()
            return 1
        beat = threading.Thread(target=self._heartbeat_loop, name="alfrd-worker-heartbeat",
                                daemon=True)
        beat.start()
        self.notifier.ready(self.status_line())
        code = 0
        try:
            while not self.stop_event.wait(1.0):
                self.notifier.status(self.status_line())
                service = self.service
                if service is not None and service.alive():
                    self.notifier.watchdog()
                else:
                    log.error("an OCR worker thread ended; exiting so the service manager "
                              "restarts us")
                    code = 1
                    break
        finally:
            self.notifier.stopping(self.status_line())
            if self.service is not None:
                self.service.stop(timeout=STOP_SECONDS)
            self._record_stop()
            self._close()
            event(log, "stopped", "OCR worker stopped")
        return code

    def status_line(self) -> str:
        if self.service is None:
            return "starting"
        st = self.service.state()
        head = "OCR ok" if st["available"] else f"OCR UNAVAILABLE: {st['unavailable']}"
        return (f"{head}; documents {st['documents']}, pages {st['pages']}, busy "
                f"{st['busy']}/{st['workers']}, failed {st['failed_documents']}")[:400]

    def state(self) -> dict[str, object]:
        return {"role": "ocr-worker", "health": "ok",
                "ocr": self.service.state() if self.service is not None else None}

    def _heartbeat_loop(self) -> None:
        while not self.stop_event.is_set():
            self._heartbeat()
            self.stop_event.wait(HEARTBEAT_SECONDS)

    def _heartbeat(self) -> None:
        if self.db is None:
            return
        with contextlib.suppress(dbmod.DatabaseUnavailable), self.db.transaction(
                timeout=2) as cur:
            cur.execute(QUERIES["upsert_instance"], {
                "instance": self.instance, "hostname": instance_host(), "pid": os.getpid(),
                "state": Jsonb(self.state())})

    def _record_stop(self) -> None:
        if self.db is None:
            return
        db, state = self.db, Jsonb(self.state())

        def write() -> None:
            with contextlib.suppress(dbmod.DatabaseUnavailable), db.transaction(
                    timeout=2) as cur:
                cur.execute(QUERIES["stop_instance"],
                            {"instance": self.instance, "state": state})

        worker = threading.Thread(target=write, daemon=True)
        worker.start()
        worker.join(3)

    def _close(self) -> None:
        if self.service is not None:
            self.service.stop(timeout=1)
        if self.db is not None:
            self.db.close(timeout=3)
        if self.target is not None:
            deadline = time.monotonic() + 30
            with contextlib.suppress(Exception):
                stop_embedded_if_unused(self.target, timeout=max(1.0, deadline -
                                                                 time.monotonic()))
