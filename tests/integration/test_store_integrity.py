"""The store is immutable: what is stored is exactly what was hashed, whatever any other
process does with the original; and a file someone still writes is never cut short.

Real files, real inotify and polling, real PostgreSQL, the real daemon in a subprocess."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from alfrd_daemon.ingest.store import Store
from alfrd_daemon.ingest.writers import ignore_lease_breaks, writer_open
from tests.helpers import DaemonProcess, claimed_files, inbox_files, query
from tests.integration.faultkit import FaultDaemon, fault_config, sha, sha_file, wait_until
from tests.samples import write_folder_document

pytestmark = pytest.mark.timeout(90)


def documents(db_url: str) -> list[dict[str, Any]]:
    return query(db_url, "SELECT id, sha256, status, stored_path, size_bytes, error, "
                         "original_name, tags, metadata FROM documents ORDER BY created_at")


def assert_store_matches_rows(db_url: str, store: Path) -> None:
    """Every stored file holds exactly the bytes its row's sha256 names."""
    for row in documents(db_url):
        if row["status"] == "failed":
            continue
        path = store / row["stored_path"]
        assert sha_file(path) == row["sha256"], f"{path}: stored bytes differ from the sha256"
        assert os.stat(path).st_nlink == 1, f"{path} shares its inode with another name"


