"""The raw inotify source, on real folders with the real kernel: what readiness needs, and
nothing for our own reads, copies and claim renames."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from alfrd_daemon.ingest.inotify_source import InotifySource
from alfrd_daemon.ingest.signals import Kind, Signal
from alfrd_daemon.ingest.watch import watching

pytestmark = pytest.mark.timeout(30)


class Collected:
    def __init__(self) -> None:
        self.q: queue.SimpleQueue[Signal] = queue.SimpleQueue()
        self.seen: list[Signal] = []
        self.overflows = 0

    def wait(self, kind: Kind, relpath: str, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while Signal(kind, relpath) not in self.seen:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind.value} for {relpath}; saw {self.seen}")
            try:
                self.seen.append(self.q.get(timeout=left))
            except queue.Empty:
                continue

    def drain(self) -> list[Signal]:
        while True:
            try:
                self.seen.append(self.q.get_nowait())
            except queue.Empty:
                return self.seen


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    path = tmp_path / "inbox"
    (path / ".alfrd" / "claimed" / "me").mkdir(parents=True)
    return path


def start(inbox: Path, got: Collected, recursive: bool = True) -> InotifySource:
    source = InotifySource(
        inbox, got.q.put, recursive=recursive,
        skip_dir=lambda rel: rel.split("/")[-1].startswith("."),
        on_overflow=lambda: setattr(got, "overflows", got.overflows + 1))
    source.start()
    return source


@pytest.fixture
def got() -> Iterator[Collected]:
    yield Collected()


def test_a_written_file_gives_created_modified_closed(inbox: Path, got: Collected) -> None:
    source = start(inbox, got)
    try:
        with open(inbox / "bill.txt", "wb") as f:
            f.write(b"electricity")
        got.wait(Kind.CLOSED, "bill.txt")
        assert [s.kind for s in got.seen if s.relpath == "bill.txt"] == [
            Kind.CREATED, Kind.MODIFIED, Kind.CLOSED]
    finally:
        source.stop()
        source.join(5)
    assert not source.is_alive()


def test_a_file_renamed_in_is_moved_in_at_once(inbox: Path, got: Collected,
                                               tmp_path: Path) -> None:
    outside = tmp_path / "outside.pdf"
    outside.write_bytes(b"%PDF-1.4")
    source = start(inbox, got)
    try:
        began = time.monotonic()
        os.rename(outside, inbox / "scan.pdf")
        got.wait(Kind.MOVED_IN, "scan.pdf")
        # No pairing delay (watchdog's observer holds unpaired moves for 0.5 s).
        assert time.monotonic() - began < 0.4
    finally:
        source.stop()


def test_our_own_reads_and_claim_renames_raise_nothing(inbox: Path, got: Collected) -> None:
    (inbox / "a.txt").write_bytes(b"already there")
    source = start(inbox, got)
    try:
        with open(inbox / "a.txt", "rb") as f:  # hashing, copying, extracting: reads only
            f.read()
        os.rename(inbox / "a.txt", inbox / ".alfrd" / "claimed" / "me" / "a.txt")
        (inbox / ".alfrd" / "claimed" / "me" / "a.txt").unlink()
        (inbox / "marker.txt").write_bytes(b"x")  # proves the queue is read up to here
        got.wait(Kind.CLOSED, "marker.txt")
        assert {s.relpath for s in got.drain()} == {"marker.txt"}
    finally:
        source.stop()


def test_new_folders_are_watched_before_they_are_announced(inbox: Path, got: Collected,
                                                           tmp_path: Path) -> None:
    source = start(inbox, got)
    try:
        (inbox / "scans").mkdir()
        got.wait(Kind.DIR_APPEARED, "scans")
        (inbox / "scans" / "p1.pdf").write_bytes(b"page")
        got.wait(Kind.CLOSED, "scans/p1.pdf")
        tree = tmp_path / "tree"
        (tree / "2024" / "march").mkdir(parents=True)
        shutil.move(str(tree), str(inbox / "bills"))  # a whole tree moved in at once
        got.wait(Kind.DIR_APPEARED, "bills")
        (inbox / "bills" / "2024" / "march" / "gas.txt").write_bytes(b"gas")
        got.wait(Kind.CLOSED, "bills/2024/march/gas.txt")
        (inbox / ".hidden").mkdir()
        (inbox / ".hidden" / "x.txt").write_bytes(b"x")
        (inbox / "last.txt").write_bytes(b"x")
        got.wait(Kind.CLOSED, "last.txt")
        assert not [s for s in got.drain() if s.relpath.startswith(".hidden")]
    finally:
        source.stop()


def test_a_folder_renamed_within_the_inbox_reports_its_new_name(inbox: Path,
                                                                got: Collected) -> None:
    (inbox / "old" / "deep").mkdir(parents=True)
    source = start(inbox, got)
    try:
        os.rename(inbox / "old", inbox / "new")
        got.wait(Kind.DIR_APPEARED, "new")
        (inbox / "new" / "deep" / "f.txt").write_bytes(b"f")
        got.wait(Kind.CLOSED, "new/deep/f.txt")
    finally:
        source.stop()


def test_without_recursion_only_the_top_folder_is_watched(inbox: Path, got: Collected) -> None:
    (inbox / "sub").mkdir()
    source = start(inbox, got, recursive=False)
    try:
        assert source.watched_folders == 1
        (inbox / "sub" / "x.txt").write_bytes(b"x")
        (inbox / "top.txt").write_bytes(b"x")
        got.wait(Kind.CLOSED, "top.txt")
        assert not [s for s in got.drain() if s.relpath.startswith("sub/")]
    finally:
        source.stop()


def test_a_deleted_inbox_is_noticed(inbox: Path, got: Collected) -> None:
    source = start(inbox, got)
    try:
        shutil.rmtree(inbox)
        deadline = time.monotonic() + 5
        while watching(source) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not watching(source), "the source still claims to watch a deleted inbox"
        assert source.is_alive(), "its thread goes on: a re-arm replaces it"
    finally:
        source.stop()


MAX_QUEUED = Path("/proc/sys/fs/inotify/max_queued_events")


def start_with_a_tiny_kernel_queue(inbox: Path, got: Collected) -> InotifySource:
    """The kernel reads max_queued_events when an inotify instance is created, so lowering it
    just for this start gives only this source a queue of 4 events; it is put back at once."""
    try:
        normal = MAX_QUEUED.read_text()
        MAX_QUEUED.write_text("4")
    except OSError as exc:
        pytest.skip(f"cannot lower {MAX_QUEUED} here ({exc}): an overflow needs a small queue")
    try:
        return start(inbox, got)
    finally:
        MAX_QUEUED.write_text(normal)


BURST = """
import os
for i in range(200):
    open(f"a{i}", "w").close()
    os.mkdir(f"d{i}")
    open(f"b{i}", "w").close()
