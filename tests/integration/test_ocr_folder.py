"""An ALFRD document folder whose pages are a text note, a phone photo and a scanned PDF is one
document, and OCR reads it whole: its text ends with every page's words in page order, not only
the note's. Before, such a folder stayed pending for ever (its type is not an image's)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from tests.helpers import DaemonProcess, query, wait_for, write_config
from tests.integration.test_ocr_stage import OCR_FAST
from tests.ocr_samples import image_bytes, image_pdf, make_text_image
from tests.samples import write_folder_document


def test_a_document_folder_with_photo_and_scan_pages_is_read_whole(tmp_path: Path,
                                                                   db_url: str) -> None:
    config = write_config(tmp_path, db_url, ocr={"enabled": True, **OCR_FAST})
    doc_id = str(uuid.uuid4())
    staging = tmp_path / "staging"
    staging.mkdir()
    write_folder_document(staging / "receipt", doc_id, {
        "note.txt": b"Handwritten note about the pelican order\n",
        "photo.jpg": image_bytes(make_text_image("Receipt walrus total"), "jpeg"),
        "scan.pdf": image_pdf([make_text_image("Delivery heron signed")]),
    }, tags=["shop"])
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        (staging / "receipt").rename(tmp_path / "inbox" / "receipt")

        def read() -> dict[str, Any] | None:
            rows = query(db_url, "SELECT d.status, d.extractor, d.extracted_text, d.metadata, "
                         "j.state FROM documents d JOIN ocr_jobs j ON j.document_id = d.id "
                         "WHERE d.id = %s", (doc_id,))
            return rows[0] if rows and rows[0]["state"] in ("done", "failed") else None

        doc = wait_for(read, 60, "the folder to be OCR'd", alive=daemon.assert_alive)
    assert (doc["status"], doc["extractor"]) == ("extracted", "ocr/1"), doc
    text = doc["extracted_text"].lower()
    order = [text.find(word) for word in ("pelican", "walrus", "heron")]
    assert -1 not in order and order == sorted(order), text
    assert (doc["metadata"]["ocr"]["pages"], doc["metadata"]["ocr"]["ocr_pages"]) == (3, 2)
    assert [p["file"] for p in doc["metadata"]["folder"]["pages"]] == \
        ["note.txt", "photo.jpg", "scan.pdf"]  # ingest's record of the pages is kept
