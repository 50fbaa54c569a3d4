"""An ALFRD DuckDB database as the old ALFRD left it, with the files it pointed to.

Built from tests/fixtures/alfrd_duckdb_schema.sql. The rows are chosen to hit every case the
importer must handle: unicode (CJK, emoji, NFD), NULLs, a 1 MB JSON value, two documents with
the same bytes, an id that is not a UUID, a missing file, a file that moved (found only with
--files-root), a document folder with meta.json and pages, and rows in every other table.
"""

from __future__ import annotations

import json
import shutil
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb

SCHEMA = Path(__file__).resolve().parent.parent / "fixtures" / "alfrd_duckdb_schema.sql"

BILL = "0b6a4a3e-3f51-4c8e-9a57-1d2f7c1c0001"
CJK = "0b6a4a3e-3f51-4c8e-9a57-1d2f7c1c0002"
BILL_COPY = "0b6a4a3e-3f51-4c8e-9a57-1d2f7c1c0003"
BAD_ID = "not-a-uuid-42"
MISSING = "0b6a4a3e-3f51-4c8e-9a57-1d2f7c1c0005"
FOLDER = "0b6a4a3e-3f51-4c8e-9a57-1d2f7c1c0006"
BARE = "0b6a4a3e-3f51-4c8e-9a57-1d2f7c1c0007"
MOVED = "0b6a4a3e-3f51-4c8e-9a57-1d2f7c1c0008"
UPPER = "0B6A4A3E-3F51-4C8E-9A57-1D2F7C1C0009"

BILL_BYTES = b"%PDF-1.4\n% Stadtwerke electricity bill, March 2024, total 42.10 EUR\n"
NFD_NAME = unicodedata.normalize("NFD", "Rechnung_Müller_Größe.txt")


@dataclass
class Source:
    path: Path
    old_root: Path      # files where ALFRD left them
    new_root: Path      # where the moved files live now (--files-root)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    @property
    def valid_documents(self) -> list[str]:
        return [i for i in self.documents if i != BAD_ID]


def big_json() -> dict[str, Any]:
    """About 1 MB of structured_data, as a long itemised statement would give."""
    items = [{"line": i, "text": f"Posten {i} — 東京 ✓", "amount": f"{i}.{i % 100:02d}"}
             for i in range(12_000)]
    return {"vendor": "Stadtwerke", "items": items, "total": 42.10}


