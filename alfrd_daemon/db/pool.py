"""PostgreSQL connections: the shared pool every worker uses, and single connections outside it.

psycopg errors become our own exceptions at this boundary, so callers can tell "the database is
away, try this file again later" (DatabaseUnavailable) from "this statement is wrong" (the
original psycopg error, which is a bug or bad data).

psycopg-pool behaviour this module relies on or works around (measured with psycopg-pool
3.3.3; the dependency bounds follow it):
- a lost connection is retried with a delay that doubles without a cap, so after a long outage
  the pool may sleep long after the server is back: `Database.healthy` connects on its own and,
  if the server answers, swaps in a fresh pool (`renew`); `wait_until_accepting` makes its own
  short, regular attempts at start-up for the same reason;
- `reconnect_failed` is called when a connection could not be re-established within
  `reconnect_timeout`; the pool keeps going, so the callback only logs;
- `max_waiting=0` and `check=ConnectionPool.check_connection` (checked on every checkout);
- a worker still waiting on a closed pool gets PoolClosed, which we treat as transient.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any, overload

import psycopg
import psycopg_pool
from psycopg.rows import DictRow, Row, RowFactory, TupleRow, dict_row

from alfrd_daemon.logs import mask_dsn

log = logging.getLogger("alfrd.db")

APPLICATION_NAME = "alfrd-daemon"


class DatabaseUnavailable(Exception):
    """The server cannot be reached or is shutting down: retry later, never fail the file."""


TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
    psycopg_pool.TooManyRequests,
    psycopg_pool.PoolClosed,
)
_UNREACHABLE: tuple[type[Exception], ...] = (DatabaseUnavailable, *TRANSIENT_ERRORS)


def connection_kwargs(connect_timeout: float) -> dict[str, Any]:
    """Keepalives notice a peer that vanished without closing (a host reboot, a cut cable)."""
    return {
        "connect_timeout": max(1, int(connect_timeout)),
        "application_name": APPLICATION_NAME,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }


@overload
def connect(conninfo: str, *, connect_timeout: float = ...,
            autocommit: bool = ...) -> psycopg.Connection[TupleRow]: ...
@overload
def connect(conninfo: str, *, connect_timeout: float = ..., autocommit: bool = ...,
            row_factory: RowFactory[Row]) -> psycopg.Connection[Row]: ...
def connect(conninfo: str, *, connect_timeout: float = 10.0, autocommit: bool = False,
            row_factory: RowFactory[Any] | None = None) -> psycopg.Connection[Any]:
    """A single connection outside the pool (CLI, advisory-lock holders)."""
    try:
        if row_factory is None:
            return psycopg.connect(conninfo, autocommit=autocommit,
                                   **connection_kwargs(connect_timeout))
        return psycopg.connect(conninfo, autocommit=autocommit, row_factory=row_factory,
                               **connection_kwargs(connect_timeout))
    except psycopg.OperationalError as exc:
        raise DatabaseUnavailable(f"cannot connect to {mask_dsn(conninfo)}: {exc}") from exc


def connection_problem(exc: BaseException) -> str:
    """The line of a libpq connection error that says why: the server's FATAL message with its
    DETAIL ("the database system is starting up"), else the first line ("... failed:
    Connection refused")."""
    text = str(exc).removeprefix("connection failed: ").strip()
    if "FATAL:" in text:
        message, _, detail = text.rsplit("FATAL:", 1)[1].partition("DETAIL:")
        message, detail = message.strip(), " ".join(detail.split())
        return f"{message} ({detail})" if detail else message
    return text.splitlines()[0] if text else type(exc).__name__


def wait_until_accepting(conninfo: str, *, timeout: float, connect_timeout: float = 10.0,
                         interval: float = 0.25) -> None:
    """Return once the server takes a connection; raise DatabaseUnavailable after `timeout`.

    A server that was just started, is in crash recovery or is a standby not yet consistent
    refuses connections for a while ("the database system is starting up"); so does one
    whose socket is not there yet. A restart in that window must wait, not exit. Our own
    short, regular attempts rather than the pool's: its retry delay doubles, so it could
    connect many seconds after the server is up."""
    deadline = time.monotonic() + timeout
    said = ""
    while True:
        left = deadline - time.monotonic()
        try:
            with connect(conninfo, connect_timeout=max(1.0, min(connect_timeout, left))):
                pass
        except DatabaseUnavailable as exc:
            reason = connection_problem(exc.__cause__ or exc)
        else:
            if said:
                log.info("PostgreSQL at %s accepts connections now", mask_dsn(conninfo))
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise DatabaseUnavailable(
                f"PostgreSQL at {mask_dsn(conninfo)} did not accept connections within "
                f"{timeout:.0f} s: {reason}")
        if reason != said:
            log.warning("waiting up to %.0f s for PostgreSQL at %s to accept connections: %s",
                        left, mask_dsn(conninfo), reason)
            said = reason
        time.sleep(min(interval, left))


class Database:
    """One bounded, health-checked, self-reconnecting pool shared by every worker.

    Settings follow what recovered from a 20 s outage in measurements with psycopg-pool 3.3.3:
    max_waiting=0, a long reconnect_timeout with a logging callback, check on checkout, and a
    periodic pool.check() from the daemon's main loop.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 2,
        max_size: int = 8,
        connect_timeout: float = 10.0,
        reconnect_timeout: float = 600.0,
        name: str = "alfrd",
    ):
        self.conninfo = conninfo
        self.connect_timeout = connect_timeout
        self._min_size = min_size
        self._max_size = max_size
        self._reconnect_timeout = reconnect_timeout
        self._name = name
        self.pool = self._new_pool()

    def _new_pool(self) -> psycopg_pool.ConnectionPool[psycopg.Connection[TupleRow]]:
        return psycopg_pool.ConnectionPool(
            self.conninfo, open=False, min_size=self._min_size, max_size=self._max_size,
            kwargs=connection_kwargs(self.connect_timeout),
            check=psycopg_pool.ConnectionPool.check_connection, max_waiting=0,
            timeout=self.connect_timeout, reconnect_timeout=self._reconnect_timeout,
            reconnect_failed=self._reconnect_failed, name=self._name)

    def _reconnect_failed(self, pool: psycopg_pool.ConnectionPool[Any]) -> None:
        log.error("database reconnection gave up after the reconnect timeout; retrying")

    def open(self, timeout: float = 30.0) -> None:
        """Wait (up to `timeout` in all) for the server to accept connections, then fill the
        pool."""
        deadline = time.monotonic() + timeout
        wait_until_accepting(self.conninfo, timeout=timeout, connect_timeout=self.connect_timeout)
        try:
            self.pool.open(wait=True, timeout=max(1.0, deadline - time.monotonic()))
        except psycopg_pool.PoolTimeout as exc:
            self.pool.close()
            raise DatabaseUnavailable(
                f"no connection to {mask_dsn(self.conninfo)} within {timeout:g} s"
            ) from exc

    def close(self, timeout: float = 5.0) -> None:
        self.pool.close(timeout=timeout)

    def check(self) -> None:
        """Drops dead idle connections so the pool refills with live ones."""
        with contextlib.suppress(Exception):
            self.pool.check()

    @contextlib.contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection[TupleRow]]:
        try:
            with self.pool.connection(timeout=timeout) as conn:
                yield conn
        except TRANSIENT_ERRORS as exc:
            raise DatabaseUnavailable(str(exc) or type(exc).__name__) from exc

    @contextlib.contextmanager
    def transaction(self, timeout: float | None = None) -> Iterator[psycopg.Cursor[DictRow]]:
        with self.connection(timeout) as conn, conn.transaction(), conn.cursor(
            row_factory=dict_row
        ) as cur:
            yield cur

    def healthy(self) -> bool:
        try:
            with self.connection(timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except DatabaseUnavailable:
            pass
        # psycopg_pool retries a lost connection with a doubling delay and no cap: after a
        # 30 s outage its next attempt may be 30 s away. If the server answers a connection
        # of our own, the server is back and only the pool is asleep: give it a fresh one.
        try:
            with connect(self.conninfo, connect_timeout=min(self.connect_timeout, 5)) as conn:
                conn.execute("SELECT 1")
        except _UNREACHABLE:
            return False
        self.renew()
        try:
            with self.connection(timeout=max(2.0, self.connect_timeout)) as conn:
                conn.execute("SELECT 1")
            return True
        except DatabaseUnavailable:
            return False

    def renew(self) -> None:
        """Swap in a new pool; the old one is closed in the background (a worker still
        waiting on it gets PoolClosed, which is transient: its file is retried)."""
        fresh = self._new_pool()
        fresh.open(wait=False)
        old, self.pool = self.pool, fresh
        log.info("database reachable again: replaced the connection pool")
        threading.Thread(target=lambda: old.close(timeout=5), name="alfrd-pool-close",
                         daemon=True).start()
