"""Start-up, reload and shutdown of the real daemon: a server that is still starting, start-up
problems on the file system, SIGHUP with settings that need a restart, one stop deadline."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from alfrd_daemon.db.cluster import Cluster
from tests.helpers import (
    DaemonProcess,
    NotifyListener,
    claimed_files,
    cluster_pids,
    inbox_files,
    query,
    wait_for,
)
from tests.integration.faultkit import NO_JOBS, fault_config
from tests.integration.test_systemd_protocol import notify_env

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory the `alfrd` user can enter, for state dirs holding an embedded server."""
    root = Path(tempfile.mkdtemp(prefix="alfrd-lifecycle-"))
    os.chmod(root, 0o755)
    try:
        yield root
    finally:
        for pid_file in list(root.glob("**/postmaster.pid")):
            Cluster(pid_file.parent.parent).destroy()
        shutil.rmtree(root, ignore_errors=True)


# --- a server that is still starting ------------------------------------------------------------
def start_refusing_cluster(root: Path) -> Cluster:
    """A real server that is up but refuses every connection the way one in crash recovery
    does (a standby with hot_standby off: SQLSTATE 57P03, "not accepting connections") until
    it is promoted. Deterministic, unlike racing a real recovery."""
    cluster = Cluster(root)
    cluster.start()
    cluster.ensure_database("alfrd")
    cluster.stop()
    (cluster.data_dir / "standby.signal").touch()
    with open(cluster.data_dir / "postgresql.auto.conf", "a") as conf:
        conf.write("hot_standby = off\n")
    cluster._launch(timeout=30)
    with pytest.raises(Exception, match="not accepting connections"):
        cluster.ensure_database("alfrd")
    return cluster


def promote(cluster: Cluster) -> None:
    cluster._run([cluster._bin("pg_ctl"), "-D", str(cluster.data_dir), "-w", "promote"])


@pytest.mark.parametrize("server", ["embedded", "external"])
def test_a_server_still_starting_is_waited_for(open_dir: Path, server: str) -> None:
    cluster = start_refusing_cluster(open_dir / "var" / "postgres")
    url = None if server == "embedded" else cluster.conninfo("alfrd")
    config = fault_config(open_dir, url, database={"startup_timeout": 60})
    daemon = DaemonProcess(config, open_dir / "daemon.log").start()
    try:
        wait_for(lambda: "to accept connections: the database system is not accepting "
                 "connections" in daemon.log(), 30, "the daemon to say what it waits for",
                 alive=daemon.assert_alive)
        promote(cluster)
        daemon.wait_started()
        (open_dir / "inbox" / "after-recovery.txt").write_text("the server is up now")
        # The file leaves the inbox when it is claimed, before its row commits: wait for both.
        wait_for(lambda: not inbox_files(open_dir / "inbox") and query(
                     cluster.conninfo("alfrd"), "SELECT count(*) AS n FROM documents")[0]["n"],
                 20, "ingest", alive=daemon.assert_alive)
        assert query(cluster.conninfo("alfrd"), "SELECT count(*) AS n FROM documents")[0][
            "n"] == 1
        assert daemon.stop() == 0
    finally:
        daemon.kill()


@pytest.mark.parametrize("server", ["embedded", "external"])
def test_a_server_that_never_accepts_connections_is_one_line(
    open_dir: Path, server: str, listener: NotifyListener
) -> None:
    cluster = start_refusing_cluster(open_dir / "var" / "postgres")
    url = None if server == "embedded" else cluster.conninfo("alfrd")
    config = fault_config(open_dir, url, database={"startup_timeout": 2})
    daemon = DaemonProcess(config, open_dir / "daemon.log", env=notify_env(listener)).start()
    assert daemon.proc is not None
    started = time.monotonic()
    assert daemon.proc.wait(30) == 1
    assert time.monotonic() - started < 15
    daemon.kill()
    [line] = [x for x in daemon.log().splitlines() if "cannot start" in x]
    assert "did not accept connections within 2 s" in line, line
    assert "not accepting connections" in line and "database.startup_timeout" in line, line
    assert "Traceback" not in daemon.log()
    listener.wait(lambda m: "did not accept connections" in m.get("STATUS", ""), 5,
                  "STATUS= cannot start")


# --- file system problems at start -----------------------------------------------------------
def under_a_file(tmp: Path) -> Path:
    blocker = tmp / "a-regular-file"
    blocker.write_text("not a directory")
    return blocker


