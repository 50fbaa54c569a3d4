"""The inbox scan reads a folder as it goes: a backlog is never held whole in memory, and a
scan that stops early (the tracker takes only so many files) closes the folder."""

from __future__ import annotations

import gc
import os
import tracemalloc
import warnings
from pathlib import Path

from alfrd_daemon.ingest.partition import Partition
from alfrd_daemon.ingest.watch import scan


def test_taking_the_first_files_of_a_big_folder_does_not_list_it_whole(tmp_path: Path) -> None:
    for i in range(5000):
        (tmp_path / f"file-with-a-longish-name-{i:05d}.txt").touch()
    tracemalloc.start()
    try:
        found = scan(tmp_path, ignore_files=(), ignore_dirs=())
        first = [next(found) for _ in range(50)]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len({rel for rel, _, _ in first}) == 50
    # A list of 5,000 directory entries alone is about 1 MB.
    assert peak < 200_000, peak
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)  # an unclosed folder would warn
        del found
        gc.collect()


def test_a_scan_finds_folders_folder_documents_and_only_its_partitions_files(
        tmp_path: Path) -> None:
    names = [f"a{i}.txt" for i in range(20)] + [f"sub/b{i}.txt" for i in range(20)]
    for name in names:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).touch()
    (tmp_path / "doc").mkdir()
    (tmp_path / "doc" / "meta.json").touch()
    (tmp_path / "doc" / "page.txt").touch()
    os.mkdir(tmp_path / ".alfrd")
    (tmp_path / ".alfrd" / "claimed.txt").touch()
    everything = {(rel, folder) for rel, _, folder in scan(tmp_path, ignore_files=(),
                                                           ignore_dirs=())}
    assert everything == {(n, False) for n in names} | {("doc", True)}
    half = Partition(1, 2)
    mine = {rel for rel, _, folder in scan(tmp_path, ignore_files=(), ignore_dirs=(),
                                           owns=half.owns) if not folder}
    assert mine == {n for n in names if half.owns(n)}
