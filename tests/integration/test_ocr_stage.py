"""The OCR stage end to end: the daemon and `alfrd worker` processes with real Tesseract and
real PostgreSQL, tiny images. A dropped image becomes searchable (woken by LISTEN, long before
the poll), a mixed PDF ends with both pages' text, a broken image fails after max_attempts
and `alfrd retry` takes it again; with the language missing documents wait and status says
why; a worker killed with SIGKILL mid-document, and the database cutting every connection
mid-document, lose nothing and complete each document once."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg.types.json import Jsonb

from alfrd_daemon.config.settings import OcrSettings, Settings
from alfrd_daemon.db.pool import Database
from alfrd_daemon.ocr.service import OcrService
from tests.helpers import (
    REPO,
    DaemonProcess,
    NotifyListener,
    alfrd_env,
    query,
    run_cli,
    wait_for,
    write_config,
)
from tests.ocr_samples import image_bytes, image_pdf, make_text_image, mixed_pdf

OCR_FAST = {"workers": 1, "dpi": 150, "detect_orientation": False, "max_attempts": 2,
            "page_timeout_seconds": 10, "lease_seconds": 30, "poll_seconds": 60}


class WorkerProcess(DaemonProcess):
    """`alfrd worker` in a subprocess."""

    def start(self) -> WorkerProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alfrd_daemon", "worker", "--config", str(self.config)],
            stdout=self._log, stderr=subprocess.STDOUT, env=alfrd_env(self.env), cwd=REPO,
            stdin=subprocess.DEVNULL)
        return self


def count_completions(db_url: str) -> None:
    """A test-only trigger recording every write of an OCR result."""
    with psycopg.connect(db_url) as conn:
        conn.execute("""
            CREATE TABLE test_ocr_completions (document_id uuid NOT NULL,
                                               at timestamptz NOT NULL DEFAULT now());
            CREATE FUNCTION test_ocr_completed() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN INSERT INTO test_ocr_completions (document_id) VALUES (NEW.id); RETURN NULL;
            END $$;
            CREATE TRIGGER test_ocr_completed AFTER UPDATE OF status ON documents FOR EACH ROW
            WHEN (NEW.status = 'extracted' AND NEW.extractor LIKE 'ocr/%%')
            EXECUTE FUNCTION test_ocr_completed();""")


def completions(db_url: str) -> dict[str, int]:
    rows = query(db_url, "SELECT document_id::text AS id, count(*) AS n "
                 "FROM test_ocr_completions GROUP BY 1")
    return {r["id"]: r["n"] for r in rows}


def document(db_url: str, name: str) -> dict[str, Any] | None:
    rows = query(db_url, "SELECT d.id::text AS id, d.status, d.extractor, d.error, d.metadata, "
                 "d.extracted_text, j.state, j.attempts, j.pages_done, j.enqueued_at, "
                 "j.last_error FROM documents d LEFT JOIN ocr_jobs j ON j.document_id = d.id "
                 "WHERE d.original_name = %s", (name,))
    return rows[0] if rows else None


def wait_document(db_url: str, name: str, what: str, cond: Any, timeout: float = 60,
                  alive: Any = None) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        doc = document(db_url, name)
        return doc if doc is not None and cond(doc) else None

    return wait_for(check, timeout, f"{name}: {what} (now {document(db_url, name)})",
                    alive=alive, interval=0.05)


def drop(inbox: Path, name: str, data: bytes) -> None:
    """Written beside the inbox and renamed in, as a scanner's upload would arrive."""
    temp = inbox.parent / f".{name}.part"
    temp.write_bytes(data)
    temp.rename(inbox / name)


def ocr_config(tmp: Path, base: Path, name: str, **ocr: Any) -> Path:
    """The daemon's configuration (same database and store) with its own ocr: section."""
    cfg = yaml.safe_load(base.read_text())
    cfg["ocr"] = {"enabled": True, **OCR_FAST, **ocr}
    path = tmp / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def scan_pdf(word: str) -> bytes:
    """Twenty scanned pages, each a few words: long enough to be caught mid-document (a page
    costs tens of milliseconds)."""
    return image_pdf([make_text_image(f"Page {n} ledger {word} {n}") for n in range(1, 21)])


