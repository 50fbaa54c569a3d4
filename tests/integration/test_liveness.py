"""Nothing waits for ever, and a deaf watcher is noticed: a folder that never goes quiet, an
inbox deleted and re-created under the running daemon, a monitor thread hit by an error it did
not expect. Real daemon, real inotify and polling, real PostgreSQL."""

from __future__ import annotations

import json
import re
import shutil
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from alfrd_daemon.db import pool as dbmod
from tests.helpers import (
    DaemonProcess,
    inbox_files,
    lock_is_held,
    query,
    wait_for,
    write_config,
)

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


def instance_of(daemon: DaemonProcess) -> str:
    found = re.search(r"event=started .*?instance=(\S+)", daemon.log())
    assert found, daemon.log()[-2000:]
    return found.group(1)




def health_in_heartbeat(db_url: str, instance: str) -> str | None:
    rows = query(db_url, "SELECT state->>'health' AS health FROM daemon_instances "
                         "WHERE instance = %s", (instance,))
    return rows[0]["health"] if rows else None


@pytest.mark.parametrize("mode", ["inotify", "polling"])
def test_inbox_deleted_and_recreated_is_noticed_rearmed_and_ingested(
        tmp_path: Path, db_url: str, mode: str) -> None:
    """`rm -rf inbox && mkdir inbox` under a running daemon: the watch and the claim lock died
    with the old directory. Within seconds the daemon says so, watches the new inbox, holds
    its lock again (a daemon started later does not take it for dead) and ingests."""
    config = write_config(tmp_path, db_url, watch={
        "mode": mode, "poll_interval": 0.3, "rescan_interval": 300})
    inbox = tmp_path / "inbox"
    with DaemonProcess(config, tmp_path / "first.log") as daemon:
        instance = instance_of(daemon)
        (inbox / "before.txt").write_text("dropped into the first inbox")
        wait_for(lambda: "before.txt" in ingested_names(db_url), 15, "first file",
                 alive=daemon.assert_alive)
        shutil.rmtree(inbox)
        inbox.mkdir()
        (inbox / "after.txt").write_text("dropped into the re-created inbox")
        wait_for(lambda: "after.txt" in ingested_names(db_url), 10,
                 f"file in the re-created inbox; log:\n{daemon.log()[-2000:]}",
                 alive=daemon.assert_alive)
        assert "event=watch_rearmed" in daemon.log()
        (inbox / "sub").mkdir()  # the new watch sees new folders and files as events
        (inbox / "sub" / "later.txt").write_text("dropped after the watch was re-armed")
        wait_for(lambda: "later.txt" in ingested_names(db_url), 10, "file after re-arming",
                 alive=daemon.assert_alive)
        lock = inbox / ".alfrd" / "claimed" / f"{instance}.lock"
        assert lock_is_held(lock), "the re-created claim area has no held lock"
        second_tmp = tmp_path / "second"
        second_config = write_config(second_tmp, db_url, inbox={"path": str(inbox)},
                                     watch={"mode": mode, "poll_interval": 0.3})
        with DaemonProcess(second_config, tmp_path / "second.log") as second:
            assert (inbox / ".alfrd" / "claimed" / instance).is_dir()
            assert lock.exists() and lock_is_held(lock)
            (inbox / "both.txt").write_text("either daemon may take this one")
            wait_for(lambda: "both.txt" in ingested_names(db_url), 10, "file with two daemons",
                     alive=second.assert_alive)
            daemon.assert_alive()
        assert "event=adopted" not in second.log()
        assert (inbox / ".alfrd" / "claimed" / instance).is_dir()


