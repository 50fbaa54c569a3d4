"""Nothing waits for ever, and a deaf watcher is noticed: a folder that never goes quiet, an
inbox deleted and re-created under the running daemon, a monitor thread hit by an error it did
not expect. Real daemon, real inotify and polling, real PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.helpers import DaemonProcess, inbox_files, query, wait_for, write_config

pytestmark = pytest.mark.timeout(120)


def ingested_names(db_url: str) -> set[str]:
    return {r["original_name"] for r in query(db_url, "SELECT original_name FROM documents")}


def test_files_trickling_into_a_new_folder_flow_before_the_writer_stops(
        tmp_path: Path, db_url: str) -> None:
    """A scanner drops a page every 0.5 s into a folder that appeared after start: the folder
    never goes quiet for settle_seconds, yet its first pages are ingested while it writes."""
    config = write_config(tmp_path, db_url, watch={
        "settle_seconds": 1.0, "folder_quiet_max_seconds": 2, "rescan_interval": 300})
    inbox = tmp_path / "inbox"
    pages = [f"page{i:02d}.txt" for i in range(16)]
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        (inbox / "scans").mkdir()
        ingested_while_writing: set[str] = set()
        for i, name in enumerate(pages):
            (inbox / "scans" / name).write_text(f"scanned page {i} of a long batch")
            time.sleep(0.5)
            if i >= 8 and not ingested_while_writing:
                ingested_while_writing = ingested_names(db_url)
        assert ingested_while_writing, "no page ingested while the scanner kept writing"
        assert "page00.txt" in ingested_while_writing
        wait_for(lambda: ingested_names(db_url) == set(pages), 20, "every page ingested",
                 alive=daemon.assert_alive)
        assert not inbox_files(inbox)
    assert query(db_url, "SELECT count(*) AS n FROM document_arrivals")[0]["n"] == len(pages)
