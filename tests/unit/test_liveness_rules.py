"""Pure liveness decisions: how long a new folder holds its files, whether the inbox we watch is
still the inbox at its path."""

from __future__ import annotations

from pathlib import Path

from alfrd_daemon.rules import ReadinessParams
from alfrd_daemon.tracker import NewFolder, Tracker, TrackerSettings, folder_quiet_due
from alfrd_daemon.watch import Kind, Signal


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