def test_a_missing_inbox_makes_the_daemon_unhealthy_until_it_returns(
        tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url, watch={"mode": "inotify", "rescan_interval": 300})
    inbox = tmp_path / "inbox"
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        instance = instance_of(daemon)
        wait_for(lambda: health_in_heartbeat(db_url, instance) == "ok", 10, "healthy")
        shutil.rmtree(inbox)
        wait_for(lambda: "event=inbox_missing" in daemon.log(), 5, "the missing inbox logged",
                 alive=daemon.assert_alive)
        wait_for(lambda: (health_in_heartbeat(db_url, instance) or "").startswith(
            "inbox missing"), 10, "health to say the inbox is missing",
            alive=daemon.assert_alive)
        inbox.mkdir()
        (inbox / "back.txt").write_text("the inbox is back")
        wait_for(lambda: "back.txt" in ingested_names(db_url), 10, "file in the returned inbox",
                 alive=daemon.assert_alive)
        wait_for(lambda: health_in_heartbeat(db_url, instance) == "ok", 10, "healthy again")


def _set_read_only_and_reconnect(admin_url: str, dbname: str, read_only: bool) -> None:
    """What a failover to a standby looks like to the daemon: its connections drop, and the
    new ones cannot write."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("ALTER DATABASE {} SET default_transaction_read_only = {}").format(
            sql.Identifier(dbname), sql.SQL("on" if read_only else "off")))
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = %s AND application_name = %s",
                      (dbname, dbmod.APPLICATION_NAME))


def test_the_monitor_survives_an_error_it_did_not_expect(
        tmp_path: Path, db_url: str, pg_admin: str) -> None:
    """The heartbeat upsert on a read-only database raises ReadOnlySqlTransaction, which is
    not 'database unavailable': the monitor logs it and goes on, and its heartbeats resume
    when the database takes writes again."""
    dbname = conninfo_to_dict(db_url)["dbname"]
    config = write_config(tmp_path, db_url)
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        instance = instance_of(daemon)

        def heartbeat_at() -> object:
            rows = query(db_url, "SELECT heartbeat_at FROM daemon_instances WHERE instance = %s",
                         (instance,))
            return rows[0]["heartbeat_at"] if rows else None

        wait_for(heartbeat_at, 10, "first heartbeat")
        _set_read_only_and_reconnect(pg_admin, dbname, True)
        wait_for(lambda: "ReadOnlySqlTransaction" in daemon.log(), 20,
                 "the heartbeat's error in the log", alive=daemon.assert_alive)
        assert "event=internal_error" in daemon.log()
        stalled_at = heartbeat_at()
        _set_read_only_and_reconnect(pg_admin, dbname, False)
        wait_for(lambda: heartbeat_at() != stalled_at, 20, "heartbeats to resume",
                 alive=daemon.assert_alive)
        (tmp_path / "inbox" / "after.txt").write_text("written after the failover")
        wait_for(lambda: "after.txt" in ingested_names(db_url), 15, "ingest after the error",
                 alive=daemon.assert_alive)


def test_a_folder_document_written_slowly_is_still_one_document(
        tmp_path: Path, db_url: str) -> None:
    """The bound releases plain files, never the pages of a folder holding meta.json: one
    written page by page, for longer than the bound, is still one document."""
    config = write_config(tmp_path, db_url, watch={
        "settle_seconds": 1.0, "folder_quiet_max_seconds": 1, "rescan_interval": 300})
    inbox = tmp_path / "inbox"
    doc_id = str(uuid.uuid4())
    pages = [f"page{i}.txt" for i in range(6)]
    meta = {"id": doc_id, "created_at": "2024-03-01T12:00:00Z",
            "documents": [{"file": p, "type": "text", "order": i + 1}
                          for i, p in enumerate(pages)],
            "metadata": {"source": "scanner", "tags": []}}
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        folder = inbox / "scans" / "doc_20240301_120000"
        folder.mkdir(parents=True)
        (folder / "meta.json").write_text(json.dumps(meta))
        for i, name in enumerate(pages):
            time.sleep(0.5)
            (folder / name).write_text(f"slowly scanned page {i} about an okapi")
        wait_for(lambda: not folder.exists(), 20, "folder claimed", alive=daemon.assert_alive)
        wait_for(lambda: query(db_url, "SELECT 1 FROM documents"), 10, "row")
    rows = query(db_url, "SELECT id::text, metadata FROM documents")
    assert [r["id"] for r in rows] == [doc_id]
    assert [p["file"] for p in rows[0]["metadata"]["folder"]["pages"]] == pages
