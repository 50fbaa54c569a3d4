"""What a running job gets: its settings, dedicated connections, child processes it may stop,
progress reporting, and the details that end up in its job_runs row.

Connections and children are registered so a shutdown can abandon a run promptly: the query
is cancelled on the server and the child (pg_dump, pg_restore) terminated, instead of the
process hanging at exit on a job thread.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, TYPE_CHECKING, Any

import psycopg
from psycopg.rows import DictRow, dict_row

from alfrd_daemon.config.settings import Settings
from alfrd_daemon.db.pool import connect
from alfrd_daemon.logs import mask_dsn

if TYPE_CHECKING:
    from alfrd_daemon.ingest.tracker import Tracker

log = logging.getLogger("alfrd.jobs")

Reporter = Callable[[str, "int | None", "int | None"], None]
_STDERR_TAIL = 2000


class JobFailed(Exception):
    """The job could not do its work; the message says why and what to do, for job_runs."""


class Cancelled(Exception):
    """The daemon is stopping and the run was abandoned."""


@dataclass
class ToolResult:
    returncode: int
    stderr: str
    seconds: float


@dataclass
class JobContext:
    name: str
    settings: Settings
    conninfo: str
    instance: str
    connect_timeout: float = 10.0
    tracker: Tracker | None = None  # the daemon's, for jobs that act on its inbox
    reporter: Reporter | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    details: dict[str, Any] = field(default_factory=dict)
    _connections: set[psycopg.Connection[DictRow]] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    # --- progress and cancellation -------------------------------------------------------------
    def progress(self, stage: str, done: int | None = None, total: int | None = None) -> None:
        if self.reporter is not None:
            self.reporter(stage, done, total)

    def check(self) -> None:
        if self.cancel.is_set():
            raise Cancelled(f"{self.name} abandoned: the daemon is stopping")

    def abort(self) -> None:
        """Called from another thread: stop what the run is waiting on."""
        self.cancel.set()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(Exception):
                conn.cancel_safe(timeout=5)

    # --- resources -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def connection(self, conninfo: str | None = None, *,
                   autocommit: bool = False) -> Iterator[psycopg.Connection[DictRow]]:
        """A dedicated connection (never the pool: long statements and session state), whose
        rows are dicts."""
        self.check()
        conn = connect(self.conninfo if conninfo is None else conninfo,
                       connect_timeout=self.connect_timeout, autocommit=autocommit,
                       row_factory=dict_row)
        with self._lock:
            self._connections.add(conn)
        try:
            with conn:
                yield conn
        except psycopg.errors.QueryCanceled as exc:
            if self.cancel.is_set():
                raise Cancelled(f"{self.name} abandoned: the daemon is stopping") from exc
            raise
        finally:
            with self._lock:
                self._connections.discard(conn)

    def run_tool(self, args: Sequence[str], *, env: dict[str, str], timeout: float,
                 stdout: IO[bytes] | int | None = subprocess.DEVNULL) -> ToolResult:
        """Run a PostgreSQL client program; stops it on cancel or timeout."""
        self.check()
        started = time.monotonic()
        proc = subprocess.Popen(list(args), stdin=subprocess.DEVNULL, stdout=stdout,
                                stderr=subprocess.PIPE, env=env)
        chunks: list[bytes] = []
        while True:
            try:
                _, err = proc.communicate(timeout=0.5)
                chunks.append(err or b"")
                break
            except subprocess.TimeoutExpired:
                if self.cancel.is_set() or time.monotonic() - started > timeout:
                    _stop(proc)
                    if self.cancel.is_set():
                        raise Cancelled(
                            f"{self.name} abandoned: the daemon is stopping") from None
                    raise JobFailed(f"{_tool_name(args)} took longer than {timeout:g} s and "
                                    "was stopped") from None
        stderr = mask_dsn(b"".join(chunks).decode("utf-8", "replace"))[-_STDERR_TAIL:]
        return ToolResult(proc.returncode, stderr.strip(), time.monotonic() - started)


def _tool_name(args: Sequence[str]) -> str:
    return str(args[0]).rsplit("/", 1)[-1]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
