"""A LISTENing loop on a connection of its own, for the stages that take work from a queue
table (OCR, hooks): every notification wakes the stage's workers, and so does every reconnect,
since notifications sent while the connection was down are lost. The workers also poll, so a
listener that is down only makes them slower to notice, never stops them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg
from psycopg import sql

from alfrd_daemon.db.pool import Database, DatabaseUnavailable, connect


class Listener:
    """`run()` LISTENs on `channel` until `stop` is set, calling `wake()` for every
    notification and after every (re)connect. `listening` says whether it is connected now.
    A stop is noticed within `timeout` seconds; after an outage it tries again every
    `retry_seconds`."""

    def __init__(self, db: Database, channel: str, stop: threading.Event,
                 wake: Callable[[], None], log: logging.Logger, *, timeout: float = 1.0,
                 retry_seconds: float = 2.0) -> None:
        self.db = db
        self.channel = channel
        self.stop = stop
        self.wake = wake
        self.log = log
        self.timeout = timeout
        self.retry_seconds = retry_seconds
        self.listening = False

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                with connect(self.db.conninfo, autocommit=True,
                             connect_timeout=self.db.connect_timeout) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                    self.listening = True
                    self.wake()
                    while not self.stop.is_set():
                        for _note in conn.notifies(timeout=self.timeout, stop_after=64):
                            self.wake()
            except (DatabaseUnavailable, psycopg.Error) as exc:
                self.log.debug("listener on %s: %s", self.channel, exc)
            except Exception:  # a bug must not end the listener: the poll covers meanwhile
                self.log.exception("listener on %s failed", self.channel)
            finally:
                self.listening = False
            self.stop.wait(self.retry_seconds)
