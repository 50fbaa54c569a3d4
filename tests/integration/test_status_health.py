"""`alfrd status` as a health check (its exit code: 0 healthy, 1 this host's daemon missing or
unhealthy, 2 no database) and `alfrd status --watch` on a real terminal (a pty)."""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.helpers import REPO, DaemonProcess, alfrd_env, run_cli, wait_for, write_config

CLEAR = "\x1b[H\x1b[2J"


def status(config: Path) -> tuple[int, dict[str, object]]:
    out = run_cli(config, "status", "--json", check=False)
    return out.returncode, json.loads(out.stdout)


def test_without_a_daemon_status_exits_1_and_without_the_database_2(
        tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    out = run_cli(config, "status", check=False)
    assert out.returncode == 1, out
    assert (f"health:    UNHEALTHY: no daemon on {socket.gethostname()} has a live heartbeat"
            in out.stdout), out.stdout
    code, report = status(config)
    assert code == 1 and report["health"] == {
        "healthy": False,
        "problems": [f"no daemon on {socket.gethostname()} has a live heartbeat "
                     "(none is running)"]}

    with socket.socket() as closed:  # a port nobody listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    nowhere = write_config(tmp_path / "nowhere", f"postgresql://postgres@127.0.0.1:{port}/x",
                           database={"connect_timeout": 2})
    out = run_cli(nowhere, "status", check=False)
    assert out.returncode == 2 and "database:  UNREACHABLE" in out.stdout, out


def read_until(fd: int, done: Callable[[str], bool], timeout: float) -> str:
    """What the pty shows until done(text) holds."""
    text = ""
    deadline = time.monotonic() + timeout
    while not done(text):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out; the terminal showed:\n{text[-3000:]}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            text += chunk.decode(errors="replace")
    return text


def watch_in_pty(config: Path) -> tuple[int, str]:
    """`alfrd status --watch 0.5` on a terminal: two redraws, then Ctrl-C (SIGINT)."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "alfrd_daemon", "status", "--watch", "0.5", "--config",
         str(config)], stdin=terminal, stdout=terminal, stderr=terminal, env=alfrd_env(),
        cwd=REPO, close_fds=True)
    os.close(terminal)
    try:
        shown = read_until(controller, lambda t: t.count(CLEAR) >= 2
                           and t.rstrip().endswith("Ctrl-C to stop"), 30)
        proc.send_signal(signal.SIGINT)
        code = proc.wait(15)
        try:
            while select.select([controller], [], [], 0.2)[0]:
                shown += os.read(controller, 65536).decode(errors="replace")
        except OSError:
            pass
        return code, shown
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        os.close(controller)


def test_status_follows_the_daemons_health_and_watch_redraws_until_ctrl_c(
        tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    inbox = tmp_path / "inbox"
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        # The first heartbeat is written before the daemon says it is ready.
        code, report = wait_for(lambda: (lambda r: r if r[0] == 0 else None)(status(config)),
                                20, "a healthy status", alive=daemon.assert_alive)
        assert report["health"] == {"healthy": True, "problems": []}
        assert "health:    ok" in run_cli(config, "status").stdout

        code, shown = watch_in_pty(config)
        assert code == 130, shown
        assert shown.count("health:    ok") >= 2, shown
        assert "Traceback" not in shown and "interrupted" not in shown, shown

        out = run_cli(config, "status", "--watch", check=False)  # stdout is a pipe here
        assert out.returncode == 64 and "not a terminal" in out.stderr, out
        # With --json into a pipe: one JSON object per line and refresh.
        lines = subprocess.Popen(
            [sys.executable, "-m", "alfrd_daemon", "status", "--watch", "0.2", "--json",
             "--config", str(config)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=alfrd_env(), cwd=REPO, text=True)
        try:
            assert lines.stdout is not None
            reports = [json.loads(lines.stdout.readline()) for _ in range(2)]
            lines.send_signal(signal.SIGINT)
            assert lines.wait(15) == 130
        finally:
            if lines.poll() is None:
                lines.kill()
            lines.communicate(timeout=10)
        assert [r["health"]["healthy"] for r in reports] == [True, True]

        # A lost inbox is a watch problem: the next heartbeat carries it.
        inbox.rename(tmp_path / "inbox.away")
        try:
            code, report = wait_for(lambda: (lambda r: r if r[0] == 1 else None)(
                status(config)), 30, "an unhealthy status", alive=daemon.assert_alive,
                interval=0.5)
            problems = report["health"]["problems"]  # type: ignore[index]
            assert len(problems) == 1 and "inbox missing" in problems[0], problems
        finally:
            (tmp_path / "inbox.away").rename(inbox)
