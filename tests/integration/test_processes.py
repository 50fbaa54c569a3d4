"""workers.processes: the daemon's other ingest processes share the inbox through their
partitions, are started again when they die, reload and stop with it, and never outlive it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from alfrd_daemon.extract.pool import default_size
from alfrd_daemon.ingest.partition import Partition
from alfrd_daemon.ingest.store import TEMP_PREFIX, temp_owner
from alfrd_daemon.service.daemon import extractor_share, instance_host
from tests.helpers import (
    REPO,
    DaemonProcess,
    NotifyListener,
    alfrd_env,
    inbox_files,
    query,
    wait_for,
    write_config,
)
from tests.integration.faultkit import fault_config

pytestmark = pytest.mark.timeout(120)


def children_running(pid: int, arg: bytes) -> list[int]:
    """The children of `pid` with `arg` among their arguments, by pid."""
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        for child in Path(f"/proc/{pid}/task/{tid}/children").read_text().split():
            try:
                args = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if arg in args:
                found.append(int(child))
    return found


def siblings_of(pid: int) -> list[int]:
    """The daemon's ingest processes (`alfrd run --partition`), by pid."""
    return children_running(pid, b"--partition")


def gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state == "Z"  # exited, waiting for its parent to read the status


def drop(inbox: Path, names: list[str]) -> None:
    for name in names:
        tmp = inbox / f".{name}.part"
        tmp.write_text(f"the text of {name}\n")
        os.rename(tmp, inbox / name)


def ingested(db_url: str, inbox: Path, n: int, daemon: DaemonProcess) -> None:
    # Well within the 30 s rescan: each process must hear of its own files from its watch.
    wait_for(lambda: not inbox_files(inbox) and query(
        db_url, "SELECT count(*) AS n FROM documents")[0]["n"] >= n, 20,
        f"{n} documents and an empty inbox", alive=daemon.assert_alive, interval=0.1)


def arrivals_by_instance(db_url: str) -> dict[str, list[str]]:
    rows = query(db_url, "SELECT instance, original_name FROM document_arrivals")
    out: dict[str, list[str]] = {}
    for r in rows:
        out.setdefault(r["instance"], []).append(r["original_name"])
    return out


def config(tmp: Path, db_url: str) -> Path:
    return fault_config(tmp, db_url, workers={"count": 2, "processes": 2})


def running_sibling(d: DaemonProcess, db_url: str) -> int:
    """The pid of the daemon's second ingest process, once it has started (its instance row
    is written when it watches the inbox)."""
    assert d.proc is not None
    pid = d.proc.pid
    sibling: int = wait_for(lambda: siblings_of(pid), 30, "the second ingest process",
                            alive=d.assert_alive)[0]
    wait_for(lambda: query(db_url, "SELECT 1 FROM daemon_instances WHERE pid = %s",
                           (sibling,)), 30, "the second process's heartbeat",
             alive=d.assert_alive)
    return sibling


def test_two_ingest_processes_take_each_file_once_each_its_own_share(
        tmp_path: Path, db_url: str) -> None:
    inbox = tmp_path / "inbox"
    names = [f"doc{i:02d}.txt" for i in range(40)]
    notify = NotifyListener(tmp_path / "notify.sock")
    with DaemonProcess(config(tmp_path, db_url), tmp_path / "d.log", env=notify.env()) as d:
        # Dropped once both watch (and scanned at their start): each must hear of its files.
        notify.wait(lambda m: m.get("READY") == "1", 60, "READY=1", alive=d.assert_alive)
        assert d.proc is not None
        [sibling] = siblings_of(d.proc.pid)
        drop(inbox, names)
        ingested(db_url, inbox, len(names), d)
        by_instance = arrivals_by_instance(db_url)
        rows = query(db_url, "SELECT instance, hostname, pid, state FROM daemon_instances "
                             "WHERE pid = ANY(%s)", ([d.proc.pid, sibling],))
        states = {r["instance"]: r["state"] for r in rows}
        assert d.stop() == 0
        assert gone(sibling)
    # Both drained and stopped (a second SIGTERM had killed the other one on the spot).
    stopped = query(db_url, "SELECT stopped_at FROM daemon_instances WHERE pid = ANY(%s)",
                    ([d.proc.pid, sibling],))
    assert len(stopped) == 2 and all(r["stopped_at"] is not None for r in stopped)
    assert d.log().count("event=stopped") == 2
    assert query(db_url, "SELECT count(*) AS n FROM document_arrivals")[0]["n"] == len(names)
    assert sorted(n for names_ in by_instance.values() for n in names_) == names
    assert len(by_instance) == 2, by_instance
    # Each process took exactly the files of its partition, by the path's hash.
    for instance, taken in by_instance.items():
        part = Partition(*map(int, states[instance]["partition"].split("/")))
        assert all(part.owns(name) for name in taken), (part, taken)
    assert "ERROR" not in d.log() and "Traceback" not in d.log()
    # Each id names its own process, so the store knows whose temporary copies are whose
    # (those of a dead process are removed at the next start).
    for r in rows:
        assert temp_owner(f"{TEMP_PREFIX}{r['instance']}.x1") == (
            instance_host(), r["pid"]), r["instance"]


