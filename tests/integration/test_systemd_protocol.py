"""The daemon speaks sd_notify to a real AF_UNIX datagram socket, as systemd would see it."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import time
from pathlib import Path

import pytest
import yaml

from alfrd_daemon.db.cluster import Cluster
from tests.helpers import (
    DaemonProcess,
    NotifyListener,
    cluster_pids,
    inbox_files,
    query,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.timeout(120)


def notify_env(listener: NotifyListener, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"NOTIFY_SOCKET": str(listener.path), "WATCHDOG_USEC": "1000000", **(extra or {})}


def block_systemd_python(tmp_path: Path) -> dict[str, str]:
    """An interpreter where `import systemd` fails, as on a host without systemd-python."""
    site = tmp_path / "no-systemd-python"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['systemd'] = None\n")
    repo = Path(__file__).resolve().parents[2]
    return {"PYTHONPATH": f"{site}{os.pathsep}{repo}"}


@pytest.mark.parametrize("binding", ["systemd-python", "no binding"])
def test_ready_status_watchdog_reload_stopping(
    tmp_path: Path, db_url: str, listener: NotifyListener, binding: str
) -> None:
    if binding == "systemd-python":
        pytest.importorskip("systemd.daemon", reason="systemd-python not installed here")
    extra = block_systemd_python(tmp_path) if binding == "no binding" else {}
    config = write_config(tmp_path, db_url)
    inbox = tmp_path / "inbox"
    daemon = DaemonProcess(config, tmp_path / "daemon.log", env=notify_env(listener, extra))
    daemon.start()
    try:
        ready_at, _ = listener.wait(lambda m: m.get("READY") == "1", 60, "READY=1")
        # Either way the daemon speaks through its own bounded sender (see the README).
        assert "sd_notify=fallback" in daemon.log()
        # READY means migrated, connected and watching: a file dropped now is ingested.
        assert query(db_url, "SELECT count(*) AS n FROM schema_migrations")[0]["n"] >= 1
        (inbox / "first.txt").write_text("dropped right after READY")
        listener.wait(lambda m: "ingested 1" in m.get("STATUS", ""), 20, "STATUS ingested 1")
        assert "database ok" in listener.messages[-1][1].get("STATUS", "") or any(
            "database ok" in m.get("STATUS", "") for _, m in listener.messages)
        listener.listen_for(2.0)
        pings = listener.watchdog_times(ready_at)
        assert len(pings) >= 3, "WATCHDOG=1 not sent every WATCHDOG_USEC/2"
        assert max(b - a for a, b in itertools.pairwise(pings)) < 1.0

        # A valid edit: RELOADING=1 with MONOTONIC_USEC, then READY=1 again.
        cfg = yaml.safe_load(config.read_text())
        cfg["logging"]["level"] = "INFO"
        config.write_text(yaml.safe_dump(cfg))
        mark = len(listener.messages)
        daemon.proc.send_signal(signal.SIGHUP)
        i, reloading = listener.wait(lambda m: m.get("RELOADING") == "1", 10, "RELOADING=1",
                                     since=mark)
        assert abs(int(reloading["MONOTONIC_USEC"]) - time.monotonic_ns() // 1000) < 10_000_000
        listener.wait(lambda m: m.get("READY") == "1", 10, "READY=1 after reload", since=i)
        wait_for(lambda: "event=reloaded" in daemon.log(), 5, "reloaded event")

        # An invalid edit keeps the old settings, says why in STATUS, and ingest goes on.
        cfg["workers"]["count"] = "zero"
        config.write_text(yaml.safe_dump(cfg))
        mark = len(listener.messages)
        daemon.proc.send_signal(signal.SIGHUP)
        i, _ = listener.wait(lambda m: m.get("RELOADING") == "1", 10, "RELOADING=1", since=mark)
        listener.wait(lambda m: m.get("READY") == "1", 10, "READY=1 after rejection", since=i)
        listener.wait(lambda m: "config reload rejected" in m.get("STATUS", "")
                      and "workers.count" in m.get("STATUS", ""), 10, "rejection in STATUS",
                      since=i)
        (inbox / "second.txt").write_text("still flowing after a bad reload")
        wait_for(lambda: not inbox_files(inbox), 20, "ingest after a rejected reload",
                 alive=daemon.assert_alive)

        mark = len(listener.messages)
        daemon.proc.send_signal(signal.SIGTERM)
        listener.wait(lambda m: m.get("STOPPING") == "1", 30, "STOPPING=1", since=mark)
        assert daemon.proc.wait(60) == 0
    finally:
        if daemon.proc.poll() is None:
            daemon.kill()


def freeze(cluster: Cluster, sig: signal.Signals) -> None:
    for pid in cluster_pids(cluster.data_dir):
        os.kill(pid, sig)


def test_wedged_workers_stop_the_watchdog_pings(
    tmp_path: Path, private_cluster: Cluster, listener: NotifyListener
) -> None:
    """A frozen database server wedges every worker mid-file; the daemon must stop pinging so
    systemd restarts it, and start again by itself once the server thaws."""
    config = write_config(tmp_path, private_cluster.conninfo("alfrd"),
                          workers={"count": 2, "stuck_seconds": 2})
    inbox = tmp_path / "inbox"
    daemon = DaemonProcess(config, tmp_path / "daemon.log", env=notify_env(listener))
    daemon.start()
    try:
        listener.wait(lambda m: m.get("READY") == "1", 60, "READY=1")
        freeze(private_cluster, signal.SIGSTOP)
        for i in range(2):
            (inbox / f"stuck{i}.txt").write_text(f"file {i} arriving while the server is frozen")
        # The first file of a burst goes through the committer, later retries through the
        # workers: whichever is wedged on the frozen server, the status says it is stuck.
        listener.wait(lambda m: "stuck" in m.get("STATUS", ""), 20, "STATUS … stuck")
        mark = len(listener.messages)
        listener.listen_for(2.5)
        assert listener.watchdog_times(mark) == [], "pinged the watchdog while wedged"
        daemon.assert_alive()
        freeze(private_cluster, signal.SIGCONT)
        mark = len(listener.messages)
        listener.wait(lambda m: m.get("WATCHDOG") == "1", 20, "WATCHDOG=1 after thaw", since=mark)
        wait_for(lambda: not inbox_files(inbox), 30, "files ingested after thaw",
                 alive=daemon.assert_alive)
        assert daemon.stop() == 0
    finally:
        freeze(private_cluster, signal.SIGCONT)
        if daemon.proc.poll() is None:
            daemon.kill()


def test_a_notify_socket_nobody_reads_does_not_stop_ingest(tmp_path: Path, db_url: str) -> None:
    """A receiver that stops reading (a wedged service manager, a harness that only waited for
    READY=1) fills the socket's queue after a few datagrams. libsystemd's sd_notify then blocks
    in sendmsg holding the GIL, which froze every thread of the daemon; its own sender gives up
    after a second and the workers go on."""
    path = tmp_path / "deaf.sock"
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deaf.bind(str(path))  # bound, never read
    config = write_config(tmp_path, db_url)
    inbox = tmp_path / "inbox"
    env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"}
    try:
        with DaemonProcess(config, tmp_path / "daemon.log", env=env) as daemon:
            wait_for(lambda: _queue_full(path), 20, "the deaf socket's queue to fill",
                     alive=daemon.assert_alive)
            for i in range(30):
                (inbox / f"f{i}.txt").write_text(f"dropped while nobody listens {i}")
            wait_for(lambda: query(db_url, "SELECT count(*) AS n FROM documents")[0]["n"] == 30,
                     30, "30 files ingested with a deaf notify socket",
                     alive=daemon.assert_alive)
            assert not inbox_files(inbox)
    finally:
        deaf.close()


def _queue_full(path: Path) -> bool:
    """Would a datagram to `path` block? (Then the daemon's own are blocked too.)"""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as probe:
        probe.setblocking(False)
        try:
            probe.sendto(b"PROBE=1", str(path))
        except BlockingIOError:
            return True
    return False
