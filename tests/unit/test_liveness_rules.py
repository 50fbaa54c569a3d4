"""Liveness decisions and what they rest on: how long a new folder holds its files, whether the
inbox we watch is still the one at its path, whether the watch still runs, and whether our claim
area (with its lock) is still where other daemons look for it."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from alfrd_daemon.ingest.claim import ClaimArea
from alfrd_daemon.ingest.readiness import ReadinessParams
from alfrd_daemon.ingest.signals import Kind, Signal
from alfrd_daemon.ingest.tracker import NewFolder, Tracker, TrackerSettings, folder_quiet_due
from alfrd_daemon.ingest.watch import (
    InboxState,
    directory_identity,
    judge_inbox,
    start_watcher,
    watching,
)
from tests.helpers import lock_is_held, wait_for


def test_a_quiet_new_folder_releases_its_files_after_settle_seconds() -> None:
    folder = NewFolder(appeared=100.0, last_activity=101.0)
    assert folder_quiet_due(folder, settle_seconds=1.0, max_wait=30.0) == 102.0


def test_a_folder_that_never_goes_quiet_is_waited_on_at_most_max_wait() -> None:
    # One event every 0.5 s for ever: quiet never comes, the bound does.
    folder = NewFolder(appeared=100.0, last_activity=100.0)
    for step in range(1, 200):
        folder.last_activity = 100.0 + step * 0.5
        due = folder_quiet_due(folder, settle_seconds=1.0, max_wait=30.0)
        assert due <= 130.0
    assert due == 130.0


def test_tracker_lets_files_trickling_into_a_new_folder_go_after_the_bound(
        tmp_path: Path) -> None:
    settings = TrackerSettings(
        inbox=tmp_path, params=ReadinessParams(settle_seconds=1.0), ignore_files=(),
        ignore_dirs=(), recursive=True, rescan_interval=300, max_tracked=1000,
        retry_initial=1, retry_max=1, folder_quiet_max=5.0)
    tracker = Tracker(settings, submit=lambda _item: True)
    tracker._on_signal(Signal(Kind.DIR_APPEARED, "scans"), 0.0)
    for i in range(40):  # a page every 0.5 s for 20 s
        tracker._on_signal(Signal(Kind.CLOSED, f"scans/page{i}.pdf"), i * 0.5)
        now = i * 0.5
        due = tracker._dir_quiet_due(f"scans/page{i}.pdf", now)
        if now < 5.0:
            assert due > now, "a folder still being filled holds its files for a while"
        else:
            assert due <= now, f"page{i} still held at {now} s, past the 5 s bound"


def test_judge_inbox_tells_watched_missing_and_replaced_apart(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    armed = directory_identity(inbox)
    assert judge_inbox(armed, directory_identity(inbox)) is InboxState.WATCHED
    keep = tmp_path / "old-inbox"
    inbox.rename(keep)  # kept, so the new directory cannot get the same inode number
    assert judge_inbox(armed, directory_identity(inbox)) is InboxState.MISSING
    inbox.write_text("a file where the inbox was")
    assert judge_inbox(armed, directory_identity(inbox)) is InboxState.MISSING
    inbox.unlink()
    inbox.mkdir()
    assert judge_inbox(armed, directory_identity(inbox)) is InboxState.REPLACED


@pytest.mark.parametrize("mode", ["inotify", "polling"])
def test_watching_turns_false_when_the_watched_directory_is_deleted(
        tmp_path: Path, mode: str) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    observer, _mode = start_watcher(mode, inbox, lambda _signal: None, recursive=True,
                                    poll_interval=0.1, skip_dir=lambda _rel: False,
                                    on_overflow=lambda: None)
    try:
        assert watching(observer)
        shutil.rmtree(inbox)
        wait_for(lambda: not watching(observer), 5, "the watch to end")
        assert observer.is_alive(), "the thread goes on: only watching() tells"
    finally:
        observer.stop()
        observer.join(5)
    assert not watching(None)




def test_claim_area_notices_it_was_deleted_and_reopens_with_its_lock(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    claims = ClaimArea(inbox, "host-1-abc")
    claims.open()
    try:
        assert not claims.lost() and lock_is_held(claims.lock_path)
        shutil.rmtree(inbox)
        assert claims.lost()
        with pytest.raises(FileNotFoundError):
            claims.reopen()  # never creates the inbox itself
        assert not inbox.exists()
        inbox.mkdir()
        assert claims.lost()
        claims.reopen()
        assert not claims.lost()
        assert claims.dir.is_dir() and lock_is_held(claims.lock_path)
        # Another daemon looking for dead claim directories must not find ours.
        other = ClaimArea(inbox, "host-2-def")
        other.open()
        assert other.dead_instances() == []
        other.close()
        (inbox / "a.txt").write_text("claimable again")
        assert claims.claim("a.txt") == claims.dir / "a.txt"
    finally:
        claims.close()


def test_a_folder_reported_as_a_moved_file_is_scanned_not_failed(tmp_path: Path) -> None:
    """Polling pairs a new folder that reuses a deleted file's inode with that file and reports
    a file move onto the folder's name. The folder must never become a candidate (its worker
    would file it, with every file inside, under failed/); its files are found by a scan."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "later.txt").write_bytes(b"dropped into a new folder")
    old = time.time() - 60
    os.utime(tmp_path / "sub" / "later.txt", (old, old))
    submitted: list[str] = []
    settings = TrackerSettings(
        inbox=tmp_path, params=ReadinessParams(settle_seconds=0.2), ignore_files=(),
        ignore_dirs=(), recursive=True, rescan_interval=300, max_tracked=1000,
        retry_initial=1, retry_max=1, folder_quiet_max=5.0)
    tracker = Tracker(settings, submit=lambda item: submitted.append(item.relpath) or True)
    tracker._last_full_scan = time.monotonic()  # only what the signal brings
    tracker._scan_wanted.clear()
    tracker._on_signal(Signal(Kind.MOVED_IN, "sub"), time.monotonic())
    deadline = time.monotonic() + 5
    while "sub/later.txt" not in submitted and time.monotonic() < deadline:
        tracker._maybe_scan()
        tracker._run_due()
        tracker._hand_over()
        time.sleep(0.01)
    assert "sub" not in submitted
    assert submitted == ["sub/later.txt"]
