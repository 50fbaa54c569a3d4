"""Hostile and odd input: each case ends as one document or in failed/ with a clear reason,
nothing is lost, nothing outside the inbox is read, and the daemon keeps flowing.

Most cases share one running daemon (each test drops into its own subfolder and checks only
that); cases that need their own settings or their own measurements start their own."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import stat
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfWriter

from alfrd_daemon.ingest.reconcile import undisplay
from alfrd_daemon.pgsafe import display_text
from tests.conftest import RUN_PREFIX, create_database, drop_database
from tests.helpers import DaemonProcess, claimed_files, query, wait_for
from tests.integration.faultkit import (
    PrefixedDaemon,
    fault_config,
    sha,
    verify_archive,
    vm_hwm_kib,
    wait_all_processed,
    wait_until,
)
from tests.samples import make_pdf, write_folder_document

pytestmark = pytest.mark.timeout(90)

SYMLINK_REASON = "symbolic link (links are never followed)"


@dataclass
class Shared:
    """One daemon for many cases; each case lives in inbox/<case>/."""

    config: Path
    db_url: str
    inbox: Path
    failed: Path
    store: Path
    daemon: DaemonProcess

    def folder(self, case: str) -> Path:
        path = self.inbox / case
        path.mkdir()
        return path

    def pending(self, case: str) -> list[str]:
        left = [str(p) for p in (self.inbox / case).rglob("*")
                if not p.is_dir() or p.is_symlink()]
        # claimed_files() names <instance>/<relative path>
        claimed = [c.partition("/")[2] for c in claimed_files(self.inbox)]
        return left + [c for c in claimed if c.startswith(case + "/")]

    def arrivals(self, case: str) -> list[dict[str, Any]]:
        return query(self.db_url,
                     "SELECT a.source_path, a.original_name AS arrival_name, a.outcome, "
                     "d.id, d.sha256, d.status, d.error, d.original_name, d.tags, "
                     "d.stored_path, d.size_bytes FROM document_arrivals a "
                     "JOIN documents d ON d.id = a.document_id "
                     "WHERE a.source_path LIKE %s ORDER BY a.id", (case + "/%",))

    def wait(self, case: str, expected: int, timeout: float = 30) -> dict[str, dict[str, Any]]:
        """Until the case's files all left the inbox and claim area and have `expected`
        arrivals; returns them by source path (exactly one each)."""
        wait_until(lambda: not self.pending(case) and len(self.arrivals(case)) >= expected,
                   timeout, lambda: f"{case}: {expected} arrivals (pending "
                   f"{self.pending(case)[:5]}, arrivals {len(self.arrivals(case))})",
                   alive=self.daemon.assert_alive)
        rows = self.arrivals(case)
        by_path = {r["source_path"]: r for r in rows}
        assert len(by_path) == len(rows) == expected, [r["source_path"] for r in rows]
        return by_path

    def note(self, source_path: str) -> dict[str, Any]:
        """The failure note for a source path; its file must be beside it."""
        for path in self.failed.rglob("*.error"):
            body = json.loads(path.read_text())
            if body["source_path"] == source_path:
                name = body["failed_path"]
                assert os.path.lexists(self.failed / name) or os.path.lexists(
                    self.failed / undisplay(name)), f"note without file: {body}"
                return body
        raise AssertionError(f"no failure note for {source_path!r}")

    def assert_healthy(self) -> None:
        self.daemon.assert_alive()
        log = self.daemon.log()
        assert "Traceback" not in log and "unexpected error" not in log, log[-4000:]


@pytest.fixture(scope="module")
def shared(pg_admin: str, template_db: str, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[Shared]:
    tmp = tmp_path_factory.mktemp("hostile")
    name = f"{RUN_PREFIX}_hostile_{secrets.token_hex(3)}"
    db_url = create_database(pg_admin, name, template=template_db)
    config = fault_config(tmp, db_url, workers={"max_file_size": "10MB"},
                          extract={"max_pdf_pages": 50, "timeout_seconds": 10})
    daemon = DaemonProcess(config, tmp / "daemon.log").start()
    try:
        daemon.wait_started()
        yield Shared(config, db_url, tmp / "inbox", tmp / "var" / "failed",
                     tmp / "var" / "store", daemon)
        assert daemon.stop() == 0
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()
        drop_database(pg_admin, name)


def control(case_dir: Path) -> bytes:
    """A healthy file dropped with every hostile one: it must flow regardless."""
    data = f"healthy control document for {case_dir.name} {secrets.token_hex(4)}".encode()
    (case_dir / "control.txt").write_bytes(data)
    return data


# --- sizes ---------------------------------------------------------------------------------------
def test_zero_byte_file_fails_with_reason(shared: Shared) -> None:
    d = shared.folder("empty")
    (d / "zero.pdf").write_bytes(b"")
    data = control(d)
    rows = shared.wait("empty", 2)
    assert rows["empty/zero.pdf"]["status"] == "failed"
    assert shared.note("empty/zero.pdf")["reason"] == "empty file (0 bytes)"
    assert rows["empty/control.txt"]["sha256"] == sha(data)
    shared.assert_healthy()


def test_file_over_max_file_size_fails_unread(shared: Shared) -> None:
    d = shared.folder("toolarge")
    with open(d / "huge.bin", "wb") as f:
        f.truncate(20 * 1024 * 1024)  # sparse, twice workers.max_file_size
    control(d)
    rows = shared.wait("toolarge", 2)
    reason = shared.note("toolarge/huge.bin")["reason"]
    assert reason.startswith("too large: 20971520 bytes") and "max_file_size" in reason
    assert rows["toolarge/huge.bin"]["sha256"] is None  # refused before reading
    shared.assert_healthy()


@pytest.mark.timeout(120)
def test_big_sparse_files_hash_in_flat_memory(tmp_path: Path, db_url: str) -> None:
    """300 MB and 1 GB files are hashed as a stream: the daemon's peak RSS (VmHWM) does not
    grow with them; a file over the limit is refused without being read."""
    config = fault_config(tmp_path, db_url, workers={"max_file_size": "1GiB"})
    inbox = tmp_path / "inbox"
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        assert daemon.proc is not None
        pid = daemon.proc.pid
        (inbox / "small.bin").write_bytes(b"\x01" * 4096)
        wait_all_processed(db_url, inbox, 1, 30, alive=daemon.assert_alive)
        baseline = vm_hwm_kib(pid)
        sizes = {"300MB.bin": 300 * 1000**2, "1GB.bin": 1000**3, "1.5GB.bin": 1500 * 1000**2}
        peaks = {}
        for n, (name, size) in enumerate(sizes.items(), start=2):
            with open(inbox / name, "wb") as f:
                f.seek(size - 1)
                f.write(b"\x01")  # sparse: takes no disk, reads as zeros
            wait_all_processed(db_url, inbox, n, 60, alive=daemon.assert_alive)
            peaks[name] = vm_hwm_kib(pid)
    rows = {r["original_name"]: r for r in query(
        db_url, "SELECT original_name, status, size_bytes, error FROM documents")}
    assert rows["300MB.bin"]["status"] == "pending" and rows["300MB.bin"]["size_bytes"] == \
        300 * 1000**2
    assert rows["1GB.bin"]["status"] == "pending" and rows["1GB.bin"]["size_bytes"] == 1000**3
    assert rows["1.5GB.bin"]["status"] == "failed" and "too large" in rows["1.5GB.bin"]["error"]
    growth = max(peaks.values()) - baseline
    print(f"\nVmHWM: {baseline / 1024:.0f} MiB after a 4 KB file; "
          + ", ".join(f"{k} {v / 1024:.0f} MiB" for k, v in peaks.items()))
    assert growth < 32 * 1024, f"peak RSS grew by {growth / 1024:.0f} MiB hashing big files"


# --- timing --------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_growing_file_is_not_claimed_until_written_whole(shared: Shared) -> None:
    d = shared.folder("growing")
    path = d / "scan.txt"
    chunks = []
    with open(path, "wb") as out:
        for i in range(30):  # 15 s of writing, a chunk every half second
            chunk = f"line {i} of a slow scanner\n".encode() * 100
            out.write(chunk)
            out.flush()
            chunks.append(chunk)
            time.sleep(0.5)
            assert path.exists(), f"claimed while still being written (after {i + 1} chunks)"
    rows = shared.wait("growing", 1)
    whole = b"".join(chunks)
    assert rows["growing/scan.txt"]["sha256"] == sha(whole)
    assert rows["growing/scan.txt"]["size_bytes"] == len(whole)
    shared.assert_healthy()


def test_files_deleted_or_renamed_before_the_claim(shared: Shared) -> None:
    d = shared.folder("vanishing")
    kept = {}
    for i in range(40):
        data = f"short-lived file {i}".encode()
        (d / f"tmp{i}.txt").write_bytes(data)
        time.sleep((i % 8) * 0.01)  # around the readiness delay (quiet_seconds 0.05)
        if i % 2:
            (d / f"tmp{i}.txt").unlink()
        else:
            os.rename(d / f"tmp{i}.txt", d / f"final{i}.txt")
            kept[f"vanishing/final{i}.txt"] = sha(data)
    rows = shared.wait("vanishing", len(kept))
    assert {p: r["sha256"] for p, r in rows.items()} == kept
    assert not (shared.failed / "vanishing").exists(), "a vanished file was reported failed"
    shared.assert_healthy()


def test_same_name_dropped_again_while_the_first_is_claimed(shared: Shared) -> None:
    d = shared.folder("replaced")
    versions = []
    for i in range(12):
        data = f"version {i} of the same name".encode()
        (d / "same.txt").write_bytes(data)
        versions.append(sha(data))
        # The next version lands as soon as this one left the inbox: often while it is still
        # claimed (being hashed, stored or committed) under the same relative path.
        wait_for(lambda: not (d / "same.txt").exists(), 10, "claimed",
                 alive=shared.daemon.assert_alive, interval=0.005)
    wait_for(lambda: len(shared.arrivals("replaced")) == 12 and not shared.pending("replaced"),
             30, "twelve arrivals", alive=shared.daemon.assert_alive)
    rows = shared.arrivals("replaced")
    assert sorted(r["sha256"] for r in rows) == sorted(versions)
    assert all(r["status"] == "extracted" for r in rows)
    shared.assert_healthy()


# --- not regular files ---------------------------------------------------------------------------
def test_fifo_socket_and_device_are_refused_unopened(shared: Shared) -> None:
    d = shared.folder("special")
    os.mkfifo(d / "pipe")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(d / "sock"))
    expected = {"special/pipe": "a FIFO", "special/sock": "a UNIX socket"}
    try:
        if os.geteuid() == 0:
            # /dev/zero's numbers: read, it would never end (and hit the size limit instead).
            os.mknod(d / "zero", 0o600 | stat.S_IFCHR, os.makedev(1, 5))
            expected["special/zero"] = "a character device"
        data = control(d)
        rows = shared.wait("special", len(expected) + 1)
    finally:
        sock.close()
    for path, kind in expected.items():
        reason = shared.note(path)["reason"]
        assert reason == f"{kind}: only regular files are ingested", reason
        assert rows[path]["status"] == "failed" and rows[path]["sha256"] is None
    assert rows["special/control.txt"]["sha256"] == sha(data)
    assert stat.S_ISFIFO(os.lstat(shared.failed / "special" / "pipe").st_mode)
    if os.geteuid() != 0:
        print("\nnot root: the character-device case was not run (mknod needs root)")
    shared.assert_healthy()


def test_symlinks_are_never_followed(shared: Shared, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("outside the inbox: must never be read")
    outside_dir = tmp_path / "secret_dir"
    outside_dir.mkdir()
    (outside_dir / "deep.txt").write_text("inside a directory outside the inbox")
    d = shared.folder("links")
    data = control(d)
    (d / "target.txt").write_text("a real file inside the inbox")
    os.symlink(d / "target.txt", d / "inside_link.txt")
    os.symlink(outside, d / "outside_link.txt")
    os.symlink(outside_dir, d / "outside_dir_link")
    os.symlink("/etc/passwd", d / "passwd.txt")
    rows = shared.wait("links", 6)
    for link in ("inside_link.txt", "outside_link.txt", "outside_dir_link", "passwd.txt"):
        assert rows[f"links/{link}"]["status"] == "failed"
        assert rows[f"links/{link}"]["sha256"] is None
        assert SYMLINK_REASON in shared.note(f"links/{link}")["reason"]
        assert os.path.islink(shared.failed / "links" / link)  # the link itself moved
    assert rows["links/target.txt"]["status"] == "extracted"
    assert rows["links/control.txt"]["sha256"] == sha(data)
    # Nothing outside was read, moved or ingested.
    assert outside.exists() and (outside_dir / "deep.txt").exists()
    texts = query(shared.db_url, "SELECT count(*) AS n FROM documents WHERE extracted_text "
                                 "LIKE '%outside the inbox%' OR extracted_text LIKE '%root:%'")
    assert texts[0]["n"] == 0
    shared.assert_healthy()


def test_hard_links(shared: Shared, tmp_path: Path) -> None:
    """A hard link from outside the inbox: the archive must not share the inode with the
    user's file (its mode would change, and editing it would change the archive). Two names
    of one inode inside the inbox: one document, two arrivals."""
    outside = tmp_path / "mine.txt"
    outside.write_bytes(b"my own file, also linked into the inbox")
    os.chmod(outside, 0o644)
    d = shared.folder("hardlinks")
    os.link(outside, d / "linked.txt")
    twin = d / "twin_a.txt"
    twin.write_bytes(b"one inode, two names in the inbox")
    os.link(twin, d / "twin_b.txt")
    rows = shared.wait("hardlinks", 3)
    assert rows["hardlinks/linked.txt"]["sha256"] == sha(outside.read_bytes())
    st = os.stat(outside)
    assert stat.S_IMODE(st.st_mode) == 0o644, "ingest changed the mode of the user's file"
    stored = shared.store / rows["hardlinks/linked.txt"]["stored_path"]
    assert not os.path.samefile(stored, outside), "store shares its inode with a user file"
    with open(outside, "ab") as f:
        f.write(b" edited later")
    assert sha(stored.read_bytes()) == rows["hardlinks/linked.txt"]["sha256"]
    a, b = rows["hardlinks/twin_a.txt"], rows["hardlinks/twin_b.txt"]
    assert a["id"] == b["id"] and {a["outcome"], b["outcome"]} == {"ingested", "duplicate"}
    shared.assert_healthy()


# --- shapes and names ----------------------------------------------------------------------------
def test_directory_tree_fifty_levels_deep(shared: Shared) -> None:
    d = shared.folder("deep")
    parts = [f"l{i:02d}" for i in range(50)]
    leaf = d.joinpath(*parts)
    leaf.mkdir(parents=True)
    (leaf / "bottom.txt").write_bytes(b"fifty folders down")
    (leaf / "empty.txt").write_bytes(b"")
    rel = "deep/" + "/".join(parts)
    rows = shared.wait("deep", 2)
    row = rows[f"{rel}/bottom.txt"]
    assert row["status"] == "extracted" and row["tags"] == ["deep", *parts]
    assert shared.note(f"{rel}/empty.txt")["reason"] == "empty file (0 bytes)"
    shared.assert_healthy()


NAMES = {
    "with spaces.txt": "with spaces.txt",
    "-rf.txt": "-rf.txt",
    "--help.pdf": "--help.pdf",
    "line\nbreak.txt": "line\nbreak.txt",
    unicodedata.normalize("NFC", "café.txt"): unicodedata.normalize("NFC", "café.txt"),
    unicodedata.normalize("NFD", "café.txt"): unicodedata.normalize("NFD", "café.txt"),
    os.fsdecode(b"latin1-\xe9t\xe9.txt"): "latin1-\\xe9t\\xe9.txt",
    "x" * 251 + ".txt": "x" * 251 + ".txt",
    "é" * 125 + ".txt": "é" * 125 + ".txt",  # 254 bytes, 129 characters
}


def test_odd_names_are_kept_faithfully(shared: Shared) -> None:
    d = shared.folder("names")
    contents = {}
    for i, name in enumerate(NAMES):
        data = make_pdf([f"pdf number {i} about badgers"]) if name.endswith(".pdf") else (
            f"odd name number {i}".encode())
        (d / name).write_bytes(data)
        contents[name] = data
    rows = shared.wait("names", len(NAMES))
    for name, shown in NAMES.items():
        row = rows[f"names/{shown}"]
        assert row["original_name"] == shown and row["arrival_name"] == shown, (name, row)
        assert row["sha256"] == sha(contents[name]) and row["status"] == "extracted", row
    nfc, nfd = (unicodedata.normalize(f, "café.txt") for f in ("NFC", "NFD"))
    assert nfc != nfd and rows[f"names/{nfc}"]["id"] != rows[f"names/{nfd}"]["id"]
    shared.assert_healthy()


def test_odd_names_that_fail_keep_their_names_in_failed(shared: Shared) -> None:
    """The failed folder adds '.error' (and ' (2)' on a clash) to a name that may already be
    255 bytes long, and writes the name into a JSON note."""
    d = shared.folder("badnames")
    long_name = "y" * 251 + ".pdf"
    invalid = os.fsdecode(b"bad-\xff\xfe.pdf")
    for name in (long_name, invalid):
        (d / name).write_bytes(b"")
    rows = shared.wait("badnames", 2)
    # The same two names again: each failure keeps its own file and note.
    for name in (long_name, invalid):
        (d / name).write_bytes(b"junk, not a pdf")
    wait_for(lambda: len(shared.arrivals("badnames")) == 4 and not shared.pending("badnames"),
             30, "four arrivals", alive=shared.daemon.assert_alive)
    for name in (long_name, invalid):
        shown = f"badnames/{display_text(name)}"
        assert rows[shown]["status"] == "failed"
        notes = [json.loads(p.read_text()) for p in shared.failed.rglob("*.error")]
        mine = [n for n in notes if n["source_path"] == shown]
        assert len(mine) == 2, mine
        for note in mine:
            assert os.path.lexists(shared.failed / undisplay(note["failed_path"])), note
    failed_files = [p for p in (shared.failed / "badnames").iterdir()
                    if not p.name.endswith(".error")]
    assert len(failed_files) == 4
    assert all(len(os.fsencode(p.name)) + len(".error") <= 255 for p in failed_files)
    shared.assert_healthy()


# --- bad content ---------------------------------------------------------------------------------
def test_bad_pdfs_fail_with_reasons(shared: Shared, tmp_path: Path) -> None:
    good = make_pdf(["a fine pdf about river otters"])
    writer = PdfWriter()
    writer.add_blank_page(100, 100)
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    writer.write(tmp_path / "encrypted.pdf")
    d = shared.folder("pdfs")
    (d / "corrupt.pdf").write_bytes(good[: len(good) // 2])
    shutil.copy(tmp_path / "encrypted.pdf", d / "encrypted.pdf")
    (d / "many_pages.pdf").write_bytes(make_pdf([f"page {i}" for i in range(200)]))
    (d / "junk.pdf").write_bytes(os.urandom(4096))
    (d / "fine.pdf").write_bytes(good)
    rows = shared.wait("pdfs", 5)
    reasons = {name: shared.note(f"pdfs/{name}")["reason"] for name in
               ("corrupt.pdf", "encrypted.pdf", "many_pages.pdf", "junk.pdf")}
    assert "PDF" in reasons["corrupt.pdf"], reasons
    assert reasons["encrypted.pdf"] == "encrypted PDF"
    assert reasons["many_pages.pdf"] == "PDF has 200 pages, more than the limit of 50"
    assert reasons["junk.pdf"] == "not a PDF: no %PDF- header"
    assert rows["pdfs/fine.pdf"]["status"] == "extracted"
    shared.assert_healthy()


def test_hostile_meta_json_fails_the_folder(shared: Shared) -> None:
    d = shared.folder("meta")
    folders = {
        "invalid": b"{not json",
        "huge": b'{"pad": "' + b"x" * (1024 * 1024 + 10) + b'"}',
        "escape": json.dumps({"id": "7c9e6679-7425-40de-944b-e07fc1f90ae7", "documents": [
            {"file": "../../etc/passwd", "type": "text", "order": 1}]}).encode(),
        "absolute": json.dumps({"id": "7c9e6679-7425-40de-944b-e07fc1f90ae8", "documents": [
            {"file": "/etc/passwd", "type": "text", "order": 1}]}).encode(),
    }
    for name, meta in folders.items():
        (d / name).mkdir()
        (d / name / "page1.txt").write_text("a page")
        (d / name / "meta.json").write_bytes(meta)
    write_folder_document(d / "good", "7c9e6679-7425-40de-944b-e07fc1f90ae9",
                          {"page1.txt": b"a good folder document"}, ["ok"])
    rows = shared.wait("meta", 5)
    reasons = {name: shared.note(f"meta/{name}")["reason"] for name in folders}
    assert reasons["invalid"].startswith("invalid document folder: meta.json is not valid JSON")
    assert "more than 1048576" in reasons["huge"]
    assert "not a plain file name" in reasons["escape"]
    assert "not a plain file name" in reasons["absolute"]
    for name in folders:
        assert (shared.failed / "meta" / name / "meta.json").exists()  # moved whole
    assert rows["meta/good"]["status"] == "extracted"
    texts = query(shared.db_url, "SELECT count(*) AS n FROM documents "
                                 "WHERE extracted_text LIKE '%root:%'")
    assert texts[0]["n"] == 0
    shared.assert_healthy()


# --- many at once --------------------------------------------------------------------------------
@pytest.mark.timeout(150)
def test_ten_thousand_files_in_one_directory_at_once(tmp_path: Path, db_url: str) -> None:
    """Made elsewhere, then renamed into the inbox in one step: a single directory event for
    10,000 files, more than the tracker holds at once (a backlog found again by scans)."""
    config = fault_config(tmp_path, db_url, workers={"queue_size": 200},
                          store={"fsync": False})
    inbox = tmp_path / "inbox"
    staging = tmp_path / "staging" / "bulk"
    staging.mkdir(parents=True)
    dropped = {}
    for i in range(10_000):
        data = f"bulk document {i}\n".encode()
        (staging / f"b{i:05d}.txt").write_bytes(data)
        dropped[f"bulk/b{i:05d}.txt"] = sha(data)
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        started = time.monotonic()
        os.rename(staging, inbox / "bulk")
        wait_all_processed(db_url, inbox, 10_000, 120, alive=daemon.assert_alive)
        elapsed = time.monotonic() - started
        assert "Traceback" not in daemon.log()
    verify_archive(db_url, config, dropped, run_check=False)
    print(f"\n10,000 files in one directory: {elapsed:.1f} s ({10_000 / elapsed:.0f} files/s)")


# --- permissions ---------------------------------------------------------------------------------
def unprivileged_prefix() -> list[str] | None:
    """Root reads a mode-000 file anyway. Run the daemon as root *without* the capabilities
    that bypass file permissions (setpriv drops them from the bounding set), so the kernel
    applies the mode bits as for any user; as a normal user no prefix is needed."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--"]


