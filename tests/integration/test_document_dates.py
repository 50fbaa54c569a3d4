"""The document's date end to end: a running daemon dates a text file, a PDF and a file
named by its date at ingest, and an image once OCR has read it; a date set by hand survives
OCR and a re-extraction; `alfrd show` prints the date and the other candidates."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docx
import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from alfrd_daemon.config.parse import load_settings
from alfrd_daemon.dates import DateOptions, find_dates
from alfrd_daemon.db.pool import Database
from alfrd_daemon.ingest.reextract import reextract_stale
from alfrd_daemon.ocr.queue import OcrQueue
from tests.helpers import DaemonProcess, query, run_cli, wait_for, write_config
from tests.ocr_samples import image_bytes, make_text_image
from tests.samples import make_pdf

OCR_FAST = {"workers": 1, "dpi": 150, "detect_orientation": False, "max_attempts": 2,
            "page_timeout_seconds": 10, "lease_seconds": 30, "poll_seconds": 60}


def row(db_url: str, name: str) -> dict[str, Any] | None:
    rows = query(db_url, "SELECT id::text AS id, status, extractor, document_date, metadata "
                 "FROM documents WHERE original_name = %s", (name,))
    return rows[0] if rows else None


def drop(inbox: Path, name: str, data: bytes) -> None:
    temp = inbox.parent / f".{name}.part"
    temp.write_bytes(data)
    temp.rename(inbox / name)


def test_the_daemon_dates_text_pdf_file_names_and_scans(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url, ocr={"enabled": True, **OCR_FAST})
    inbox = tmp_path / "inbox"
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        drop(inbox, "letter.txt", "Rechnung Nr. 4711\nBerlin, den 5. März 2024\n"
             "Leistungszeitraum Februar 2024, Kundennummer seit 01.01.2010\n".encode())
        drop(inbox, "statement.pdf", make_pdf(["Statement date: April 17, 2023",
                                               "Due by 17/05/2023"]))
        drop(inbox, "IMG_20230102_101500.txt", b"a note without any date in it")
        drop(inbox, "scan.png", image_bytes(make_text_image(
            "Invoice date 12.05.2022 total due"), "png"))

        def dated(name: str, extractor: str = "") -> dict[str, Any] | None:
            r = row(db_url, name)
            return r if r is not None and r["extractor"].startswith(extractor) else None

        letter = wait_for(lambda: dated("letter.txt"), 30, "letter.txt",
                          alive=daemon.assert_alive)
        assert letter["document_date"] == dt.date(2024, 3, 5)
        assert letter["metadata"]["date_found"]["text"] == "5. März 2024"
        assert [(s["date"], s["precision"]) for s in letter["metadata"]["date_suggestions"]] == [
            ("2010-01-01", "day"), ("2024-02", "month")]

        pdf = wait_for(lambda: dated("statement.pdf"), 30, "statement.pdf",
                       alive=daemon.assert_alive)
        assert pdf["document_date"] == dt.date(2023, 4, 17)
        assert [s["date"] for s in pdf["metadata"]["date_suggestions"]] == ["2023-05-17"]

        named = wait_for(lambda: dated("IMG_20230102_101500.txt"), 30, "the named note",
                         alive=daemon.assert_alive)
        assert named["document_date"] == dt.date(2023, 1, 2)
        assert named["metadata"]["date_found"]["source"] == "filename"

        scan = wait_for(lambda: dated("scan.png", "ocr/"), 60, "the scan read by OCR",
                        alive=daemon.assert_alive, interval=0.1)
        assert scan["status"] == "extracted"
        assert scan["document_date"] == dt.date(2022, 5, 12), scan["metadata"]
        assert scan["metadata"]["date_found"]["text"] == "12.05.2022"
        assert "ocr" in scan["metadata"]  # OCR's own metadata kept beside the dates

        shown = run_cli(config, "show", letter["id"]).stdout
        assert "document_date: 2024-03-05\n" in shown, shown
        assert "date read: from the text, '5. März 2024'" in shown, shown
        assert "other dates: 2010-01-01 (day, text: '01.01.2010')" in shown, shown
        assert "2024-02 (month, text: 'Februar 2024')" in shown, shown
        as_json = json.loads(run_cli(config, "show", letter["id"], "--json").stdout)
        assert as_json["document_date"] == "2024-03-05"
        assert as_json["user_fields"] == []


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url, min_size=1, max_size=2)
    database.open(timeout=10)
    try:
        yield database
    finally:
        database.close()


def pending_image(db_url: str, *, user_fields: list[str], date: dt.date | None) -> str:
    doc_id = str(uuid.uuid4())
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO documents (id, sha256, original_name, source_path, mime_type, "
            "stored_path, status, metadata, user_fields, document_date) "
            "VALUES (%s, %s, %s, %s, 'image/png', %s, 'pending', %s, %s, %s)",
            (doc_id, uuid.uuid4().hex * 2, f"{doc_id}.png", f"{doc_id}.png", f"ab/{doc_id}",
             Jsonb({"kept": True}), user_fields, date))
    return doc_id


def test_ocr_completion_dates_the_document_unless_the_user_set_the_date(
        db_url: str, db: Database) -> None:
    by_hand = pending_image(db_url, user_fields=["document_date"], date=dt.date(2001, 2, 3))
    automatic = pending_image(db_url, user_fields=["title"], date=dt.date(2001, 2, 3))
    found = find_dates("Datum 12.05.2022, Mai 2022", None, DateOptions(), dt.date(2026, 1, 1))
    queue = OcrQueue(db, worker="test", lease_seconds=30, max_attempts=2, store_id=None)
    done = set()
    while (job := queue.claim()) is not None:
        assert queue.complete(job, text="Datum 12.05.2022", extractor="ocr/1", pages=1,
                              ocr={"pages": 1}, dates=found)
        done.add(job.document_id)
    assert done == {by_hand, automatic}
    rows = {r["id"]: r for r in query(db_url, "SELECT id::text AS id, document_date, metadata "
                                      "FROM documents")}
    assert rows[automatic]["document_date"] == dt.date(2022, 5, 12)
    assert rows[by_hand]["document_date"] == dt.date(2001, 2, 3)
    for r in rows.values():  # the candidates are recorded either way, beside what was there
        meta = r["metadata"]
        assert meta["kept"] is True and meta["ocr"] == {"pages": 1}
        assert meta["date_found"]["date"] == "2022-05-12"
        assert [s["date"] for s in meta["date_suggestions"]] == ["2022-05"]


def test_a_document_read_again_from_the_store_is_dated(tmp_path: Path, db_url: str) -> None:
    settings = load_settings(str(write_config(tmp_path, db_url)), environ={})
    settings.store_path.mkdir(parents=True)
    document = docx.Document()
    document.add_paragraph("Kündigungsbestätigung vom 7. Oktober 2021")
    document.save(str(settings.store_path / "letter"))
    mime = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        for i, (name, fields) in enumerate((("auto.docx", []), ("kept.docx", ["document_date"]))):
            conn.execute("INSERT INTO documents (sha256, original_name, source_path, status, "
                         "extracted_text, extractor, mime_type, stored_path, metadata, "
                         "user_fields, document_date) "
                         "VALUES (%s, %s, %s, 'pending', '', 'none/1', %s, 'letter', '{}', %s, "
                         "'2000-01-01')", (f"{i:064x}", name, name, mime, fields))
        counts = reextract_stale(settings, conn, batch_size=10, check=lambda: None)
    assert counts["reextracted"] == 2
    found = {r["original_name"]: r for r in query(
        db_url, "SELECT original_name, status, document_date, metadata FROM documents")}
    assert found["auto.docx"]["status"] == "extracted"
    assert found["auto.docx"]["document_date"] == dt.date(2021, 10, 7)
    assert found["auto.docx"]["metadata"]["date_found"]["text"] == "7. Oktober 2021"
    assert found["kept.docx"]["document_date"] == dt.date(2000, 1, 1)