def build(tmp: Path) -> Source:
    old = tmp / "oldhost" / "alfrd" / "data" / "documents"
    new_root = tmp / "newroot"
    old.mkdir(parents=True)
    src = Source(path=tmp / "alfrd.duckdb", old_root=old, new_root=new_root)

    def put(rel: str, data: bytes) -> str:
        path = old / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return str(path)

    bill_path = put("bill_20240301_100000/raw.pdf", BILL_BYTES)
    copy_path = put("bill_copy_20240305_080000/raw.pdf", BILL_BYTES)
    cjk_path = put(f"cjk_20240302_120000/{NFD_NAME}", "東京の請求書 🧾 合計 ¥5,000\n".encode())
    upper_path = put("upper_20240310_090000/note.txt", b"nul \x00 inside\n")
    folder = old / "scan_20240303_154500"
    folder.mkdir()
    (folder / "p1.txt").write_text("Seite eins: Kontoauszug\n", encoding="utf-8")
    (folder / "p2.jpg").write_bytes(b"\xff\xd8\xff\xe0fake-jpeg-page-two")
    meta = {"id": FOLDER, "created_at": "2024-03-03T15:45:00Z",
            "documents": [{"file": "p1.txt", "type": "text", "order": 1},
                          {"file": "p2.jpg", "type": "image", "order": 2}],
            "metadata": {"source": "scanner", "tags": ["bank", "scans"],
                         "original_filename": "kontoauszug.pdf"}}
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    moved_new = new_root / "documents" / "moved_20240308_070000" / "scan.pdf"
    moved_new.parent.mkdir(parents=True)
    moved_new.write_bytes(b"%PDF-1.4\n% moved insurance letter\n")
    moved_old = "/old/host/alfrd/data/documents/moved_20240308_070000/scan.pdf"

    docs: list[dict[str, Any]] = [
        _doc(BILL, "raw.pdf", bill_path, "completed", datetime(2024, 3, 1, 10, 0, 0),
             extracted_text="Stadtwerke electricity bill March 2024, total 42.10 EUR",
             tags=["bills", "utilities"], secondary_tags=["2024", "strom"],
             document_type="bill", classification_confidence=0.93, confidence=0.9,
             classification_reasoning="Has an amount due and a due date.", category="bill",
             subcategory="electricity", vendor="Stadtwerke", amount=Decimal("42.10"),
             currency="EUR", due_date=date(2024, 3, 20), issue_date=date(2024, 3, 1),
             user_id="user-1", summary="Electricity bill, March 2024",
             structured_data=big_json(), processed_at=datetime(2024, 3, 1, 10, 5, 0),
             mime_type="application/pdf", file_size=len(BILL_BYTES)),
        _doc(CJK, NFD_NAME, cjk_path, "classifying", datetime(2024, 3, 2, 12, 0, 0),
             extracted_text="東京の請求書 🧾 合計 ¥5,000 — Müller (NFD: " + NFD_NAME + ")",
             tags=["請求書", "🧾"], secondary_tags=[], mime_type="text/plain",
             document_type="bill", summary="東京の請求書 🧾"),
        _doc(BILL_COPY, "raw.pdf", copy_path, "completed", datetime(2024, 3, 5, 8, 0, 0),
             extracted_text="Stadtwerke electricity bill March 2024 (scanned twice)",
             tags=["bills"], vendor="Stadtwerke", amount=Decimal("42.10")),
        _doc(BAD_ID, "bad.txt", str(old / "bad.txt"), "completed",
             datetime(2024, 3, 6, 9, 0, 0), extracted_text="a row whose id is not a UUID"),
        _doc(MISSING, "gone.pdf", "/old/host/alfrd/data/documents/gone_1/gone.pdf", "failed",
             datetime(2024, 3, 7, 9, 0, 0), error_message="Textract timed out",
             extracted_text=None),
        _doc(FOLDER, "scan_20240303_154500", str(folder), "ocr_completed",
             datetime(2024, 3, 3, 15, 45, 0), file_type="folder", raw_document_path=None,
             folder_path=str(folder), folder_metadata=meta,
             extracted_text="Seite eins: Kontoauszug", tags=["bank"]),
        {"id": BARE, "filename": "bare.bin", "original_path": "/inbox/bare.bin",
         "file_type": "bin", "status": "pending", "created_at": None, "updated_at": None},
        _doc(MOVED, "scan.pdf", moved_old, "summarized", datetime(2024, 3, 8, 7, 0, 0),
             extracted_text="Insurance letter", tags=["insurance"]),
        _doc(UPPER, "note.txt", upper_path, "scored_classification",
             datetime(2024, 3, 10, 9, 0, 0), extracted_text="nul \x00 inside",
             tags=["notes"]),
    ]
    src.documents = {d["id"]: d for d in docs}
    src.tables = {
        "summaries": [
            {"id": "5a000000-0000-4000-8000-000000000001", "period_type": "monthly",
             "period_start": date(2024, 3, 1), "period_end": date(2024, 3, 31),
             "category": "bill", "summary_text": "Two bills in March: 42.10 EUR and ¥5,000 🧾",
             "summary_markdown": "# März\n- Strom", "document_count": 2,
             "total_amount": Decimal("1234567890.12"),
             "document_ids": json.dumps([BILL, CJK]),
             "generated_at": datetime(2024, 4, 1, 0, 0, 0),
             "updated_at": datetime(2024, 4, 1, 0, 0, 0), "user_id": "user-1",
             "llm_model": "claude"},
            {"id": "5a000000-0000-4000-8000-000000000002", "period_type": "weekly",
             "period_start": date(2024, 3, 4), "period_end": date(2024, 3, 10),
             "category": None, "summary_text": "Nothing much.", "summary_markdown": None,
             "document_count": None, "total_amount": None, "document_ids": None,
             "generated_at": None, "updated_at": None, "user_id": None, "llm_model": None},
        ],
        "processing_events": [
            {"id": "e0000000-0000-4000-8000-000000000001", "event_type": "ocr",
             "document_id": BILL, "status": "completed",
             "payload": json.dumps({"pages": 1, "engine": "textract"}),
             "error_message": None, "created_at": datetime(2024, 3, 1, 10, 0, 1),
             "processed_at": datetime(2024, 3, 1, 10, 0, 9), "user_id": "user-1"},
            {"id": "e0000000-0000-4000-8000-000000000002", "event_type": "classify",
             "document_id": BILL_COPY, "status": "failed", "payload": None,
             "error_message": "rate limited", "created_at": datetime(2024, 3, 5, 8, 0, 1),
             "processed_at": None, "user_id": None},
            {"id": "e0000000-0000-4000-8000-000000000003", "event_type": "ocr",
             "document_id": "doc-7", "status": "pending", "payload": None,
             "error_message": None, "created_at": datetime(2024, 3, 9, 8, 0, 1),
             "processed_at": None, "user_id": None},
        ],
        "analytics": [
            {"id": "a0000000-0000-4000-8000-000000000001", "metric_name": "monthly_spend",
             "category": "bill", "period": date(2024, 3, 1), "value": Decimal("42.10"),
             "metadata": json.dumps({"currency": "EUR"}),
             "calculated_at": datetime(2024, 4, 1, 1, 0, 0), "user_id": "user-1"},
        ],
        "prompts": [
            {"id": "b0000000-0000-4000-8000-000000000001", "prompt_type": "classifier",
             "document_type": None, "prompt_text": "Classify this document. Antworte kurz.",
             "version": 3, "performance_score": 0.75,
             "performance_metrics": json.dumps({"accuracy": 0.8, "runs": 12}),
             "created_at": datetime(2024, 1, 1, 0, 0, 0),
             "updated_at": datetime(2024, 2, 1, 0, 0, 0), "is_active": True,
             "user_id": None},
            {"id": "b0000000-0000-4000-8000-000000000002", "prompt_type": "summarizer",
             "document_type": "bill", "prompt_text": "Summarise the bill.", "version": 1,
             "performance_score": None, "performance_metrics": None, "created_at": None,
             "updated_at": None, "is_active": False, "user_id": "user-1"},
        ],
        "classification_suggestions": [
            {"id": "c0000000-0000-4000-8000-000000000001", "suggested_type": "utility_bill",
             "document_id": BILL, "confidence": 0.5, "reasoning": "Looks like a utility bill",
             "approved": False, "reviewed_at": None,
             "created_at": datetime(2024, 3, 1, 10, 2, 0), "user_id": None},
        ],
        "document_types": [
            {"id": "d0000000-0000-4000-8000-000000000001", "type_name": "bill",
             "description": "Bills to pay", "is_active": True, "usage_count": 3,
             "created_at": datetime(2024, 1, 1, 0, 0, 0), "user_id": None},
            {"id": "d0000000-0000-4000-8000-000000000002", "type_name": "junk",
             "description": None, "is_active": False, "usage_count": 0,
             "created_at": None, "user_id": None},
        ],
    }
    write(src)
    return src


