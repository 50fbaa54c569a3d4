"""The OCR queue against real PostgreSQL: the enqueue trigger and the back-fill of migration
005, claims racing under FOR UPDATE SKIP LOCKED, leases that expire and are taken over, and
failures counted up to max_attempts."""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from alfrd_daemon.db.migrations import migrate, migrations
from alfrd_daemon.db.pool import Database
from alfrd_daemon.ocr.queue import OcrQueue
from alfrd_daemon.ocr.queue import Q as QUERIES_OCR
from alfrd_daemon.ocr.reader import ocr_mime_types
from tests.helpers import query, wait_for


def insert_document(url: str, *, mime: str = "image/png", status: str = "pending",
                    name: str | None = None) -> str:
    doc_id = str(uuid.uuid4())
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO documents (id, sha256, original_name, source_path, mime_type, "
            "stored_path, status, metadata) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (doc_id, uuid.uuid4().hex * 2, name or f"{doc_id}.png", f"/inbox/{doc_id}", mime,
             f"ab/{doc_id}", status, Jsonb({})))
    return doc_id


def job(url: str, doc_id: str) -> dict[str, Any]:
    return query(url, "SELECT * FROM ocr_jobs WHERE document_id = %s", (doc_id,))[0]


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url, min_size=1, max_size=4)
    database.open(timeout=10)
    try:
        yield database
    finally:
        database.close()


def test_the_sql_list_of_ocr_types_is_the_engines(db_url: str) -> None:
    (row,) = query(db_url, "SELECT prosrc FROM pg_proc WHERE proname = 'alfrd_ocr_mime'")
    assert set(re.findall(r"'([^']+)'", row["prosrc"])) == set(ocr_mime_types())
    for mime in sorted(ocr_mime_types()):
        assert query(db_url, "SELECT alfrd_ocr_mime(%s) AS ok", (mime,))[0]["ok"] is True
    for mime in ("text/plain", "image/svg+xml", None):
        assert query(db_url, "SELECT alfrd_ocr_mime(%s) AS ok", (mime,))[0]["ok"] is not True


def test_a_pending_image_is_queued_with_its_row_and_notified(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as listen:
        listen.execute("LISTEN alfrd_ocr")
        image = insert_document(db_url)
        note = next(listen.notifies(timeout=10, stop_after=1))
    assert note.payload == image
    assert job(db_url, image)["state"] == "queued"
    text = insert_document(db_url, mime="text/plain")
    done = insert_document(db_url, status="extracted")
    assert query(db_url, "SELECT document_id FROM ocr_jobs WHERE document_id IN (%s, %s)",
                 (text, done)) == []


def test_the_migration_back_fills_documents_already_pending(empty_db_url: str) -> None:
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text "
                     "NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        for version, name, sql in migrations():
            if version < 5:
                conn.execute(sql.encode())
                conn.execute("INSERT INTO schema_migrations VALUES (%s, %s)", (version, name))
        conn.commit()
    waiting = insert_document(empty_db_url)
    insert_document(empty_db_url, status="extracted")
    with psycopg.connect(empty_db_url) as conn:
        assert migrate(conn)[0] == "005_ocr"
    rows = query(empty_db_url, "SELECT document_id::text AS id, state FROM ocr_jobs")
    assert rows == [{"id": waiting, "state": "queued"}]


def complete(queue: OcrQueue, found: Any, text: str = "words") -> bool:
    return queue.complete(found, text=text, extractor="ocr/1", pages=1,
                          ocr={"engine": "test", "pages": 1})


def test_two_workers_racing_complete_each_document_exactly_once(db_url: str) -> None:
    docs = {insert_document(db_url) for _ in range(40)}
    done: dict[str, list[str]] = {"a": [], "b": []}
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def worker(name: str) -> None:
        database = Database(db_url, min_size=1, max_size=2)
        database.open(timeout=10)
        queue = OcrQueue(database, worker=name, lease_seconds=60, max_attempts=3)
        try:
            start.wait()
            while (found := queue.claim()) is not None:
                if complete(queue, found, text=f"page of {found.document_id} by {name}"):
                    done[name].append(found.document_id)
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            database.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in done]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sorted(done["a"] + done["b"]) == sorted(docs)  # each once, none lost
    assert done["a"] and done["b"], "both workers took part"
    rows = query(db_url, "SELECT d.status, j.state, j.attempts, count(*) AS n FROM documents d "
                 "JOIN ocr_jobs j ON j.document_id = d.id GROUP BY 1, 2, 3")
    assert rows == [{"status": "extracted", "state": "done", "attempts": 1, "n": 40}]
    text = query(db_url, "SELECT count(*) AS n FROM documents WHERE search_vector @@ "
                 "to_tsquery('english', 'page')")
    assert text == [{"n": 40}]  # the generated search vector followed the text


def test_an_expired_lease_goes_to_another_worker_and_the_first_cannot_complete(
        db: Database, db_url: str) -> None:
    doc = insert_document(db_url)
    first = OcrQueue(db, worker="first", lease_seconds=1, max_attempts=3)
    second = OcrQueue(db, worker="second", lease_seconds=60, max_attempts=3)
    held = first.claim()
    assert held is not None and held.document_id == doc
    assert second.claim() is None  # leased
    taken = wait_for(second.claim, 15, "the lease to expire")
    assert taken.document_id == doc and taken.attempts == 2
    assert first.renew(held, 1, 2) is False
    assert complete(first, held) is False
    assert first.fail(held, "late", 0) == "lost"
    assert complete(second, taken) is True
    row = job(db_url, doc)
    assert (row["state"], row["lease_owner"]) == ("done", None)


def test_failures_count_up_to_max_attempts_then_the_document_fails(
        db: Database, db_url: str) -> None:
    doc = insert_document(db_url)
    queue = OcrQueue(db, worker="w", lease_seconds=60, max_attempts=2)
    found = queue.claim()
    assert found is not None
    # Not the document's fault: released, not counted.
    assert queue.release(found)
    found = queue.claim()
    assert found is not None and found.attempts == 1
    assert queue.fail(found, "page 1 of 1: unreadable image", 0) == "queued"
    found = queue.claim()
    assert found is not None and found.attempts == 2
    assert queue.fail(found, "page 1 of 1: unreadable image", 0) == "failed"
    assert queue.claim() is None
    (row,) = query(db_url, "SELECT status, error FROM documents WHERE id = %s", (doc,))
    assert row == {"status": "failed",
                   "error": "OCR failed (2 attempts): page 1 of 1: unreadable image"}
    assert job(db_url, doc)["last_error"] == "page 1 of 1: unreadable image"


def test_a_document_in_the_trash_is_not_read_nor_waited_for(db_url: str, db: Database) -> None:
    """A trashed document waiting for OCR is neither claimed nor counted; a worker does not
    wake up for it (next_due); restored, it is read as before."""
    queue = OcrQueue(db, worker="w", lease_seconds=30, max_attempts=3)
    doc_id = insert_document(db_url)
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE documents SET deleted_at = now() WHERE id = %s", (doc_id,))
    assert queue.claim() is None
    assert queue.next_due_seconds() is None
    summary = query(db_url, re.sub(r"%\((\w+)\)s", "NULL", QUERIES_OCR["ocr_queue_summary"]))
    assert summary[0]["documents_waiting"] == 0
    with psycopg.connect(db_url) as conn:
        conn.execute("UPDATE documents SET deleted_at = NULL WHERE id = %s", (doc_id,))
    found = queue.claim()
    assert found is not None and found.document_id == doc_id
