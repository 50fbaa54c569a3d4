"""Faults the daemon must survive with every file ending up exactly once as a document, or in
failed/ with its reason: kill -9 at random moments and at exact points, a database outage,
three daemons on one inbox, a full disk under the store."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alfrd_daemon.db.cluster import Cluster
from alfrd_daemon.ingest.claim import ClaimArea
from tests.helpers import (
    DaemonProcess,
    claimed_files,
    inbox_files,
    query,
    run_cli,
    wait_for,
)
from tests.integration.faultkit import (
    CrashingDaemon,
    Dropper,
    cpu_seconds,
    fault_config,
    log_events,
    sha,
    verify_archive,
    wait_all_processed,
)

LONG = os.environ.get("ALFRD_LONG_TESTS") == "1"


# --- 1. kill -9 at random moments ---------------------------------------------------------------
@pytest.mark.timeout(1500 if LONG else 150)
def test_kill_9_torture_loses_nothing_and_ingests_nothing_twice(
    tmp_path: Path, db_url: str
) -> None:
    files, kills = (10_000, 100) if LONG else (2_000, 10)
    config = fault_config(tmp_path, db_url)
    inbox = tmp_path / "inbox"
    rng = random.Random(20241124)
    # Drops are spread over the whole kill sequence, so files arrive before, during and after
    # each kill: some still in the inbox, some claimed, stored, committed or half-failed.
    dropper = Dropper(inbox, files, rate=files / (kills * 1.0), dup_every=40, empty_every=97,
                      junk_pdf_every=89, seed=7).start()
    started = time.monotonic()
    killed = 0
    for k in range(kills):
        daemon = DaemonProcess(config, tmp_path / f"daemon{k:03d}.log").start()
        if k % 4 == 3:
            time.sleep(rng.uniform(0.0, 0.8))  # sometimes during start-up (adoption, migrate)
        else:
            daemon.wait_started()
            time.sleep(rng.uniform(0.05, 1.0))
        daemon.kill()
        assert daemon.proc is not None
        killed += daemon.proc.returncode == -9
    dropper.join()
    assert killed >= kills - 1, f"only {killed} of {kills} daemons were killed by SIGKILL"
    final = DaemonProcess(config, tmp_path / "final.log").start().wait_started()
    wait_all_processed(db_url, inbox, files, timeout=600 if LONG else 90,
                       alive=final.assert_alive)
    assert final.stop() == 0
    result = verify_archive(db_url, config, dropper.dropped, dropper.expect_failed)
    assert result["arrivals"] == files
    adopted = sum(len(log_events(p.read_text(), "adopted")) for p in tmp_path.glob("*.log"))
    print(f"\ntorture: {files} files, {kills} kills, {adopted} adoptions, "
          f"{result['documents']} documents, {result['failed']} failed, "
          f"{time.monotonic() - started:.1f} s")


# --- 1b. kill -9 at exact points of the pipeline ------------------------------------------------
CRASH_POINTS = [
    # (patched function, which call, before/after it): the window it opens
    pytest.param("alfrd_daemon.ingest.claim:ClaimArea.claim", 3, "after", id="claimed-not-read"),
    pytest.param("alfrd_daemon.ingest.store:Store.receive", 3, "after", id="copied-not-stored"),
    pytest.param("alfrd_daemon.ingest.store:Store.adopt", 3, "after", id="stored-not-committed"),
    pytest.param("alfrd_daemon.ingest.committer:write_rows", 1, "before",
                 id="about-to-commit"),
    pytest.param("alfrd_daemon.ingest.committer:write_rows", 1, "after",
                 id="committed-not-released"),
    pytest.param("alfrd_daemon.ingest.failures:FailureRecorder.record", 1, "after",
                 id="failure-recorded-not-moved"),
    pytest.param("alfrd_daemon.ingest.failed:rename_noreplace", 1, "before",
                 id="failure-note-written-file-not-moved"),
]


@pytest.mark.timeout(90)
@pytest.mark.parametrize(("target", "nth", "when"), CRASH_POINTS)
def test_kill_9_at_each_point_of_the_pipeline(
    tmp_path: Path, db_url: str, target: str, nth: int, when: str
) -> None:
    config = fault_config(tmp_path, db_url)
    inbox = tmp_path / "inbox"
    dropped: dict[str, str] = {}
    for i in range(6):
        data = f"crash point document {i}\n".encode() * 4
        (inbox / f"doc{i}.txt").write_bytes(data)
        dropped[f"doc{i}.txt"] = sha(data)
    (inbox / "empty.txt").write_bytes(b"")
    dropped["empty.txt"] = sha(b"")
    crashing = CrashingDaemon(config, tmp_path / "crash.log", target, nth, when).start()
    assert crashing.proc is not None
    try:
        crashing.proc.wait(60)
    finally:
        crashing.kill()
    assert crashing.proc.returncode == -9, crashing.log()[-3000:]
    with DaemonProcess(config, tmp_path / "after.log") as daemon:
        wait_all_processed(db_url, inbox, len(dropped), 60, alive=daemon.assert_alive)
    verify_archive(db_url, config, dropped, {"empty.txt"})


# --- 2. the database goes away for 30 s --------------------------------------------------------
@pytest.mark.timeout(150)
def test_database_outage_waits_without_spinning_and_resumes(
    tmp_path: Path, private_cluster: Cluster
) -> None:
    db_url = private_cluster.conninfo("alfrd")
    # One pooled connection: psycopg_pool then runs a single reconnect chain (1, 3, 7, 15,
    # 31, 63 s after the loss), so a pool left to its own backoff would come back only about
    # 30 s after a 35 s outage; the daemon must not wait for that.
    config = fault_config(tmp_path, db_url,
                          database={"connect_timeout": 2, "pool_min": 1, "pool_max": 1})
    inbox = tmp_path / "inbox"
    failed = tmp_path / "var" / "failed"
    outage = 35.0
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        assert daemon.proc is not None
        pid = daemon.proc.pid
        before = Dropper(inbox, 400, subdirs=2, seed=1).start()
        wait_for(lambda: query(db_url, "SELECT count(*) AS n FROM documents")[0]["n"] >= 20,
                 30, "ingest under way", alive=daemon.assert_alive, interval=0.02)
        private_cluster.stop(mode="immediate")
        down_at = time.monotonic()
        before.join()
        # Files keep arriving while the database is away.
        during = Dropper(inbox, 100, subdirs=0, seed=2)
        during.dropped, during.expect_failed = {}, set()
        for i in range(100):
            data = f"dropped during the outage {i}\n".encode()
            (inbox / f"during{i:03d}.txt").write_bytes(data)
            during.dropped[f"during{i:03d}.txt"] = sha(data)
        wait_for(lambda: log_events(daemon.log(), "degraded"), 15, "a degraded event",
                 alive=daemon.assert_alive)
        # status reads the database: it must say so, with the exit code for "unavailable".
        status = run_cli(config, "status", "--json", check=False)
        assert status.returncode == 2, status.stdout + status.stderr
        report = json.loads(status.stdout)
        assert report["database"]["state"] == "unreachable"
        # CPU over (most of) the outage: waiting must not spin.
        time.sleep(2)
        cpu_start, wall_start = cpu_seconds(pid), time.monotonic()
        time.sleep(max(0.0, outage - (time.monotonic() - down_at)))
        cpu_used = cpu_seconds(pid) - cpu_start
        wall = time.monotonic() - wall_start
        daemon.assert_alive()
        assert not list(failed.rglob("*")), f"moved to failed/ during the outage: " \
            f"{[p.name for p in failed.rglob('*')][:10]}"
        waiting = len(inbox_files(inbox)) + len(claimed_files(inbox))
        assert waiting > 0, "nothing waited for the database?"
        assert cpu_used < 0.1 * wall, f"daemon used {cpu_used:.2f} s CPU in {wall:.0f} s"

        private_cluster.start()
        up_at = time.monotonic()
        count_then = query(db_url, "SELECT count(*) AS n FROM document_arrivals")[0]["n"]
        wait_for(lambda: query(db_url, "SELECT count(*) AS n FROM document_arrivals")[0]["n"]
                 > count_then, 10, "ingest to resume within 10 s of the database's return",
                 alive=daemon.assert_alive, interval=0.1)
        resumed = time.monotonic() - up_at
        wait_all_processed(db_url, inbox, 500, 30, alive=daemon.assert_alive)
        # The monitor says so at its next tick, which may come after the last file: the
        # files went through within 0.2 s of the database's return in one run.
        wait_for(lambda: log_events(daemon.log(), "recovered"), 10, "a recovered event",
                 alive=daemon.assert_alive)
        log_text = daemon.log()
    assert "Traceback" not in log_text, log_text[-3000:]
    result = verify_archive(db_url, config, {**before.dropped, **during.dropped})
    assert result["failed"] == 0
    print(f"\noutage {outage:.0f} s: daemon CPU {cpu_used:.2f} s over {wall:.1f} s "
          f"({100 * cpu_used / wall:.1f}%), {waiting} files waiting, resumed "
          f"{resumed:.1f} s after the database returned")


# --- 3. three daemons, one inbox, one database --------------------------------------------------
@pytest.mark.timeout(180)
def test_three_daemons_share_an_inbox_and_each_file_is_taken_once(
    tmp_path: Path, db_url: str
) -> None:
    files = 5_000
    # fsync off: durability across power loss is not what this test is about, and three
    # daemons on two cores are slow enough.
    config = fault_config(tmp_path, db_url, workers={"count": 3},
                          database={"pool_min": 1, "pool_max": 3}, store={"fsync": False})
    inbox = tmp_path / "inbox"
    daemons = [DaemonProcess(config, tmp_path / f"daemon{i}.log") for i in range(3)]
    try:
        for d in daemons:
            d.start()
        for d in daemons:
            d.wait_started()

        def all_alive() -> None:
            for d in daemons:
                d.assert_alive()

        started = time.monotonic()
        dropper = Dropper(inbox, files, dup_every=25, empty_every=499, subdirs=8,
                          seed=3).start()
        dropper.join()
        wait_all_processed(db_url, inbox, files, 150, alive=all_alive)
        elapsed = time.monotonic() - started
        for d in daemons:
            assert d.stop() == 0
    finally:
        for d in daemons:
            if d.proc is not None and d.proc.poll() is None:
                d.kill()
    result = verify_archive(db_url, config, dropper.dropped, dropper.expect_failed)
    assert result["arrivals"] == files
    per_instance = result["instances"]
    assert len(per_instance) == 3, f"not all three daemons took part: {per_instance}"
    assert all(n >= files // 20 for n in per_instance.values()), per_instance
    print(f"\nthree daemons: {files} files in {elapsed:.1f} s "
          f"({files / elapsed:.0f} files/s); per daemon {sorted(per_instance.values())}")


# --- 4. the store's disk is full ----------------------------------------------------------------
@contextlib.contextmanager
def small_tmpfs(mountpoint: Path, size: str = "2m") -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; run the suite as root to test a full "
                    "disk under the store")
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mountpoint.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                             str(mountpoint)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


def fill(path: Path) -> int:
    """Write zeros until the filesystem is full; returns the bytes written."""
    written = 0
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    written += os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return written


@pytest.mark.timeout(90)
def test_full_disk_under_the_store_waits_and_resumes(tmp_path: Path, db_url: str) -> None:
    with small_tmpfs(tmp_path / "storefs") as fs:
        config = fault_config(tmp_path, db_url, paths={"store": str(fs / "store")})
        inbox = tmp_path / "inbox"
        failed = tmp_path / "var" / "failed"
        daemon = DaemonProcess(config, tmp_path / "daemon.log")
        try:
            daemon.start().wait_started()
            filler = fs / "filler"
            fill(filler)
            dropped = {}
            for i in range(20):
                data = f"needs room in the store {i}\n".encode() * 2000  # ~50 KB each
                (inbox / f"big{i:02d}.txt").write_bytes(data)
                dropped[f"big{i:02d}.txt"] = sha(data)
            wait_for(lambda: log_events(daemon.log(), "degraded"), 20, "a degraded event",
                     alive=daemon.assert_alive)
            time.sleep(2)
            daemon.assert_alive()
            assert not list(failed.rglob("*")), "a full disk moved files to failed/"
            waiting = set(inbox_files(inbox)) | set(claimed_files(inbox))
            assert len(waiting) == 20 or query(db_url, "SELECT count(*) AS n FROM documents")[
                0]["n"] + len(waiting) == 20
            assert len(waiting) >= 19, f"only {len(waiting)} of 20 files still waiting"
            filler.unlink()
            freed_at = time.monotonic()
            wait_all_processed(db_url, inbox, 20, 20, alive=daemon.assert_alive)
            resumed = time.monotonic() - freed_at
            wait_for(lambda: log_events(daemon.log(), "recovered"), 10, "a recovered event")
            # Nearly full: the daemon's small probe file fits, a 300 KB document does not.
            # That must still be reported (once more: after recovering, degraded again).
            size = fill(filler)
            os.truncate(filler, size - 64 * 1024)
            data = b"a document larger than the space left\n" * 8000
            (inbox / "large.txt").write_bytes(data)
            dropped["large.txt"] = sha(data)
            wait_for(lambda: len(log_events(daemon.log(), "degraded")) >= 2, 25,
                     "a second degraded event while the probe passes", alive=daemon.assert_alive)
            assert (inbox / "large.txt").exists() or claimed_files(inbox) == ["large.txt"] \
                or any(p.endswith("/large.txt") for p in claimed_files(inbox))
            assert not list(failed.rglob("*"))
            filler.unlink()
            wait_all_processed(db_url, inbox, 21, 20, alive=daemon.assert_alive)
            wait_for(lambda: len(log_events(daemon.log(), "recovered")) >= 2, 10,
                     "a second recovered event")
            assert daemon.stop() == 0
        finally:
            if daemon.proc is not None and daemon.proc.poll() is None:
                daemon.kill()
        verify_archive(db_url, config, dropped)
        print(f"\ndisk full: 20 files waited, all stored {resumed:.1f} s after space returned")


@pytest.mark.timeout(90)
def test_a_surviving_daemon_adopts_the_claims_of_one_that_died(
    tmp_path: Path, db_url: str
) -> None:
    """Two daemons; one is killed mid-ingest and never restarted. The survivor finds the dead
    one's claim directory (its lock is free) and finishes those files too."""
    config = fault_config(tmp_path, db_url, watch={"rescan_interval": 3},
                          store={"fsync": False})
    inbox = tmp_path / "inbox"
    survivor = DaemonProcess(config, tmp_path / "survivor.log").start()
    victim = CrashingDaemon(config, tmp_path / "victim.log",
                            "alfrd_daemon.ingest.store:Store.adopt", 5, "after").start()
    try:
        survivor.wait_started()
        victim.wait_started()
        dropper = Dropper(inbox, 400, subdirs=2, seed=4).start()
        dropper.join()
        assert victim.proc is not None
        victim.proc.wait(60)
        assert victim.proc.returncode == -9
        wait_all_processed(db_url, inbox, 400, 40, alive=survivor.assert_alive)
        assert "event=adopted" in survivor.log()
        assert survivor.stop() == 0
    finally:
        for d in (survivor, victim):
            if d.proc is not None and d.proc.poll() is None:
                d.kill()
    verify_archive(db_url, config, dropper.dropped)


def test_a_starting_daemon_is_never_taken_for_dead(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Daemons starting together: one that looks at the claim area while another is creating
    its claim directory must find that directory's lock already held, or it would adopt (and
    remove) a live daemon's claim directory."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    other = ClaimArea(inbox, "other-daemon")
    seen: list[list[str]] = []
    real_mkdir = Path.mkdir

    def mkdir_then_look(self: Path, *args: object, **kwargs: object) -> None:
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]
        if self.name == "starting-daemon":
            seen.append([p.name for p in other.dead_instances()])

    monkeypatch.setattr(Path, "mkdir", mkdir_then_look)
    starting = ClaimArea(inbox, "starting-daemon")
    starting.open()
    monkeypatch.undo()
    try:
        assert seen, "the claim directory was not created"
        assert all("starting-daemon" not in names for names in seen), seen
    finally:
        starting.close()
