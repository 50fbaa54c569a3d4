"""The daemon as a user runs it: a subprocess, a real inbox, real inotify, real PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest

from alfrd_daemon.db.cluster import Cluster
from tests.helpers import (
    DaemonProcess,
    NotifyListener,
    claimed_files,
    inbox_files,
    query,
    run_cli,
    wait_for,
    write_config,
)
from tests.samples import PNG_1PX, make_eml, make_pdf, write_folder_document

pytestmark = pytest.mark.timeout(120)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def wait_inbox_empty(inbox: Path, daemon: DaemonProcess, timeout: float = 30) -> None:
    """Every file has left the inbox and the claim area (so its row is committed)."""
    wait_for(lambda: not inbox_files(inbox) and not claimed_files(inbox), timeout,
             f"inbox to empty: {inbox_files(inbox)} claimed: {claimed_files(inbox)}",
             alive=daemon.assert_alive)


def search_json(config: Path, words: str, *extra: str) -> list[dict]:
    return json.loads(run_cli(config, "search", words, "--json", *extra).stdout)


def test_each_supported_type_becomes_a_searchable_row(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    inbox = tmp_path / "inbox"
    samples = {
        "note.txt": b"The aardvark note mentions a plumber visit.",
        "latin1.txt": "Rechnung für Müller: zahlbar bis Frühling, quokka".encode("cp1252"),
        "readme.md": b"# Heading\n\nMarkdown talks about a **narwhal**.\n",
        "table.csv": b"vendor,amount\nplatypus hardware,12.50\n",
        "data.json": json.dumps({"vendor": "okapi insurance", "amount": 99}).encode(),
        "page.html": b"<html><head><title>Axolotl receipt</title><script>var hidden='zebra';"
                     b"</script></head><body><p>Paid &amp; settled</p></body></html>",
        "mail.eml": make_eml("Your wombat invoice", "Amount due: 42 EUR for the wombat."),
        "scan.pdf": make_pdf(["Quarterly pangolin statement", "kilowatt hours used this quarter"]),
        "photo.png": PNG_1PX,
    }
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        for name, data in samples.items():
            (inbox / name).write_bytes(data)
        wait_inbox_empty(inbox, daemon)
        rows = {r["original_name"]: r for r in query(
            db_url, "SELECT original_name, sha256, status, mime_type, stored_path, size_bytes "
                    "FROM documents")}
        assert set(rows) == set(samples)
        for name, data in samples.items():
            assert rows[name]["sha256"] == sha(data), name
            assert rows[name]["size_bytes"] == len(data)
            stored = tmp_path / "var" / "store" / rows[name]["stored_path"]
            assert stored.read_bytes() == data, name
        assert rows["photo.png"]["status"] == "pending"  # stored for downstream OCR
        assert rows["scan.pdf"]["status"] == "extracted"
        for word, name in [("aardvark", "note.txt"), ("quokka", "latin1.txt"),
                           ("Müller", "latin1.txt"), ("narwhal", "readme.md"),
                           ("platypus", "table.csv"), ("okapi", "data.json"),
                           ("axolotl", "page.html"), ("wombat invoice", "mail.eml"),
                           ("pangolin", "scan.pdf"), ("kilowatt", "scan.pdf")]:
            hits = search_json(config, word)
            assert [h["name"] for h in hits] == [name], (word, hits)
            # --json: a plain snippet, the matches as [start, end) offsets into it.
            start, end = hits[0]["matches"][0]
            assert hits[0]["snippet"][start:end].lower().startswith(word.split()[0][:4].lower())
            assert hits[0]["rank"] > 0
            assert set(hits[0]) >= {"id", "name", "tags", "rank", "snippet"}
        assert search_json(config, "zebra") == []  # script text is not document text
        # Any text a user types is a valid query.
        assert search_json(config, '"unbalanced OR -( :*') == []
        assert not claimed_files(inbox)


def test_duplicates_are_one_document_with_every_arrival(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    inbox = tmp_path / "inbox"
    data = b"identical statement body with capybara"
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        (inbox / "bills" / "2024").mkdir(parents=True)
        (inbox / "first.txt").write_bytes(data)
        wait_inbox_empty(inbox, daemon)
        (inbox / "bills" / "2024" / "again.txt").write_bytes(data)
        (inbox / "third.txt").write_bytes(data)
        wait_inbox_empty(inbox, daemon)
        docs = query(db_url, "SELECT id, original_name FROM documents")
        assert len(docs) == 1 and docs[0]["original_name"] == "first.txt"
        shown = json.loads(run_cli(config, "show", str(docs[0]["id"])[:8], "--json").stdout)
        assert sorted(a["outcome"] for a in shown["arrivals"]) == [
            "duplicate", "duplicate", "ingested"]
        assert {a["source_path"] for a in shown["arrivals"]} == {
            "first.txt", "bills/2024/again.txt", "third.txt"}
        status = json.loads(run_cli(config, "status", "--json").stdout)
        assert status["arrivals"] == {"duplicate": 2, "ingested": 1}


def test_subfolders_become_tags_and_search_filters_by_tag(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    inbox = tmp_path / "inbox"
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        (inbox / "bills" / "water").mkdir(parents=True)
        (inbox / "bills" / "water" / "w.txt").write_text("ocelot utility bill")
        (inbox / "receipts").mkdir()
        (inbox / "receipts" / "r.txt").write_text("ocelot store receipt")
        wait_inbox_empty(inbox, daemon)
        tags = {r["original_name"]: r["tags"] for r in query(
            db_url, "SELECT original_name, tags FROM documents")}
        assert tags == {"w.txt": ["bills", "water"], "r.txt": ["receipts"]}
        assert [h["name"] for h in search_json(config, "ocelot", "--tag", "water")] == ["w.txt"]
        listed = json.loads(run_cli(config, "list", "--tag", "receipts", "--json").stdout)
        assert [r["original_name"] for r in listed] == ["r.txt"]


def test_meta_json_folder_is_one_document(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    inbox = tmp_path / "inbox"
    doc_id = str(uuid.uuid4())
    pages = {"page1.txt": b"first page about a tapir", "page2.png": PNG_1PX,
             "page3.txt": b"third page about a manatee"}
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        (inbox / "scans").mkdir()
        write_folder_document(inbox / "scans" / "doc_20240301_120000", doc_id, pages,
                              ["insurance"])
        wait_for(lambda: not (inbox / "scans" / "doc_20240301_120000").exists(), 30,
                 "folder claimed", alive=daemon.assert_alive)
        wait_for(lambda: query(db_url, "SELECT 1 FROM documents"), 10, "row")
        rows = query(db_url, "SELECT id::text, tags, status, extracted_text, metadata "
                             "FROM documents")
        assert len(rows) == 1, rows
        row = rows[0]
        assert row["id"] == doc_id
        assert row["tags"] == ["scans", "insurance"]
        assert row["status"] == "pending"  # an image page still needs OCR
        assert "tapir" in row["extracted_text"] and "manatee" in row["extracted_text"]
        assert [p["file"] for p in row["metadata"]["folder"]["pages"]] == list(pages)
        # The same folder id again is a duplicate, not a second document.
        write_folder_document(inbox / "again_20240301_120001", doc_id,
                              {"page1.txt": b"other bytes, same id"}, [])
        wait_for(lambda: not (inbox / "again_20240301_120001").exists(), 30, "second folder",
                 alive=daemon.assert_alive)
        wait_for(lambda: len(query(db_url, "SELECT 1 FROM document_arrivals")) == 2, 10,
                 "second arrival")
        assert len(query(db_url, "SELECT 1 FROM documents")) == 1


def test_slow_writer_is_ingested_once_and_whole(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    inbox = tmp_path / "inbox"
    chunks = [f"chunk {i} of a slowly scanned document\n".encode() * 50 for i in range(7)]
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        with open(inbox / "slow.txt", "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                out.flush()
                time.sleep(0.5)
                assert (inbox / "slow.txt").exists(), "claimed while still being written"
        wait_inbox_empty(inbox, daemon)
        rows = query(db_url, "SELECT sha256, size_bytes FROM documents")
        assert rows == [{"sha256": sha(b"".join(chunks)), "size_bytes": sum(map(len, chunks))}]


def test_files_present_before_start_are_caught_up(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    inbox = tmp_path / "inbox"
    (inbox / "old").mkdir()
    for i in range(20):
        (inbox / "old" / f"{i}.txt").write_text(f"backlog document number {i}")
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        wait_inbox_empty(inbox, daemon)
    assert query(db_url, "SELECT count(*) AS n FROM documents")[0]["n"] == 20


def test_polling_mode_ingests(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url, watch={"mode": "polling", "poll_interval": 0.3})
    inbox = tmp_path / "inbox"
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        assert "(polling)" in daemon.log()
        (inbox / "sub").mkdir()
        (inbox / "sub" / "p.txt").write_text("polled gazelle")
        (inbox / "q.txt").write_text("polled impala")
        wait_inbox_empty(inbox, daemon)
    assert {r["original_name"] for r in query(db_url, "SELECT original_name FROM documents")} \
        == {"p.txt", "q.txt"}


def test_corrupt_pdf_and_fifo_fail_with_reasons_while_others_flow(
    tmp_path: Path, db_url: str
) -> None:
    config = write_config(tmp_path, db_url)
    inbox = tmp_path / "inbox"
    failed = tmp_path / "var" / "failed"
    good = make_pdf(["a perfectly fine pdf about lemurs"])
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        (inbox / "broken.pdf").write_bytes(good[: len(good) // 2])
        os.mkfifo(inbox / "pipe")
        for i in range(5):
            (inbox / f"ok{i}.txt").write_text(f"healthy document {i}")
        (inbox / "fine.pdf").write_bytes(good)
        wait_inbox_empty(inbox, daemon)
        notes = {p.name: json.loads(p.read_text()) for p in failed.glob("*.error")}
        assert set(notes) == {"broken.pdf.error", "pipe.error"}
        assert "PDF" in notes["broken.pdf.error"]["reason"]
        assert "FIFO" in notes["pipe.error"]["reason"]
        assert (failed / "broken.pdf").read_bytes() == good[: len(good) // 2]
        assert (failed / "pipe").is_fifo()
        rows = query(db_url, "SELECT original_name, status, error FROM documents "
                             "ORDER BY original_name")
        by_name = {r["original_name"]: r for r in rows}
        assert by_name["broken.pdf"]["status"] == "failed" and by_name["broken.pdf"]["error"]
        assert by_name["pipe"]["status"] == "failed"
        assert sum(r["status"] != "failed" for r in rows) == 6
        status = json.loads(run_cli(config, "status", "--json").stdout)
        assert status["documents"]["failed"] == 2
        assert status["failed_folder"]["files"] == 2
        running = [d for d in status["daemons"] if d["running"]]
        assert running and running[0]["watcher_alive"] is True
        # retry puts them back; they fail again with one row each, not two
        run_cli(config, "retry", "--all")
        wait_for(lambda: len(list(failed.glob("*.error"))) == 2 and not inbox_files(inbox),
                 30, "failed again", alive=daemon.assert_alive)
    assert query(db_url, "SELECT count(*) AS n FROM documents WHERE status = 'failed'")[0][
        "n"] == 2


def test_sigterm_drains_and_leaves_nothing_half_done(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    inbox = tmp_path / "inbox"
    notify = NotifyListener(tmp_path / "notify.sock")
    daemon = DaemonProcess(config, tmp_path / "daemon.log", env=notify.env())
    daemon.start().wait_started()
    written = {}
    for i in range(300):
        data = f"document {i} for the shutdown test\n".encode() * 20
        (inbox / f"f{i:03d}.txt").write_bytes(data)
        written[f"f{i:03d}.txt"] = sha(data)
    # Stop once ingest is under way: the first row is in, most files are still to come.
    wait_for(lambda: query(db_url, "SELECT 1 FROM documents LIMIT 1"), 30, "the first row",
             alive=daemon.assert_alive)
    try:
        assert daemon.stop() == 0
        # STOPPING=1 carries the status at the moment the stop came.
        _, stopping = notify.wait(lambda m: m.get("STOPPING") == "1", 10, "STOPPING=1")
    finally:
        notify.close()
    status = stopping["STATUS"]
    in_flight = int(re.search(r"queue (\d+)", status)[1])  # type: ignore[index]
    ingested_before = int(re.search(r"ingested (\d+)", status)[1])  # type: ignore[index]
    assert in_flight > 0, f"nothing was in flight when the stop came: {status}"
    assert "stopped cleanly" in daemon.log()
    assert not claimed_files(inbox), "claimed files left after a clean stop"
    stored = {r["sha256"] for r in query(db_url, "SELECT sha256 FROM documents")}
    # The drain finished work that was under way when the stop came.
    assert len(stored) > ingested_before, (len(stored), status)
    left = set(inbox_files(inbox))
    for name, digest in written.items():
        assert (digest in stored) != (name in left), name  # exactly one place
    # and a restart finishes the rest
    with DaemonProcess(config, tmp_path / "daemon2.log") as daemon2:
        wait_inbox_empty(inbox, daemon2)
    assert len(query(db_url, "SELECT 1 FROM documents")) == 300


def test_embedded_default_starts_its_own_postgresql(tmp_path: Path) -> None:
    """The README's first command: no database configured → a private server in state_dir."""
    # As root the server runs as the unprivileged `alfrd` user, who must be able to enter the
    # state directory: pytest's own tmp_path is private (0700), so use a traversable one.
    state = Path(tempfile.mkdtemp(prefix="alfrd-embedded-"))
    os.chmod(state, 0o755)
    config = write_config(tmp_path, None, state_dir=str(state))
    inbox = tmp_path / "inbox"
    pgdata = state / "postgres" / "data"
    try:
        with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
            (inbox / "hello.txt").write_text("embedded hedgehog")
            wait_inbox_empty(inbox, daemon, timeout=60)
            hits = search_json(config, "hedgehog")
            assert [h["name"] for h in hits] == ["hello.txt"]
        assert (pgdata / "PG_VERSION").exists()
        assert not (pgdata / "postmaster.pid").exists(), "embedded server left running"
        # CLI commands work with the daemon stopped too (they start and stop the server).
        assert [h["name"] for h in search_json(config, "hedgehog")] == ["hello.txt"]
        assert not (pgdata / "postmaster.pid").exists()
    finally:
        Cluster(state / "postgres").destroy()
        shutil.rmtree(state, ignore_errors=True)