# --- the parts, in this process ------------------------------------------------------------------
def test_a_stored_file_is_a_private_copy_of_the_bytes_hashed(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.open()
    original = tmp_path / "original.txt"
    original.write_bytes(b"version one")
    with open(original, "rb") as src:
        incoming = store.receive(src.fileno(), limit=1 << 20, sync=True)
    rel = store.adopt(incoming, sync=True)
    stored = store.root / rel
    assert incoming.sha256 == sha(b"version one") and incoming.size == 11
    assert not os.path.samefile(stored, original)
    with open(original, "r+b") as f:  # a writer that kept the original open goes on
        f.write(b"VERSION TWO, longer")
    assert stored.read_bytes() == b"version one"
    assert not list(store.root.glob(".incoming-*")), "temporary copies left behind"


def test_a_second_copy_of_stored_content_is_dropped_and_a_torn_one_replaced(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.open()
    src = tmp_path / "a.txt"
    src.write_bytes(b"same content")
    first, _ = store.put_file(src, limit=1 << 20)
    again, _ = store.put_file(src, limit=1 << 20)
    assert first == again
    torn = store.root / first
    for leftover in (b"", b"\0" * len(b"same content")):
        torn.write_bytes(leftover)  # what a crash before the flush can leave under the name
        store.put_file(src, limit=1 << 20)
        assert torn.read_bytes() == b"same content"
    assert not list(store.root.glob(".incoming-*"))


def test_numbered_temporaries_skip_a_leftover_name_and_a_removed_folder_is_made_again(
        tmp_path: Path) -> None:
    """The daemon's temporary copies are numbered after its instance id; a name a crashed
    process of the same id left is never reused (O_EXCL). The fan-out folders it made are
    remembered, and one removed since (by hand, or by another host) is made again."""
    instance = "host-123-abcdef"
    store = Store(tmp_path / "store", instance=instance)
    store.open()
    leftover = store.root / f".incoming-{instance}.0"
    leftover.write_bytes(b"a crashed process's half copy")
    src = tmp_path / "a.txt"
    src.write_bytes(b"first")
    first, incoming = store.put_file(src, limit=1 << 20)
    assert incoming.path != leftover and incoming.path.name.startswith(f".incoming-{instance}.")
    assert leftover.read_bytes() == b"a crashed process's half copy"
    assert (store.root / first).read_bytes() == b"first"
    (store.root / first).unlink()
    (store.root / first).parent.rmdir()
    again, _ = store.put_file(src, limit=1 << 20)
    assert again == first and (store.root / again).read_bytes() == b"first"
    assert sorted(p.name for p in store.root.glob(".incoming-*")) == [leftover.name]


def test_one_folder_level_and_content_stored_in_the_older_layout_stays_put(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.open()
    src = tmp_path / "a.txt"
    src.write_bytes(b"new content")
    rel, _ = store.put_file(src, limit=1 << 20)
    digest = sha(b"new content")
    assert rel == f"{digest[:2]}/{digest}"
    # A store written before 2026-12 held its files at ab/cd/<sha256>.
    older = tmp_path / "older.txt"
    older.write_bytes(b"stored long ago")
    digest = sha(b"stored long ago")
    nested = store.root / digest[:2] / digest[2:4] / digest
    nested.parent.mkdir(parents=True)
    nested.write_bytes(b"stored long ago")
    rel, _ = store.put_file(older, limit=1 << 20)
    assert rel == f"{digest[:2]}/{digest[2:4]}/{digest}"
    assert not (store.root / digest[:2] / digest).exists(), "a second copy of stored content"
    nested.write_bytes(b"")  # torn, and its row points here: repaired in place
    rel, _ = store.put_file(older, limit=1 << 20)
    assert rel == f"{digest[:2]}/{digest[2:4]}/{digest}"
    assert nested.read_bytes() == b"stored long ago"
    assert not (store.root / digest[:2] / digest).exists()
    assert not list(store.root.glob(".incoming-*"))


def test_the_kernel_tells_whether_a_writer_has_a_file_open(tmp_path: Path) -> None:
    assert ignore_lease_breaks(), "pytest runs tests in the main thread"
    path = tmp_path / "f.txt"
    path.write_bytes(b"x")

    def ask() -> bool | None:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            return writer_open(fd)
        finally:
            os.close(fd)

    assert ask() is False
    with open(path, "ab"):
        assert ask() is True
    with open(path, "rb"):
        assert ask() is False  # readers do not count
    assert ask() is False


# --- the daemon ----------------------------------------------------------------------------------
def two_handles(path: Path, v1: bytes, v2: bytes, between: Any) -> None:
    """A program that opens a file twice: writes v1 through one handle and closes it (inotify
    reports close-after-write), then truncates and writes v2 through the other."""
    a = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    b = os.open(path, os.O_WRONLY)
    os.write(a, v1)
    os.close(a)
    try:
        between()
        os.ftruncate(b, 0)
        os.pwrite(b, v2, 0)
    finally:
        os.close(b)


def test_a_writer_still_holding_the_file_keeps_it_unclaimed(tmp_path: Path,
                                                            db_url: str) -> None:
    """inotify + leases: after v1's close the second handle is still open, so the daemon
    leaves the file alone; v2 alone becomes the document, and its stored bytes are v2."""
    config = fault_config(tmp_path, db_url, logging={"level": "DEBUG"})
    inbox = tmp_path / "inbox"
    v1, v2 = b"first version " * 50, b"second, final version " * 80
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        def daemon_saw_the_writer() -> None:
            wait_until(lambda: "still open for writing" in daemon.log() or documents(db_url),
                       20, lambda: f"the daemon to look at the file:\n{daemon.log()[-2000:]}",
                       alive=daemon.assert_alive)

        two_handles(inbox / "letter.txt", v1, v2, daemon_saw_the_writer)
        wait_until(lambda: not inbox_files(inbox) and not claimed_files(inbox)
                   and documents(db_url), 30, lambda: daemon.log()[-3000:],
                   alive=daemon.assert_alive)
        rows = documents(db_url)
        assert [r["sha256"] for r in rows] == [sha(v2)], "a version other than the final one"
        assert_store_matches_rows(db_url, tmp_path / "var" / "store")


def test_a_file_changed_after_its_read_is_ingested_again(tmp_path: Path, db_url: str) -> None:
    """Without leases (NFS, no CAP_LEASE) v1 is read and committed; v2 lands in the claimed
    file before it is released. The stored v1 must stay v1, and v2 becomes a second document,
    never dropped. The daemon is paused once v1's row is committed (where it logs the
    outcome, just before the release) to hit that window."""
    config = fault_config(tmp_path, db_url, watch={"lease_check": False},
                          workers={"count": 1})
    inbox, flags = tmp_path / "inbox", tmp_path / "flags"
    flags.mkdir()
    v1, v2 = b"draft of the letter " * 40, b"the letter as it was sent " * 60
    daemon = FaultDaemon(config, tmp_path / "daemon.log",
                         ["alfrd_daemon.ingest.rows:log_outcome", "pause",
                          str(flags)])
    with daemon:
        def wait_paused() -> None:
            wait_until(lambda: (flags / "paused").exists(), 20,
                       lambda: daemon.log()[-3000:], alive=daemon.assert_alive)

        two_handles(inbox / "letter.txt", v1, v2, wait_paused)
        (flags / "go").touch()
        wait_until(lambda: len(documents(db_url)) == 2 and not claimed_files(inbox), 30,
                   lambda: f"{documents(db_url)}\n{daemon.log()[-3000:]}",
                   alive=daemon.assert_alive)
        assert "changed_after_read" in daemon.log()
    assert {r["sha256"] for r in documents(db_url)} == {sha(v1), sha(v2)}
    assert not inbox_files(inbox)
    assert_store_matches_rows(db_url, tmp_path / "var" / "store")


def test_polling_waits_for_a_slow_appender_by_the_files_own_mtime(tmp_path: Path,
                                                                  db_url: str) -> None:
    """Polling (what auto picks on NFS/SMB): a writer that opens, appends and closes a chunk
    every 0.7 s. The old rule counted the settle time from when a poll noticed the file and
    claimed a prefix; the rest then became another file. One whole document, nothing else."""
    # The default poll interval (2 s): a poll notices the file long after it began.
    config = fault_config(tmp_path, db_url, watch={"mode": "polling", "poll_interval": 2.0,
                                                   "settle_seconds": 1.0})
    inbox = tmp_path / "inbox"
    chunks = [f"page {i} of a scan over SMB\n".encode() * 30 for i in range(12)]
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        for chunk in chunks:
            with open(inbox / "scan.txt", "ab") as f:
                f.write(chunk)
            time.sleep(0.7)  # the writer's pace: what this test is about, not a wait
        wait_until(lambda: not inbox_files(inbox) and not claimed_files(inbox)
                   and documents(db_url), 30, lambda: daemon.log()[-3000:],
                   alive=daemon.assert_alive)
        daemon.assert_alive()
    rows = documents(db_url)
    assert [r["sha256"] for r in rows] == [sha(b"".join(chunks))], [r["size_bytes"] for r in rows]
    assert_store_matches_rows(db_url, tmp_path / "var" / "store")


def test_nul_characters_in_a_folder_documents_metadata_do_not_wedge_it(
        tmp_path: Path, db_url: str) -> None:
    """PostgreSQL's JSONB and text refuse NUL: once this looped for ever as a transient error,
    pausing intake. Cleaned in one place, the folder becomes a document and the rest flows."""
    config = fault_config(tmp_path, db_url)
    inbox = tmp_path / "inbox"
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        folder = inbox / "scans" / "doc1"
        write_folder_document(folder, "5b2f8a4e-0000-4000-8000-000000000001",
                              {"p1.txt": b"page one of the scan"}, ["a\u0000tag"])
        meta = json.loads((folder / "meta.json").read_text())
        meta["metadata"]["note"] = "nul \u0000 inside"
        meta["metadata"]["nested"] = {"k\u0000ey": ["\u0000", 1.5]}
        (folder / "meta.json").write_text(json.dumps(meta))
        (inbox / "after.txt").write_bytes(b"a plain file dropped after it")
        wait_until(lambda: len(documents(db_url)) == 2 and not inbox_files(inbox)
                   and not claimed_files(inbox), 30, lambda: daemon.log()[-3000:],
                   alive=daemon.assert_alive)
        log = daemon.log()
    assert "degraded" not in log and "unexpected error" not in log, log[-3000:]
    folder_row = next(r for r in documents(db_url) if r["original_name"] == "doc1")
    assert folder_row["status"] != "failed", folder_row["error"]
    assert "atag" in folder_row["tags"]
    assert folder_row["metadata"]["folder"]["extra"]["note"] == "nul  inside"


def test_a_file_that_keeps_raising_internal_errors_goes_to_failed(tmp_path: Path,
                                                                  db_url: str) -> None:
    """A bug that hits one file: retried a few times without pausing intake, then filed under
    failed/ with the error as its reason; the files around it are ingested."""
    config = fault_config(tmp_path, db_url, workers={"retry_initial": 0.1, "retry_max": 0.3})
    inbox = tmp_path / "inbox"
    daemon = FaultDaemon(config, tmp_path / "daemon.log",
                         ["alfrd_daemon.ingest.rows:RowBuilder.prepare", "raise-if", "poison"])
    with daemon:
        (inbox / "poison.txt").write_bytes(b"this file trips a bug")
        for i in range(5):
            (inbox / f"fine{i}.txt").write_bytes(f"an ordinary file {i}".encode())
        failed = tmp_path / "var" / "failed"
        wait_until(lambda: (failed / "poison.txt.error").exists()
                   and len(documents(db_url)) == 6 and not inbox_files(inbox), 30,
                   lambda: daemon.log()[-3000:], alive=daemon.assert_alive)
        log = daemon.log()
    note = json.loads((failed / "poison.txt.error").read_text())
    assert note["reason"].startswith("internal error (3 times): RuntimeError: injected fault")
    assert (failed / "poison.txt").read_bytes() == b"this file trips a bug"
    rows = {r["original_name"]: r for r in documents(db_url)}
    assert rows["poison.txt"]["status"] == "failed"
    assert all(rows[f"fine{i}.txt"]["status"] == "extracted" for i in range(5))
    assert "degraded" not in log, "an internal error paused intake"