def _doc(doc_id: str, filename: str, path: str, status: str, created: datetime,
         **values: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": doc_id, "filename": filename, "original_path": path,
        "file_type": filename.rsplit(".", 1)[-1] if "." in filename else "file",
        "status": status, "created_at": created, "updated_at": created,
        "raw_document_path": path, "currency": "USD",
    }
    row.update(values)
    for key in ("tags", "secondary_tags", "structured_data", "folder_metadata"):
        if key in row and row[key] is not None:
            row[key] = json.dumps(row[key], ensure_ascii=False)
    return row


def write(src: Source) -> None:
    con = duckdb.connect(str(src.path))
    try:
        con.execute(SCHEMA.read_text(encoding="utf-8"))
        _insert(con, "documents", list(src.documents.values()))
        for table, rows in src.tables.items():
            _insert(con, table, rows)
    finally:
        con.close()


def _insert(con: Any, table: str, rows: list[dict[str, Any]]) -> None:
    """Through DuckDB's relation API: values in column order, absent ones NULL."""
    relation = con.table(table)
    for row in rows:
        unknown = set(row) - set(relation.columns)
        assert not unknown, f"{table} has no columns {unknown}"
        relation.insert([row.get(column) for column in relation.columns])


def remove_old_files(src: Source) -> None:
    shutil.rmtree(src.old_root)
