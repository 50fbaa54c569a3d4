"""Test helpers: run the real daemon as a subprocess and wait for what it should do.

The benchmarks (benchmarks/harness.py) run the daemon through the same DaemonProcess and
NotifyListener, so the suite exercises the harness the figures are measured with."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg.rows import dict_row

REPO = Path(__file__).resolve().parent.parent


def write_config(tmp: Path, db_url: str | None, **overrides: Any) -> Path:
    """A config for one test: inbox, state under tmp; fast settle times."""
    cfg: dict[str, Any] = {
        "state_dir": str(tmp / "var"),
        "inbox": {"path": str(tmp / "inbox")},
        "watch": {"settle_seconds": 0.5, "quiet_seconds": 0.05, "rescan_interval": 30},
        "database": {"url": db_url, "pool_min": 1, "pool_max": 4},
        "workers": {"count": 2, "retry_initial": 0.2, "retry_max": 2, "drain_timeout": 20},
        "logging": {"level": "DEBUG"},
        # Tests that expect images to stay pending rely on it; OCR tests turn it on.
        "ocr": {"enabled": False},
    }
    for section, values in overrides.items():
        if isinstance(values, dict):
            cfg.setdefault(section, {}).update(values)
        else:
            cfg[section] = values
    (tmp / "inbox").mkdir(parents=True, exist_ok=True)
    path = tmp / "alfrd.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def alfrd_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "ALFRD_CONFIG",
                        "ALFRD_DATABASE_URL", "JOURNAL_STREAM")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def run_cli(config: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "alfrd_daemon", *args, "--config", str(config)],
        capture_output=True, text=True, timeout=timeout, env=alfrd_env(env), cwd=REPO)
    if check and result.returncode != 0:
        raise AssertionError(f"alfrd {' '.join(args)} exited {result.returncode}:\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


class DaemonProcess:
    """`alfrd run` in a subprocess; always stopped (and killed if need be) by the test."""

    def __init__(self, config: Path, log_path: Path, env: dict[str, str] | None = None):
        self.config = config
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DaemonProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alfrd_daemon", "run", "--config", str(self.config)],
            stdout=self._log, stderr=subprocess.STDOUT, env=alfrd_env(self.env), cwd=REPO,
            stdin=subprocess.DEVNULL)
        return self

    def wait_started(self, timeout: float = 60) -> DaemonProcess:
        wait_for(lambda: "event=started" in self.log() or "watching " in self.log(),
                 timeout, f"daemon start; log:\n{self.log()[-3000:]}",
                 alive=self.assert_alive)
        return self

    def assert_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log()[-4000:]}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def memory_kb(self) -> dict[str, int]:
        """VmHWM (peak) and VmRSS of the daemon process itself (not its children), in kB."""
        assert self.proc is not None
        out: dict[str, int] = {}
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = int(value.split()[0])
        return out

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                raise AssertionError(f"daemon ignored SIGTERM:\n{self.log()[-3000:]}") from None
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()

    def __enter__(self) -> DaemonProcess:
        return self.start().wait_started()

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.stop()
            except AssertionError:
                if exc[0] is None:
                    raise


class NotifyListener:
    """Binds the socket systemd would bind (pass `env()` to the daemon) and keeps every
    datagram with its arrival time on the monotonic clock."""

    def __init__(self, path: Path):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, dict[str, str]]] = []

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {"NOTIFY_SOCKET": str(self.path), **(extra or {})}

    def pump(self) -> None:
        while True:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            self.messages.append((time.monotonic(), fields))

    def wait(self, cond: Callable[[dict[str, str]], bool], timeout: float, what: str,
             since: int = 0, alive: Callable[[], None] | None = None
             ) -> tuple[int, dict[str, str]]:
        """The first message from index `since` on that satisfies `cond`, and its index."""
        deadline = time.monotonic() + timeout
        while True:
            for i in range(since, len(self.messages)):
                if cond(self.messages[i][1]):
                    return i, self.messages[i][1]
            if alive is not None:
                alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout} s; got "
                                     f"{[m for _, m in self.messages[since:]][-10:]}")
            self.pump()

    def listen_for(self, seconds: float) -> None:
        """Receive continuously, so arrival times are the real ones."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.pump()

    def watchdog_times(self, since: int = 0) -> list[float]:
        return [t for t, m in self.messages[since:] if m.get("WATCHDOG") == "1"]

    def close(self) -> None:
        self.sock.close()


def wait_for(cond: Callable[[], Any], timeout: float, what: str,
             alive: Callable[[], None] | None = None, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def query(db_url: str, sql: str, params: Any = None) -> list[dict[str, Any]]:
    with psycopg.connect(db_url, row_factory=dict_row) as conn:
        return conn.execute(sql, params).fetchall()


def inbox_files(inbox: Path) -> list[str]:
    """Files still in the inbox (not counting our claim area)."""
    found = []
    for dirpath, dirs, files in os.walk(inbox):
        dirs[:] = [d for d in dirs if d != ".alfrd"]
        found += [os.path.relpath(os.path.join(dirpath, f), inbox) for f in files]
    return sorted(found)


def claimed_files(inbox: Path) -> list[str]:
    root = inbox / ".alfrd" / "claimed"
    found = []
    for dirpath, _dirs, files in os.walk(root):
        found += [os.path.relpath(os.path.join(dirpath, f), root) for f in files
                  if not f.endswith(".lock")]
    return found


def cluster_pids(data_dir: Path) -> list[int]:
    """The postmaster of a cluster and all its children (to freeze or kill it in a test)."""
    pid_file = data_dir / "postmaster.pid"
    try:
        postmaster = int(pid_file.read_text().splitlines()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return []
    pids = [postmaster]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == postmaster:
            pids.append(int(entry.name))
    return pids


def lock_is_held(lock: Path) -> bool:
    """Does some process hold an flock on `lock` (a live daemon's claim area)?"""
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
