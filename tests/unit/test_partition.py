"""workers.processes: every inbox path belongs to exactly one ingest process, the same one in
every process and after every restart, and each tracker hands over only its own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from alfrd_daemon.ingest.partition import Partition, parse_partition
from alfrd_daemon.ingest.readiness import ReadinessParams
from alfrd_daemon.ingest.signals import Kind, Signal
from alfrd_daemon.ingest.tracker import Tracker, TrackerSettings
from alfrd_daemon.service.daemon import extractor_share
from tests.samples import write_folder_document

PATHS = [f"bills/{i:04d}.pdf" for i in range(300)] + [
    "a.txt", "ünïcode/résumé.txt", os.fsdecode(b"bad-\xff-name.txt"), "x" * 255, "a/b/c/d.txt"]


@pytest.mark.parametrize("count", [1, 2, 3, 5])
def test_each_path_has_exactly_one_owner(count: int) -> None:
    parts = [Partition(k, count) for k in range(count)]
    for rel in PATHS:
        assert sum(p.owns(rel) for p in parts) == 1, rel


def test_the_owners_spread_and_do_not_depend_on_the_process_hash_seed() -> None:
    """Python's hash() is salted per process: an owner computed with it would differ between
    the processes, and some files would belong to none of them."""
    here = [Partition(1, 3).owns(rel) for rel in PATHS]
    code = ("import json, sys; from alfrd_daemon.ingest.partition import Partition; "
            "print(json.dumps([Partition(1, 3).owns(r) for r in json.loads(sys.argv[1])]))")
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code, json.dumps(PATHS, ensure_ascii=False)],
            capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        assert json.loads(out) == here
    assert 60 < sum(here) < 140  # about a third of the 305


@pytest.mark.parametrize("text", ["", "1", "2/2", "-1/2", "0/0", "0/65", "a/b", "1/2/3"])
def test_a_bad_partition_argument_names_the_form(text: str) -> None:
    with pytest.raises(ValueError, match="expected K/N with 0 <= K < N <= 64"):
        parse_partition(text)


def test_partition_arguments_parse() -> None:
    assert parse_partition("1/2") == Partition(1, 2)
    assert str(Partition(3, 4)) == "3/4"


def tracker_for(inbox: Path, owns: Partition, submitted: list[str]) -> Tracker:
    settings = TrackerSettings(
        inbox=inbox, params=ReadinessParams(settle_seconds=0.05, quiet_seconds=0.0),
        ignore_files=(), ignore_dirs=(), recursive=True, rescan_interval=300,
        max_tracked=10_000, retry_initial=1, retry_max=1, folder_quiet_max=5.0)
    return Tracker(settings, submit=lambda item: submitted.append(item.relpath) or True,
                   owns=owns.owns)


def run_until_quiet(tracker: Tracker, seconds: float = 1.0) -> None:
    """Turn the loop until nothing is due any more (every sighting decided)."""
    deadline = time.monotonic() + 10
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        before = len(tracker.sightings), len(tracker._heap)
        tracker._maybe_scan()
        tracker._run_due()
        tracker._hand_over()
        if before != (len(tracker.sightings), len(tracker._heap)) or tracker._heap:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > seconds / 10:
            return
        time.sleep(0.01)
    raise AssertionError("the tracker never settled")


def test_two_trackers_on_one_inbox_share_its_files_without_overlap(tmp_path: Path) -> None:
    names = [f"f{i:03d}.txt" for i in range(60)] + ["sub/a.txt", "sub/deeper/b.txt"]
    old = time.time() - 60
    for name in names:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
        os.utime(tmp_path / name, (old, old))
    # A folder document: one unit, whichever process owns its folder; never its pages.
    write_folder_document(tmp_path / "scan-1", str(uuid.uuid4()),
                          {"p1.txt": b"page one", "p2.txt": b"page two"}, ["x"])
    submitted: list[list[str]] = [[], []]
    for k in (0, 1):
        run_until_quiet(tracker_for(tmp_path, Partition(k, 2), submitted[k]))
    assert set(submitted[0]).isdisjoint(submitted[1])
    assert sorted(submitted[0] + submitted[1]) == sorted([*names, "scan-1"])
    assert submitted[0] and submitted[1]
    assert all(Partition(k, 2).owns(rel) for k in (0, 1) for rel in submitted[k])


def test_a_signal_for_another_process_file_is_left_to_it(tmp_path: Path) -> None:
    theirs = next(f"n{i}.txt" for i in range(100) if not Partition(0, 2).owns(f"n{i}.txt"))
    mine = next(f"n{i}.txt" for i in range(100) if Partition(0, 2).owns(f"n{i}.txt"))
    for name in (theirs, mine):
        (tmp_path / name).write_text(name)
    submitted: list[str] = []
    tracker = tracker_for(tmp_path, Partition(0, 2), submitted)
    tracker._last_full_scan = time.monotonic()  # only what the signals bring
    tracker._scan_wanted.clear()
    for name in (theirs, mine):
        tracker._on_signal(Signal(Kind.CLOSED, name), time.monotonic())
    assert theirs not in tracker.sightings
    run_until_quiet(tracker)
    assert submitted == [mine]


def test_meta_json_arriving_last_moves_the_pages_to_the_folder_owner(tmp_path: Path) -> None:
    """Pages land first and are tracked as files by whichever process owns each; once
    meta.json is there the folder is the unit, and only its owner hands it over."""
    folder = next(f"doc{i}" for i in range(100) if not Partition(0, 2).owns(f"doc{i}"))
    page = next(f"{folder}/p{i}.txt" for i in range(100)
                if Partition(0, 2).owns(f"{folder}/p{i}.txt"))
    (tmp_path / folder).mkdir()
    (tmp_path / page).write_text("a page")
    submitted: list[str] = []
    tracker = tracker_for(tmp_path, Partition(0, 2), submitted)
    tracker._last_full_scan = time.monotonic()
    tracker._scan_wanted.clear()
    tracker._on_signal(Signal(Kind.CLOSED, page), time.monotonic())
    assert page in tracker.sightings
    meta = {"id": str(uuid.uuid4()), "created_at": "2024-03-01T12:00:00Z",
            "documents": [{"file": page.rpartition("/")[2], "type": "text", "order": 1}],
            "metadata": {"source": "scanner", "tags": []}}
    (tmp_path / folder / "meta.json").write_text(json.dumps(meta))
    run_until_quiet(tracker)
    assert submitted == []
    assert page not in tracker.sightings and folder not in tracker.sightings


@pytest.mark.parametrize(("cores", "count", "shares"), [
    (2, 1, [2]), (2, 2, [1, 1]), (4, 3, [2, 1, 1]), (2, 3, [1, 1, 1]), (8, 8, [1] * 8)])
def test_the_ingest_processes_share_one_extractor_per_core(cores: int, count: int,
                                                           shares: list[int]) -> None:
    assert [extractor_share(cores, Partition(k, count)) for k in range(count)] == shares