def test_python_dash_m_and_config_check(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("workers:\n  count: many\nwatch:\n  mode: psychic\n")
    result = subprocess.run([sys.executable, "-m", "alfrd_daemon", "config", "check", str(bad)],
                            capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert lines == [
        f"{bad}: At 'watch.mode': got 'psychic', expected one of auto, inotify, polling",
        f"{bad}: At 'workers.count': got 'many', expected a whole number",
    ] or len(lines) == 2, lines
    assert all("At '" in line for line in lines)


def test_concurrent_drops_of_identical_content(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url, workers={"count": 4})
    inbox = tmp_path / "inbox"
    data = b"same bytes dropped under two names at the same instant"
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        staging = tmp_path / "staging"
        staging.mkdir()
        for i in range(8):
            (staging / f"twin{i}.txt").write_bytes(data)
        barrier = threading.Barrier(8)

        def drop(i: int) -> None:
            barrier.wait()
            os.rename(staging / f"twin{i}.txt", inbox / f"twin{i}.txt")

        threads = [threading.Thread(target=drop, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wait_inbox_empty(inbox, daemon)
        wait_for(lambda: len(query(db_url, "SELECT 1 FROM document_arrivals")) == 8, 10,
                 "eight arrivals")
    assert len(query(db_url, "SELECT 1 FROM documents")) == 1
    shutil.rmtree(staging)


def test_cp_mv_and_rsync_of_files_and_whole_folders(tmp_path: Path, db_url: str) -> None:
    """The ways people actually drop files: a folder renamed in whole (no events for the files
    inside), a recursive copy, rsync with its hidden temporary names, write-then-rename."""
    config = write_config(tmp_path, db_url)
    inbox = tmp_path / "inbox"
    staging = tmp_path / "staging"
    expected = {}
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        moved = staging / "moved" / "deeper"
        moved.mkdir(parents=True)
        for i in range(3):
            data = f"moved folder file {i} mentions a tamarin".encode()
            (moved / f"m{i}.txt").write_bytes(data)
            expected[sha(data)] = ["moved", "deeper"]
        os.rename(staging / "moved", inbox / "moved")  # mv of a whole tree

        copied = staging / "copied"
        copied.mkdir()
        for i in range(3):
            data = f"copied folder file {i} mentions a marmoset".encode()
            (copied / f"c{i}.txt").write_bytes(data)
            expected[sha(data)] = ["copied"]
        shutil.copytree(copied, inbox / "copied")  # cp -r

        synced = staging / "synced"
        synced.mkdir()
        for i in range(3):
            data = f"rsynced file {i} mentions a gibbon".encode()
            (synced / f"s{i}.txt").write_bytes(data)
            expected[sha(data)] = ["synced"]
        subprocess.run(["rsync", "-a", f"{synced}/", f"{inbox}/synced/"], check=True)

        data = b"written under a .part name and renamed when complete: a lemur"
        (inbox / "upload.pdf.part").write_bytes(data)
        os.rename(inbox / "upload.pdf.part", inbox / "upload.txt")
        expected[sha(data)] = []

        wait_inbox_empty(inbox, daemon)
        rows = {r["sha256"]: r["tags"] for r in query(db_url,
                                                      "SELECT sha256, tags FROM documents")}
    assert rows == expected