def test_the_daemon_reads_images_and_scans_and_fails_a_broken_one(tmp_path: Path,
                                                                  db_url: str) -> None:
    config = write_config(tmp_path, db_url, ocr={"enabled": True, **OCR_FAST},
                          workers={"retry_initial": 0.2, "retry_max": 0.5})
    inbox = tmp_path / "inbox"
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        # The worker has looked once at start; with poll_seconds 60 only LISTEN wakes it.
        wait_for(lambda: query(db_url, "SELECT 1 FROM pg_stat_activity "
                               "WHERE query = 'LISTEN \"alfrd_ocr\"'"),
                 30, "the OCR listener", alive=daemon.assert_alive)
        dropped = time.monotonic()
        drop(inbox, "quokka.png", image_bytes(make_text_image(
            "Invoice quokka 4711 kilowatt hours total"), "png"))
        # A word of the image only (the file name is searchable from the start).
        hits = wait_for(lambda: json.loads(run_cli(config, "search", "kilowatt",
                                                   "--json").stdout),
                        30, "the image to be found by its words", alive=daemon.assert_alive,
                        interval=0.2)
        picked_up = time.monotonic() - dropped
        assert picked_up < 30, "woken by NOTIFY, not by the 60 s poll"
        assert [h["name"] for h in hits] == ["quokka.png"]
        doc = document(db_url, "quokka.png")
        assert doc is not None and doc["extractor"] == "ocr/1"
        meta = doc["metadata"]["ocr"]
        assert meta["engine"].startswith("tesseract") and meta["languages"] == ["eng"]
        assert (meta["pages"], meta["ocr_pages"]) == (1, 1)

        # A PDF with a text page and a scanned page: both pages' words, in page order.
        drop(inbox, "mixed.pdf", mixed_pdf(["Ledger heron column, balance carried forward"],
                                           make_text_image("Scanned walrus receipt")))
        mixed = wait_document(db_url, "mixed.pdf", "read",
                              lambda d: d["status"] in ("extracted", "failed"),
                              alive=daemon.assert_alive)
        mixed = wait_document(db_url, "mixed.pdf", "OCR'd",
                              lambda d: d["extractor"] == "ocr/1" and d["status"] == "extracted",
                              alive=daemon.assert_alive)
        text = mixed["extracted_text"]
        assert "heron" in text and "walrus" in text.lower()
        assert text.index("heron") < text.lower().index("walrus")
        assert mixed["metadata"]["ocr"]["ocr_pages"] == 1

        # `alfrd ocr --again` reads a document once more (after adding a language, say).
        out = run_cli(config, "ocr", "--again", doc["id"]).stdout
        assert f"queued for OCR: {doc['id']}" in out
        wait_document(db_url, "quokka.png", "read again",
                      lambda d: d["state"] == "done" and d["enqueued_at"] > doc["enqueued_at"],
                      alive=daemon.assert_alive)
        assert run_cli(config, "ocr", "--again", "--all").stdout.count("queued for OCR") == 2
        for name in ("quokka.png", "mixed.pdf"):
            wait_document(db_url, name, "read again", lambda d: d["state"] == "done",
                          alive=daemon.assert_alive)

        # A broken PNG fails max_attempts (2) times, then the document is failed with why.
        drop(inbox, "broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 200)
        broken = wait_document(db_url, "broken.png", "failed", lambda d: d["state"] == "failed",
                               alive=daemon.assert_alive)
        assert broken["status"] == "failed" and broken["attempts"] == 2
        assert broken["error"].startswith("OCR failed (2 attempts): ")
        status = run_cli(config, "status").stdout
        assert "failed 1" in status and f"failed {broken['id']} broken.png" in status, status
        ocr = json.loads(run_cli(config, "status", "--json").stdout)["ocr"]
        assert (ocr["documents_waiting"], ocr["failed"]) == (0, 1)
        assert ocr["pages_per_second"] > 0 and ocr["engine"]["available"] is True
        assert [w["available"] for w in ocr["workers"]] == [True]
        assert ocr["recent_failures"][0]["id"] == broken["id"]
        out = run_cli(config, "retry", broken["id"]).stdout
        assert f"queued for OCR again: {broken['id']}" in out
        again = wait_document(db_url, "broken.png", "failed again",
                              lambda d: d["state"] == "failed"
                              and d["enqueued_at"] > broken["enqueued_at"],
                              alive=daemon.assert_alive)
        assert again["attempts"] == 2
        listed = run_cli(config, "list").stdout
        assert "quokka.png" in listed
        shown = run_cli(config, "show", again["id"]).stdout
        assert "ocr: OCR failed; attempts 2; last error: " in shown, shown
    assert daemon.proc is not None and daemon.proc.returncode == 0


def _running(db_url: str, name: str) -> Any:
    return lambda d: d["state"] == "running" and d["pages_done"] >= 1


def _terminate_connections(db_url: str) -> int:
    rows = query(db_url, "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
                 "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    return int(rows[0]["n"])


def test_workers_wait_without_ocr_survive_kill_and_outage(tmp_path: Path,
                                                          db_url: str) -> None:
    count_completions(db_url)
    config = write_config(tmp_path, db_url)  # this daemon ingests only (ocr.enabled false)
    inbox = tmp_path / "inbox"
    missing = ocr_config(tmp_path, config, "missing.yaml", languages=["xxx"])
    # Pages at 300 dpi take a little longer: a wider window to catch a worker mid-document.
    fast = ocr_config(tmp_path, config, "worker.yaml", lease_seconds=4,
                      page_timeout_seconds=1.9, dpi=300)
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        # Without the language's data, documents wait as pending and status says why.
        with WorkerProcess(missing, tmp_path / "missing.log") as idle:
            drop(inbox, "waiting.png", image_bytes(make_text_image("Waiting okapi memo"),
                                                   "png"))
            wait_document(db_url, "waiting.png", "ingested", lambda d: d["state"] == "queued",
                          alive=daemon.assert_alive)
            wait_for(lambda: "OCR unavailable" in idle.log(), 30, "the worker to say why",
                     alive=idle.assert_alive)
            status = run_cli(missing, "status").stdout
            assert "UNAVAILABLE" in status and "'xxx'" in status, status
            assert "1 documents (1 pages) waiting for OCR" in status, status
            assert "(OCR only) running" in status and "OCR UNAVAILABLE" in status, status
            listed = run_cli(missing, "list").stdout
            assert "waiting.png  (waiting for OCR)" in listed, listed
            doc = document(db_url, "waiting.png")
            assert doc is not None and (doc["status"], doc["attempts"]) == ("pending", 0)
        assert idle.proc is not None and idle.proc.returncode == 0

        # A worker that can read takes it; one killed mid-document leaves it to the next.
        drop(inbox, "scan.pdf", scan_pdf("pelican"))
        wait_document(db_url, "scan.pdf", "ingested", lambda d: d["state"] is not None,
                      alive=daemon.assert_alive)
        first = WorkerProcess(fast, tmp_path / "first.log").start()
        try:
            wait_document(db_url, "scan.pdf", "being read", _running(db_url, "scan.pdf"),
                          alive=first.assert_alive)
        finally:
            first.kill()
        with WorkerProcess(fast, tmp_path / "second.log") as second:
            scan = wait_document(db_url, "scan.pdf", "OCR'd by the second worker",
                                 lambda d: d["state"] == "done", alive=second.assert_alive)
            assert scan["attempts"] == 2 and scan["status"] == "extracted"
            words = " ".join(scan["extracted_text"].split())
            assert words.count("ledger pelican") == 20, words
            waiting = wait_document(db_url, "waiting.png", "OCR'd once the engine is there",
                                    lambda d: d["state"] == "done", alive=second.assert_alive)
            assert "okapi" in waiting["extracted_text"].lower()

            # The database drops every connection, again and again, mid-document.
            drop(inbox, "outage.pdf", scan_pdf("toucan"))
            wait_document(db_url, "outage.pdf", "being read", _running(db_url, "outage.pdf"),
                          alive=second.assert_alive)
            cut_until = time.monotonic() + 2
            while time.monotonic() < cut_until:
                _terminate_connections(db_url)
                time.sleep(0.1)
            outage = wait_document(db_url, "outage.pdf", "OCR'd after the outage",
                                   lambda d: d["state"] == "done", alive=second.assert_alive)
            assert outage["status"] == "extracted"
            words = " ".join(outage["extracted_text"].split())
            assert words.count("ledger toucan") == 20, words
        assert second.proc is not None and second.proc.returncode == 0
        daemon.assert_alive()
    ids = {n: document(db_url, n)["id"] for n in ("waiting.png", "scan.pdf", "outage.pdf")}  # type: ignore[index]
    assert completions(db_url) == {ids[n]: 1 for n in ids}  # each OCR result written once
    leftover = query(db_url, "SELECT state, count(*) AS n FROM ocr_jobs GROUP BY state")
    assert leftover == [{"state": "done", "n": 3}]


def test_stopping_puts_the_document_being_read_back_uncounted(tmp_path: Path,
                                                               db_url: str) -> None:
    """In-process: the service stopped mid-document releases its lease at once (no waiting
    for it to expire) and the attempt is not counted."""
    data = scan_pdf("heron")
    sha = hashlib.sha256(data).hexdigest()
    store = tmp_path / "store"
    (store / sha[:2]).mkdir(parents=True)
    (store / sha[:2] / sha).write_bytes(data)
    settings = replace(Settings(), ocr=OcrSettings(workers=1, dpi=300, detect_orientation=False,
                                                   page_timeout_seconds=10, lease_seconds=60))
    db = Database(db_url, min_size=1, max_size=4)
    db.open(timeout=10)
    service = OcrService(settings, db, store_root=store, store_id=None, worker="in-process")
    try:
        service.start()
        with psycopg.connect(db_url) as conn:
            conn.execute("INSERT INTO documents (id, sha256, original_name, source_path, "
                         "mime_type, stored_path, status, metadata) VALUES "
                         "(%s, %s, 'heron.pdf', '/x', 'application/pdf', %s, 'pending', %s)",
                         (str(uuid.uuid4()), sha, f"{sha[:2]}/{sha}", Jsonb({})))
        wait_document(db_url, "heron.pdf", "being read", _running(db_url, "heron.pdf"))
        assert service.stop(timeout=20)
    finally:
        service.stop(timeout=5)
        db.close()
    doc = document(db_url, "heron.pdf")
    assert doc is not None
    assert (doc["status"], doc["state"], doc["attempts"]) == ("pending", "queued", 0)
    assert query(db_url, "SELECT lease_owner FROM ocr_jobs") == [{"lease_owner": None}]


def test_two_worker_processes_share_the_queue_each_document_once(
        tmp_path: Path, db_url: str, listener: NotifyListener) -> None:
    """Two `alfrd worker` processes, woken together by one commit of 40 small images: every
    image is read, each exactly once, and both workers took part. One of them reports to a
    service manager: READY=1, WATCHDOG=1, STOPPING=1 on SIGTERM."""
    count_completions(db_url)
    config = ocr_config(tmp_path, write_config(tmp_path, db_url), "race.yaml")
    store = tmp_path / "var" / "store"
    notify = listener.env({"WATCHDOG_USEC": "2000000"})
    with WorkerProcess(config, tmp_path / "a.log", env=notify) as a, \
            WorkerProcess(config, tmp_path / "b.log") as b:
        listener.wait(lambda m: m.get("READY") == "1", 30, "READY=1", alive=a.assert_alive)
        rows = []
        for n in range(40):
            data = image_bytes(make_text_image(f"Item {n} marmot"), "png")
            sha = hashlib.sha256(data).hexdigest()
            (store / sha[:2]).mkdir(exist_ok=True)
            (store / sha[:2] / sha).write_bytes(data)
            rows.append((str(uuid.uuid4()), sha, f"item{n}.png", f"{sha[:2]}/{sha}"))
        with psycopg.connect(db_url) as conn, conn.cursor() as cur:
            cur.executemany("INSERT INTO documents (id, sha256, original_name, source_path, "
                            "mime_type, stored_path, status) VALUES "
                            "(%s, %s, %s, '/x', 'image/png', %s, 'pending')", rows)

        def all_done() -> bool:
            done = query(db_url, "SELECT count(*) AS n FROM ocr_jobs WHERE state = 'done'")
            return done[0]["n"] == 40

        wait_for(all_done, 90, "40 images read", alive=lambda: (a.assert_alive(),
                                                                b.assert_alive()))
        listener.wait(lambda m: m.get("WATCHDOG") == "1", 10, "WATCHDOG=1",
                      alive=a.assert_alive)
    assert (a.proc.returncode, b.proc.returncode) == (0, 0)  # type: ignore[union-attr]
    listener.wait(lambda m: m.get("STOPPING") == "1", 5, "STOPPING=1")
    assert completions(db_url) == {r[0]: 1 for r in rows}
    read = {w: w.log().count("alfrd.ocr OCR of item") for w in (a, b)}
    assert sum(read.values()) == 40 and all(read.values()), read
    texts = query(db_url, "SELECT count(*) AS n FROM documents WHERE extracted_text ILIKE "
                  "'%%marmot%%' AND status = 'extracted'")
    assert texts == [{"n": 40}]