"""


def test_an_overflowed_queue_asks_for_a_scan_and_watches_the_folders_it_missed(
        inbox: Path, got: Collected) -> None:
    source = start_with_a_tiny_kernel_queue(inbox, got)
    try:
        # Another process changes the inbox while this thread keeps the interpreter busy, so
        # the source's reader gets its turn only every switch interval and a queue of 4 events
        # overflows: creation events of folders made in the burst are lost with the rest.
        burst = subprocess.Popen([sys.executable, "-c", BURST], cwd=inbox)
        while burst.poll() is None:
            sum(range(100_000))
        assert burst.returncode == 0
        # Events are dispatched in order: once a file written after the burst is seen, every
        # overflow of the burst has been handled. A marker can be lost to a full queue too.
        for attempt in range(50):
            (inbox / f"marker{attempt}").write_bytes(b"")
            try:
                got.wait(Kind.CLOSED, f"marker{attempt}", timeout=0.2)
                break
            except AssertionError:
                continue
        assert got.overflows > 0, "no overflow of a queue of 4 reached on_overflow"
        lost = [i for i in range(200) if Signal(Kind.DIR_APPEARED, f"d{i}") not in got.drain()]
        assert lost, "every folder's creation came through: the burst tests nothing"
        for i in lost:  # one at a time: a file's three events fit the queue of 4
            with open(inbox / f"d{i}" / "after.txt", "wb") as f:
                f.write(b"written after the overflow")
            got.wait(Kind.CLOSED, f"d{i}/after.txt")
    finally:
        source.stop()
        source.join(5)