def test_a_killed_ingest_process_is_started_again_and_its_share_still_goes_in(
        tmp_path: Path, db_url: str) -> None:
    inbox = tmp_path / "inbox"
    with DaemonProcess(config(tmp_path, db_url), tmp_path / "d.log") as d:
        first = running_sibling(d, db_url)
        assert d.proc is not None
        os.kill(first, signal.SIGKILL)
        second = wait_for(lambda: [p for p in siblings_of(d.proc.pid) if p != first], 30,
                          "a new second ingest process", alive=d.assert_alive)[0]
        assert "event=sibling_exited" in d.log() and "signal SIGKILL" in d.log()
        names = [f"after{i:02d}.txt" for i in range(30)]
        drop(inbox, names)
        ingested(db_url, inbox, len(names), d)
        pids = {r["pid"] for r in query(
            db_url, "SELECT i.pid FROM document_arrivals a "
                    "JOIN daemon_instances i USING (instance)")}
        assert d.stop() == 0
        assert gone(second)
    assert pids == {d.proc.pid, second}


def test_ingest_processes_end_with_a_killed_daemon(tmp_path: Path, db_url: str) -> None:
    """SIGKILL leaves the primary no chance to stop them: the kernel tells them instead."""
    with DaemonProcess(config(tmp_path, db_url), tmp_path / "d.log") as d:
        sibling = running_sibling(d, db_url)  # started whole before the primary goes
        d.kill()
        wait_for(lambda: gone(sibling), 30, "the orphaned ingest process to exit")
    # It stopped as on SIGTERM: its instance row says so.
    row = query(db_url, "SELECT stopped_at FROM daemon_instances WHERE pid = %s", (sibling,))
    assert row and row[0]["stopped_at"] is not None


def test_a_reload_reaches_the_other_ingest_processes(tmp_path: Path, db_url: str) -> None:
    with DaemonProcess(config(tmp_path, db_url), tmp_path / "d.log") as d:
        sibling = running_sibling(d, db_url)
        assert d.proc is not None
        os.kill(d.proc.pid, signal.SIGHUP)
        wait_for(lambda: d.log().count("event=reloaded") >= 2, 30,
                 "both processes to reload", alive=d.assert_alive)
        assert siblings_of(d.proc.pid) == [sibling]
        assert d.stop() == 0


def test_ready_waits_for_every_ingest_process_and_only_the_first_speaks_to_systemd(
        tmp_path: Path, db_url: str) -> None:
    """READY=1 is when files may come: every process must watch the inbox by then (a file
    dropped at once waited a second for its process to start, seen as p99 1,003 ms at 200
    files/s). The service manager hears the first process only."""
    notify = NotifyListener(tmp_path / "notify.sock")
    with DaemonProcess(config(tmp_path, db_url), tmp_path / "d.log", env=notify.env()) as d:
        notify.wait(lambda m: m.get("READY") == "1", 60, "READY=1", alive=d.assert_alive)
        assert d.proc is not None
        pids = [d.proc.pid, *siblings_of(d.proc.pid)]
        rows = query(db_url, "SELECT pid, state FROM daemon_instances WHERE pid = ANY(%s)",
                     (pids,))
        assert sorted(r["state"]["partition"] for r in rows) == ["0/2", "1/2"]
        assert "ingest processes 2/2" in notify.messages[-1][1].get("STATUS", "")
        # One extractor per core in all, not per core in each process.
        for k, pid in enumerate(pids):
            assert len(children_running(pid, b"alfrd_daemon.extract.worker")) == \
                extractor_share(default_size(), Partition(k, 2))
        assert d.stop() == 0
    notify.pump()
    assert sum(1 for _, m in notify.messages if m.get("READY") == "1") == 1


@pytest.mark.parametrize(("args", "says"), [
    (["--partition", "1/2"], "--partition, --parent-pid and --instance-token go together"),
    (["--partition", "2/2", "--parent-pid", "1", "--instance-token", "ab"],
     "argument --partition: expected K/N with 0 <= K < N <= 64, got '2/2'"),
    (["--partition", "1/2", "--parent-pid", "1", "--instance-token", "../x"],
     "argument --instance-token: expected 2 to 32 hex digits, got '../x'"),
])
def test_the_ingest_process_arguments_are_checked(tmp_path: Path, args: list[str],
                                                   says: str) -> None:
    config = write_config(tmp_path, None)
    result = subprocess.run(
        [sys.executable, "-m", "alfrd_daemon", "run", "--config", str(config), *args],
        capture_output=True, text=True, timeout=60, env=alfrd_env(), cwd=REPO)
    assert result.returncode == 64
    assert result.stderr.count("\n") == 1 and says in result.stderr, result.stderr


def test_an_ingest_process_whose_parent_is_gone_does_not_start(tmp_path: Path,
                                                               db_url: str) -> None:
    """Started by hand, or its daemon died in between: no process nobody will stop."""
    result = subprocess.run(
        [sys.executable, "-m", "alfrd_daemon", "run", "--config", str(config(tmp_path, db_url)),
         "--partition", "1/2", "--parent-pid", "1", "--instance-token", "ab"],
        capture_output=True, text=True, timeout=60, env=alfrd_env(), cwd=REPO)
    assert result.returncode == 1
    assert "its parent (pid 1) is gone" in result.stderr
    assert not (tmp_path / "inbox" / ".alfrd" / "claimed").exists()
