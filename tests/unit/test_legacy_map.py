"""The pure ALFRD ↔ ours row mapping."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from alfrd_daemon.legacy.mapping import (
    ALFRD_DOCUMENT_COLUMNS,
    LEGACY_BY_SOURCE,
    STATUS_MAP,
    FileFacts,
    Rejected,
    alfrd_document,
    alfrd_legacy_row,
    arrival_row,
    check_document,
    document_row,
    json_safe,
    legacy_row,
    map_status,
    parse_json,
    parse_uuid,
    reject_data,
    rejected_row,
    restore,
    table_checksum,
    text_digest,
    to_naive,
    to_timestamptz,
)

UTC_ZONE = ZoneInfo("UTC")
DOC_ID = "7b0c3f0e-9a8e-4f5c-9d61-2f4f3c2b1a00"
JSON_COLUMNS = frozenset({"tags", "secondary_tags", "structured_data", "folder_metadata"})


def alfrd_row(**values: object) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(name for name, _ in ALFRD_DOCUMENT_COLUMNS)
    row.update(id=DOC_ID, filename="bill.pdf", original_path="/old/bill.pdf", file_type="pdf",
               status="completed", created_at=datetime(2024, 3, 1, 10, 0),
               updated_at=datetime(2024, 3, 2, 11, 0))
    row.update(values)
    return row


@pytest.mark.parametrize(("alfrd", "ours"), [
    ("pending", "pending"), ("ocr_started", "pending"), ("ocr_completed", "extracted"),
    ("classifying", "processing"), ("classified", "processing"),
    ("scoring_classification", "processing"), ("scored_classification", "processing"),
    ("summarizing", "processing"), ("summarized", "processing"),
    ("scoring_summary", "processing"), ("completed", "completed"), ("failed", "failed"),
])
def test_every_alfrd_status_maps_to_ours(alfrd: str, ours: str) -> None:
    assert map_status(alfrd) == ours


def test_unknown_status_is_none_and_becomes_pending_in_the_row() -> None:
    assert map_status("teleported") is None and map_status(None) is None
    row = document_row(alfrd_row(status="teleported"), FileFacts(), json_columns=JSON_COLUMNS,
                       zone=UTC_ZONE, search_config="english", source="x.duckdb")
    assert row["status"] == "pending"
    assert row["metadata"]["alfrd"]["status"] == "teleported"
    assert set(STATUS_MAP.values()) <= {"pending", "extracted", "processing", "completed",
                                        "failed"}


@pytest.mark.parametrize("value", ["nope", "", None, 42, "7b0c3f0e-9a8e-4f5c-9d61",
                                   "7b0c3f0e-9a8e-4f5c-9d61-2f4f3c2b1a00x"])
def test_bad_ids_are_rejected_not_invented(value: object) -> None:
    assert parse_uuid(value) is None
    with pytest.raises(Rejected, match="is not a UUID"):
        check_document(alfrd_row(id=value), UTC_ZONE)


def test_uuid_spellings_are_accepted_and_the_original_kept() -> None:
    upper = DOC_ID.upper()
    assert parse_uuid(upper) == uuid.UUID(DOC_ID)
    row = document_row(alfrd_row(id=upper), FileFacts(), json_columns=JSON_COLUMNS,
                       zone=UTC_ZONE, search_config="english", source="x")
    assert row["id"] == uuid.UUID(DOC_ID)
    assert row["metadata"]["alfrd"]["original_id"] == upper


def test_zone_less_timestamps_are_read_in_the_given_zone() -> None:
    naive = datetime(2024, 7, 1, 12, 0)
    assert to_timestamptz(naive, UTC_ZONE) == datetime(2024, 7, 1, 12, 0, tzinfo=UTC)
    berlin = to_timestamptz(naive, ZoneInfo("Europe/Berlin"))
    assert berlin == datetime(2024, 7, 1, 10, 0, tzinfo=UTC)  # summer time, +2
    assert to_naive(berlin, ZoneInfo("Europe/Berlin")) == naive
    assert to_timestamptz("2024-07-01T12:00:00", UTC_ZONE) == datetime(2024, 7, 1, 12,
                                                                      tzinfo=UTC)
    with pytest.raises(Rejected):
        check_document(alfrd_row(created_at="yesterday"), UTC_ZONE)


def test_document_row_keeps_every_alfrd_column() -> None:
    source = alfrd_row(
        vendor="Stadtwerke", amount=Decimal("42.10"), due_date=date(2024, 3, 20),
        tags='["bills", "utilities"]', secondary_tags='["2024", "bills"]',
        structured_data='{"total": 42.1, "k": "\\u0000x"}', summary="  Strom März  ",
        extracted_text="text \x00 with NUL", classification_confidence=0.5,
        error_message=None, user_id="u1")
    facts = FileFacts(sha256="a" * 64, stored_path="aa/aa/x", size=9, folder_tags=("scans",))
    row = document_row(source, facts, json_columns=JSON_COLUMNS, zone=UTC_ZONE,
                       search_config="german", source="/x.duckdb")
    alfrd = row["metadata"]["alfrd"]
    assert set(alfrd) == {name for name, _ in ALFRD_DOCUMENT_COLUMNS} - {"id", "extracted_text"}
    assert alfrd["amount"] == 42.1 and alfrd["due_date"] == "2024-03-20"
    assert alfrd["created_at"] == "2024-03-01T10:00:00"
    assert alfrd["structured_data"] == {"total": 42.1, "k": "x"}
    assert row["tags"] == ["bills", "utilities", "2024", "scans"]
    assert row["title"] == "Strom März"
    assert row["extracted_text"] == "text  with NUL" and row["extractor"] == "alfrd"
    assert (row["sha256"], row["stored_path"], row["size_bytes"]) == ("a" * 64, "aa/aa/x", 9)
    assert row["created_at"] == datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert row["search_config"] == "german"
    assert row["metadata"]["import"] == {"source": "/x.duckdb", "timezone": "UTC"}


def test_missing_files_leave_sha256_null_and_are_listed() -> None:
    row = document_row(alfrd_row(file_size=123), FileFacts(missing=("/old/bill.pdf",)),
                       json_columns=JSON_COLUMNS, zone=UTC_ZONE, search_config="english",
                       source="x")
    assert row["sha256"] is None and row["stored_path"] is None
    assert row["size_bytes"] == 123  # ALFRD's record, when we cannot measure
    assert row["metadata"]["import"]["missing_files"] == ["/old/bill.pdf"]


def test_arrival_is_keyed_by_the_alfrd_id() -> None:
    row = document_row(alfrd_row(), FileFacts(), json_columns=JSON_COLUMNS, zone=UTC_ZONE,
                       search_config="english", source="x")
    arrival = arrival_row(row, uuid.UUID(DOC_ID), "duplicate")
    assert arrival["claim_key"] == f"alfrd-import:{DOC_ID}"
    assert arrival["outcome"] == "duplicate" and arrival["arrived_at"] == row["created_at"]


def test_json_safe_values_restore_to_their_types() -> None:
    assert json_safe(Decimal("0.10")) == 0.1 and restore("decimal", 0.1) == Decimal("0.1")
    big = Decimal("12345678901234567890.12")
    assert json_safe(big) == str(big) and restore("decimal", json_safe(big)) == big
    assert json_safe(float("nan")) == "nan"
    assert json_safe(b"\x00\xff") == "\\x00ff"
    ts = datetime(2024, 1, 2, 3, 4, 5, 6)
    assert restore("timestamp", json_safe(ts)) == ts
    assert restore("date", json_safe(date(2024, 1, 2))) == date(2024, 1, 2)
    assert json.loads(restore("json", {"a": ["é"]})) == {"a": ["é"]}


def test_json_cleaning_removes_what_jsonb_refuses() -> None:
    assert json_safe({"k\x00": ["v\x00", float("inf")]}) == {"k": ["v", "inf"]}
    assert parse_json('{"a": NaN}') == {"a": "nan"}
    assert parse_json("not json") == "not json"


def test_legacy_row_types_and_extra_columns() -> None:
    table = LEGACY_BY_SOURCE["summaries"]
    row = legacy_row(table, {
        "id": "5a000000-0000-4000-8000-000000000001", "period_type": "monthly",
        "period_start": "2024-03-01", "total_amount": "12.50", "document_ids": "[1]",
        "generated_at": datetime(2024, 4, 1), "future_column": {"x": 1}}, UTC_ZONE)
    assert row["period_start"] == date(2024, 3, 1)
    assert row["total_amount"] == Decimal("12.50")
    assert row["document_ids"] == [1]
    assert row["generated_at"] == datetime(2024, 4, 1, tzinfo=UTC)
    assert row["extra"] == {"future_column": {"x": 1}}
    back = alfrd_legacy_row(table, row, UTC_ZONE)
    assert back["id"] == "5a000000-0000-4000-8000-000000000001"
    assert back["generated_at"] == datetime(2024, 4, 1) and back["document_ids"] == "[1]"


def test_legacy_row_rejects_a_bad_reference() -> None:
    table = LEGACY_BY_SOURCE["processing_events"]
    with pytest.raises(Rejected, match="document_id 'doc-7'"):
        legacy_row(table, {"id": str(uuid.uuid4()), "document_id": "doc-7"}, UTC_ZONE)
    with pytest.raises(Rejected, match="is not a UUID"):
        legacy_row(table, {"id": "e-1"}, UTC_ZONE)


def test_alfrd_document_round_trip_from_metadata() -> None:
    source = alfrd_row(amount=Decimal("42.10"), tags='["a"]', structured_data='{"x": [1]}',
                       due_date=date(2024, 3, 20), extracted_text="body", currency="EUR")
    row = document_row(source, FileFacts(sha256="b" * 64), json_columns=JSON_COLUMNS,
                       zone=UTC_ZONE, search_config="english", source="x")
    back = alfrd_document({**row, "duplicate_of": None}, zone=UTC_ZONE, store_root="/s")
    for name, kind in ALFRD_DOCUMENT_COLUMNS:
        if kind == "json" and source[name] is not None:
            assert json.loads(back[name]) == json.loads(str(source[name])), name
        else:
            assert back[name] == source[name], name
    assert back["pg_sha256"] == "b" * 64 and back["pg_tags"] == ["a"]
    assert "alfrd" not in json.loads(back["pg_metadata"])


def test_alfrd_document_prefers_alfrds_text_after_a_merge() -> None:
    doc = {"id": uuid.UUID(DOC_ID), "extracted_text": "ours", "status": "extracted",
           "metadata": {"alfrd": {"filename": "f", "status": "completed",
                                  "extracted_text": "theirs"}}}
    assert alfrd_document(doc, zone=UTC_ZONE, store_root=None)["extracted_text"] == "theirs"


def test_documents_the_daemon_ingested_get_derived_alfrd_columns() -> None:
    doc = {"id": uuid.UUID(DOC_ID), "original_name": "Scan.PDF", "source_path": "tax/Scan.PDF",
           "status": "extracted", "tags": ["tax"], "size_bytes": 5, "stored_path": "ab/cd/e",
           "created_at": datetime(2024, 1, 1, 12, tzinfo=UTC), "metadata": {}}
    out = alfrd_document(doc, zone=ZoneInfo("Europe/Berlin"), store_root="/var/store")
    assert (out["id"], out["filename"], out["file_type"], out["status"]) == (
        DOC_ID, "Scan.PDF", "pdf", "ocr_completed")
    assert out["created_at"] == datetime(2024, 1, 1, 13, 0)
    assert json.loads(out["tags"]) == ["tax"]
    assert out["raw_document_path"] == "/var/store/ab/cd/e"


def test_rejected_rows_come_back_as_they_were() -> None:
    source = alfrd_row(id="bad-id", tags='["x"]', amount=Decimal("1.50"))
    data = json.loads(json.dumps(reject_data(source, JSON_COLUMNS)))
    back = rejected_row(dict(ALFRD_DOCUMENT_COLUMNS), data)
    assert back["id"] == "bad-id" and json.loads(back["tags"]) == ["x"]
    assert back["amount"] == Decimal("1.5") and back["created_at"] == source["created_at"]


def test_checksums_are_order_free_and_tell_null_from_empty() -> None:
    assert text_digest(None) != text_digest("")
    assert table_checksum({"a": "1", "b": "2"}) == table_checksum({"b": "2", "a": "1"})
    assert table_checksum({"a": "1"}) != table_checksum({"a": "2"})