def test_unreadable_file_fails_with_reason(tmp_path: Path, db_url: str) -> None:
    prefix = unprivileged_prefix()
    if prefix is None:
        pytest.skip("running as root without setpriv: cannot make a file unreadable to the "
                    "daemon (root bypasses mode 000)")
    config = fault_config(tmp_path, db_url)
    inbox = tmp_path / "inbox"
    locked = inbox / "locked.txt"
    locked.write_bytes(b"nobody may read this")
    os.chmod(locked, 0)
    (inbox / "open.txt").write_bytes(b"anyone may read this")
    daemon = PrefixedDaemon(config, tmp_path / "daemon.log", prefix)
    with daemon:
        wait_all_processed(db_url, inbox, 2, 30, alive=daemon.assert_alive)
    rows = {r["original_name"]: r for r in query(
        db_url, "SELECT original_name, status, error FROM documents")}
    assert rows["open.txt"]["status"] == "extracted"
    assert rows["locked.txt"]["status"] == "failed"
    assert rows["locked.txt"]["error"] == "unreadable: Permission denied"
    note = json.loads((tmp_path / "var" / "failed" / "locked.txt.error").read_text())
    assert note["reason"] == "unreadable: Permission denied"
    assert (tmp_path / "var" / "failed" / "locked.txt").exists()


