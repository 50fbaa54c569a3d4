"""The other ingest processes of one daemon (workers.processes > 1).

One Python process ingests at most about one core's worth of files: its threads take turns
at the interpreter lock. With `workers.processes: N` the daemon the service manager started
(the primary) starts N-1 more `alfrd run --partition K/N` processes on the same settings. Each
is a daemon of its own as far as the inbox, the store and the database are concerned (its own
claim directory and instance row, the coordination several daemons on one inbox already use);
it only takes the files of its partition, and leaves the scheduled jobs, OCR, hooks, metrics
and the service manager's protocol to the primary.

The primary restarts a sibling that exits while the daemon runs (with a backoff), forwards
SIGHUP to them and stops them with itself. A sibling asks the kernel for a signal when the
primary dies (PR_SET_PDEATHSIG) and then drains and stops, so none outlives it, even after a
SIGKILL of the primary.
"""

from __future__ import annotations

import ctypes
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from alfrd_daemon.db import pool as dbmod
from alfrd_daemon.db.queries import QUERIES
from alfrd_daemon.ingest.partition import Partition
from alfrd_daemon.logs import event

log = logging.getLogger("alfrd.siblings")

_PR_SET_PDEATHSIG = 1
RESTART_INITIAL_SECONDS = 1.0
RESTART_MAX_SECONDS = 60.0
# A sibling that ran this long before exiting starts again without waiting.
STABLE_SECONDS = 60.0
# Variables of the service manager's protocol: only the primary speaks it.
_MANAGER_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
                "LISTEN_FDNAMES")


# What the kernel sends a sibling when the primary dies. Not SIGTERM: it comes once for each
# of the dying primary's threads the sibling is passed on to (seen: twice), and a second
# SIGTERM means "now" to a daemon; this one only ever asks for a drain.
PARENT_DIED = signal.SIGUSR2


def die_with_parent(parent_pid: int) -> bool:
    """Have the kernel send us PARENT_DIED when our parent exits; False if it already has (we
    were adopted by init before the request took effect)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, PARENT_DIED, 0, 0, 0)
    return os.getppid() == parent_pid


@dataclass
class _Sibling:
    partition: Partition
    token: str = ""  # the last part of its instance id (host-pid-token), new at each start
    instance: str = ""
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    backoff: float = RESTART_INITIAL_SECONDS
    start_at: float = 0.0  # monotonic time of the next start, while it is not running


@dataclass
class SiblingProcesses:
    """Partitions 1..count-1 of an inbox whose partition 0 is this process."""

    count: int
    config_path: str | None
    database_url: str | None  # the primary's conninfo: siblings never start a server
    instance_of: Callable[[int, str], str]  # (pid, token) → the instance id it will use
    log_level: str | None = None
    siblings: list[_Sibling] = field(default_factory=list)

    def start(self) -> None:
        now = time.monotonic()
        self.siblings = [_Sibling(Partition(k, self.count)) for k in range(1, self.count)]
        for sib in self.siblings:
            self._spawn(sib, now)

    def _command(self, sib: _Sibling) -> list[str]:
        cmd = [sys.executable, "-m", "alfrd_daemon", "run", "--partition", str(sib.partition),
               "--parent-pid", str(os.getpid()), "--instance-token", sib.token]
        if self.config_path is not None:
            cmd += ["--config", self.config_path]
        if self.log_level is not None:
            cmd += ["--log-level", self.log_level]
        return cmd

    def _spawn(self, sib: _Sibling, now: float) -> None:
        env = {k: v for k, v in os.environ.items() if k not in _MANAGER_ENV}
        if self.database_url:
            env["ALFRD_DATABASE_URL"] = self.database_url
        sib.token = secrets.token_hex(3)
        try:
            sib.proc = subprocess.Popen(self._command(sib), env=env,
                                        stdin=subprocess.DEVNULL, close_fds=True)
        except OSError as exc:
            sib.proc = None
            sib.start_at = now + sib.backoff
            event(log, "sibling_start_failed", f"cannot start ingest process "
                  f"{sib.partition}: {exc}; trying again in {sib.backoff:g} s",
                  level=logging.ERROR, partition=str(sib.partition), reason=str(exc))
            sib.backoff = min(RESTART_MAX_SECONDS, sib.backoff * 2)
            return
        sib.started = now
        sib.instance = self.instance_of(sib.proc.pid, sib.token)
        log.info("ingest process %s started (pid %d)", sib.partition, sib.proc.pid)

    def check(self) -> None:
        """Restart siblings that exited (called from the primary's main loop)."""
        now = time.monotonic()
        for sib in self.siblings:
            if sib.proc is not None:
                code = sib.proc.poll()
                if code is None:
                    continue
                if now - sib.started >= STABLE_SECONDS:
                    sib.backoff = RESTART_INITIAL_SECONDS
                sib.start_at = now + sib.backoff
                event(log, "sibling_exited", f"ingest process {sib.partition} (pid "
                      f"{sib.proc.pid}) exited with {_describe(code)}; starting it again in "
                      f"{sib.backoff:g} s (its claimed files are adopted then)",
                      level=logging.ERROR, partition=str(sib.partition), pid=sib.proc.pid,
                      exit_code=code)
                sib.backoff = min(RESTART_MAX_SECONDS, sib.backoff * 2)
                sib.proc = None
            if now >= sib.start_at:
                self._spawn(sib, now)

    def wait_started(self, db: dbmod.Database, timeout: float) -> list[Partition]:
        """Wait until every sibling has written its instance row (it does so once it watches
        the inbox), or has exited; returns the partitions still not up after `timeout`."""
        deadline = time.monotonic() + timeout
        waiting = [s for s in self.siblings if s.proc is not None]
        while waiting:
            try:
                with db.connection(timeout=2) as conn:
                    up = {r[0] for r in conn.execute(QUERIES["instances_present"], {
                        "instances": [s.instance for s in waiting]})}
            except dbmod.DatabaseUnavailable:
                up = set()
            waiting = [s for s in waiting if s.instance not in up
                       and s.proc is not None and s.proc.poll() is None]
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        return [s.partition for s in waiting]

    def running(self) -> int:
        return sum(1 for s in self.siblings if s.proc is not None and s.proc.poll() is None)

    def signal_all(self, signum: int) -> None:
        for sib in self.siblings:
            if sib.proc is not None and sib.proc.poll() is None:
                sib.proc.send_signal(signum)

    def stop(self, timeout: float) -> bool:
        """Wait until `timeout` for the siblings told to stop (signal_all(SIGTERM): each drains
        as the primary does; a second SIGTERM would end it at once) and SIGKILL any still
        running then. True if all stopped by themselves."""
        deadline = time.monotonic() + timeout
        clean = True
        for sib in self.siblings:
            if sib.proc is None:
                continue
            try:
                sib.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                clean = False
                sib.proc.kill()
                sib.proc.wait()
        self.siblings = []
        return clean


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"status {code}"