@pytest.mark.parametrize("where", ["state_dir", "paths.store", "paths.failed", "claim area"])
def test_a_directory_that_cannot_be_created_is_one_line(
    tmp_path: Path, db_url: str, listener: NotifyListener, where: str
) -> None:
    blocker = under_a_file(tmp_path)
    overrides: dict[str, object] = {}
    bad = blocker / "below"
    if where == "state_dir":
        overrides["state_dir"] = str(bad)
    elif where == "claim area":
        (tmp_path / "inbox").mkdir()
        (tmp_path / "inbox" / ".alfrd").write_text("a file where the claim area goes")
        bad = tmp_path / "inbox" / ".alfrd" / "claimed"
    else:
        overrides["paths"] = {where.split(".")[1]: str(bad)}
    config = fault_config(tmp_path, db_url, **overrides)
    daemon = DaemonProcess(config, tmp_path / "daemon.log", env=notify_env(listener)).start()
    assert daemon.proc is not None
    assert daemon.proc.wait(30) == 1
    daemon.kill()
    log = daemon.log()
    assert "Traceback" not in log, log
    [line] = [x for x in log.splitlines() if "cannot start" in x]
    assert str(bad) in line and "Not a directory" in line, line
    listener.wait(lambda m: "cannot start" in m.get("STATUS", "") and str(bad) in m["STATUS"],
                  5, "STATUS= naming the path")


def test_a_failed_start_stops_the_embedded_server_it_started(open_dir: Path) -> None:
    blocker = under_a_file(open_dir)
    config = fault_config(open_dir, None, paths={"store": str(blocker / "store")})
    daemon = DaemonProcess(config, open_dir / "daemon.log").start()
    assert daemon.proc is not None
    assert daemon.proc.wait(90) == 1
    daemon.kill()
    log = daemon.log()
    assert "Traceback" not in log and "cannot open the store" in log, log
    cluster = Cluster(open_dir / "var" / "postgres")
    assert cluster.initialised(), "the daemon never got as far as the embedded server"
    assert not cluster.running(), "the embedded server was left running"


# --- reload ------------------------------------------------------------------------------------
def test_reload_applies_live_settings_and_keeps_restart_only_ones(
    tmp_path: Path, db_url: str
) -> None:
    config = fault_config(tmp_path, db_url)
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start().wait_started()
    try:
        cfg = yaml.safe_load(config.read_text())
        cfg["store"] = {"fsync": False}  # fixed at start: the committer and store keep it
        cfg["workers"]["max_file_size"] = 100  # live
        config.write_text(yaml.safe_dump(cfg))
        daemon.proc.send_signal(signal.SIGHUP)  # type: ignore[union-attr]
        wait_for(lambda: "event=reloaded" in daemon.log(), 10, "reload",
                 alive=daemon.assert_alive)
        [line] = [x for x in daemon.log().splitlines() if "change only on restart" in x]
        assert line.rstrip().endswith("store.fsync"), line
        (tmp_path / "inbox" / "big.txt").write_text("x" * 1000)
        wait_for(lambda: (tmp_path / "var" / "failed" / "big.txt").exists(), 20,
                 "the file over the reloaded max_file_size to fail", alive=daemon.assert_alive)
        assert "too large" in (tmp_path / "var" / "failed" / "big.txt.error").read_text()
        assert daemon.stop() == 0
    finally:
        daemon.kill()


# --- shutdown ----------------------------------------------------------------------------------
def freeze(cluster: Cluster, sig: signal.Signals) -> None:
    for pid in cluster_pids(cluster.data_dir):
        with contextlib.suppress(ProcessLookupError):  # a backend that just ended
            os.kill(pid, sig)


def test_shutdown_has_one_deadline_for_workers_and_committer(
    tmp_path: Path, private_cluster: Cluster
) -> None:
    """With the server frozen, a worker (recording a failure) and the committer (a batch) both
    hang; SIGTERM ends the daemon once drain_timeout has passed, not after each waited it."""
    drain = 4.0
    config = fault_config(tmp_path, private_cluster.conninfo("alfrd"), jobs=NO_JOBS,
                          workers={"count": 2, "drain_timeout": drain})
    inbox = tmp_path / "inbox"
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start().wait_started()
    assert daemon.proc is not None
    try:
        wait_for(lambda: query(private_cluster.conninfo("alfrd"),
                               "SELECT count(*) AS n FROM daemon_instances")[0]["n"], 10,
                 "the first heartbeat", alive=daemon.assert_alive)
        freeze(private_cluster, signal.SIGSTOP)
        (inbox / "empty.txt").write_bytes(b"")  # fails: the worker records that itself
        (inbox / "doc.txt").write_text("goes to the committer")
        wait_for(lambda: len(claimed_files(inbox)) == 2, 20, "both files claimed",
                 alive=daemon.assert_alive)
        started = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        try:
            code = daemon.proc.wait(drain + 6)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {drain + 6:g} s after SIGTERM") from None
        elapsed = time.monotonic() - started
        assert code == 0
        assert drain - 0.5 < elapsed < drain + 4, (
            f"stopping took {elapsed:.1f} s:\n{daemon.log()[-3000:]}")
        assert "drain timeout (4 s) passed" in daemon.log()
    finally:
        freeze(private_cluster, signal.SIGCONT)
        daemon.kill()
    # What was abandoned stays claimed, and the next start finishes it.
    assert sorted(Path(c).name for c in claimed_files(inbox)) == ["doc.txt", "empty.txt"]
    with DaemonProcess(config, tmp_path / "daemon2.log"):
        wait_for(lambda: not claimed_files(inbox), 30, "the next start to finish the claims")
