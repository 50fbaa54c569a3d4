"""Pure mapping between ALFRD's DuckDB-era rows and ours, in both directions.

No I/O here: the importer and exporter read and write, these functions decide. Decisions worth
knowing (docs/alfrd-duckdb-import.md has the long form):

- ids are kept; an id that is not a UUID rejects its row (reported, never invented).
- ALFRD's TIMESTAMP has no zone; we read it as wall time in one zone (UTC unless told).
- every ALFRD column except id and extracted_text goes under metadata->'alfrd' exactly as
  read (timestamps as naive ISO text), so the export can give ALFRD its rows back unchanged.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from pathlib import PurePosixPath
from typing import Any
from zoneinfo import ZoneInfo

from alfrd_daemon.ingest.paths import merge_tags
from alfrd_daemon.pgsafe import clean_optional_text, clean_text

IMPORT_INSTANCE = "alfrd-import"
FOLDER_MIME = "application/x-alfrd-folder"

# ALFRD's pipeline states → ours. ocr_completed means "text extracted, nothing else yet",
# which is exactly our 'extracted'; the LLM steps after it are 'processing'. The later
# ALFRD states (ocr_in_progress, filed, series_*, permanently_failed) are mapped too, so a
# database from a newer ALFRD imports without surprises.
STATUS_MAP: dict[str, str] = {
    "pending": "pending",
    "ocr_started": "pending",
    "ocr_in_progress": "pending",
    "ocr_completed": "extracted",
    "classifying": "processing",
    "classified": "processing",
    "scoring_classification": "processing",
    "scored_classification": "processing",
    "summarizing": "processing",
    "summarized": "processing",
    "scoring_summary": "processing",
    "filed": "processing",
    "series_summarizing": "processing",
    "series_summarized": "processing",
    "series_scoring": "processing",
    "completed": "completed",
    "failed": "failed",
    "permanently_failed": "failed",
}
# Ours → ALFRD, for documents the daemon ingested itself (imported ones keep their own).
REVERSE_STATUS: dict[str, str] = {
    "pending": "pending",
    "extracted": "ocr_completed",
    "processing": "classifying",
    "completed": "completed",
    "failed": "failed",
}

# ALFRD's documents table, in its column order, with the kind of each value.
ALFRD_DOCUMENT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "text"), ("filename", "text"), ("original_path", "text"), ("file_type", "text"),
    ("file_size", "int"), ("mime_type", "text"), ("status", "text"),
    ("processed_at", "timestamp"), ("created_at", "timestamp"), ("updated_at", "timestamp"),
    ("error_message", "text"), ("document_type", "text"), ("suggested_type", "text"),
    ("secondary_tags", "json"), ("tags", "json"), ("classification_confidence", "float"),
    ("confidence", "float"), ("classification_reasoning", "text"), ("category", "text"),
    ("subcategory", "text"), ("vendor", "text"), ("amount", "decimal"), ("currency", "text"),
    ("due_date", "date"), ("issue_date", "date"), ("raw_document_path", "text"),
    ("extracted_text_path", "text"), ("metadata_path", "text"), ("folder_path", "text"),
    ("user_id", "text"), ("extracted_text", "text"), ("summary", "text"),
    ("structured_data", "json"), ("folder_metadata", "json"),
)
ALFRD_DOCUMENT_KINDS = dict(ALFRD_DOCUMENT_COLUMNS)
ALFRD_REQUIRED = ("filename", "original_path", "file_type", "status")  # NOT NULL in ALFRD


@dataclass(frozen=True)
class LegacyTable:
    """One ALFRD table kept as a legacy_* table: column kinds in ALFRD's order, and the text
    column whose checksum the verification compares."""

    source: str
    target: str
    columns: tuple[tuple[str, str], ...]
    checksum_column: str

    @property
    def kinds(self) -> dict[str, str]:
        return dict(self.columns)


LEGACY_TABLES: tuple[LegacyTable, ...] = (
    LegacyTable("document_types", "legacy_document_types", (
        ("id", "uuid"), ("type_name", "text"), ("description", "text"), ("is_active", "bool"),
        ("usage_count", "int"), ("created_at", "timestamp"), ("user_id", "text"),
    ), "type_name"),
    LegacyTable("prompts", "legacy_prompts", (
        ("id", "uuid"), ("prompt_type", "text"), ("document_type", "text"),
        ("prompt_text", "text"), ("version", "int"), ("performance_score", "float"),
        ("performance_metrics", "json"), ("created_at", "timestamp"),
        ("updated_at", "timestamp"), ("is_active", "bool"), ("user_id", "text"),
    ), "prompt_text"),
    LegacyTable("summaries", "legacy_summaries", (
        ("id", "uuid"), ("period_type", "text"), ("period_start", "date"),
        ("period_end", "date"), ("category", "text"), ("summary_text", "text"),
        ("summary_markdown", "text"), ("document_count", "int"), ("total_amount", "decimal"),
        ("document_ids", "json"), ("generated_at", "timestamp"), ("updated_at", "timestamp"),
        ("user_id", "text"), ("llm_model", "text"),
    ), "summary_text"),
    LegacyTable("processing_events", "legacy_processing_events", (
        ("id", "uuid"), ("event_type", "text"), ("document_id", "uuid"), ("status", "text"),
        ("payload", "json"), ("error_message", "text"), ("created_at", "timestamp"),
        ("processed_at", "timestamp"), ("user_id", "text"),
    ), "event_type"),
    LegacyTable("analytics", "legacy_analytics", (
        ("id", "uuid"), ("metric_name", "text"), ("category", "text"), ("period", "date"),
        ("value", "decimal"), ("metadata", "json"), ("calculated_at", "timestamp"),
        ("user_id", "text"),
    ), "metric_name"),
    LegacyTable("classification_suggestions", "legacy_classification_suggestions", (
        ("id", "uuid"), ("suggested_type", "text"), ("document_id", "uuid"),
        ("confidence", "float"), ("reasoning", "text"), ("approved", "bool"),
        ("reviewed_at", "timestamp"), ("created_at", "timestamp"), ("user_id", "text"),
    ), "reasoning"),
)
LEGACY_BY_SOURCE = {t.source: t for t in LEGACY_TABLES}


class Rejected(Exception):
    """This row cannot be imported as it is; `reason` says why (it is kept in legacy_rejects)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


# --- values ---------------------------------------------------------------------------------
def parse_uuid(value: object) -> uuid.UUID | None:
    """A UUID in any spelling PostgreSQL accepts, or None."""
    if isinstance(value, uuid.UUID):
        return value
    if not isinstance(value, str):
        return None
    try:
        return uuid.UUID(value.strip())
    except ValueError:
        return None


def row_id(row: Mapping[str, Any], table: str = "documents") -> uuid.UUID:
    parsed = parse_uuid(row.get("id"))
    if parsed is None:
        raise Rejected(f"{table}.id {row.get('id')!r} is not a UUID")
    return parsed


def parse_json(value: Any) -> Any:
    """DuckDB hands JSON columns over as text; a value that is not JSON stays a JSON string
    rather than being dropped."""
    if value is None or not isinstance(value, str | bytes):
        return json_safe(value)
    try:
        return json_safe(json.loads(value))
    except ValueError:
        return clean_text(value if isinstance(value, str) else value.decode("utf-8", "replace"))


def json_safe(value: Any) -> Any:
    """A value as JSON can hold it, jsonb accepts and `restore` can read back: strings and keys
    cleaned (pgsafe), NaN and infinities as text (Python's json reads them, jsonb does not).
    Decimals stay numbers when a float spells them exactly (jsonb keeps numbers as numeric),
    else become text."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Decimal):
        if value.is_finite() and Decimal(repr(float(value))) == value:
            return float(value)
        return str(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {clean_text(str(k)): json_safe(v) for k, v in value.items()}
    return clean_text(str(value))


def to_timestamptz(value: Any, zone: ZoneInfo, column: str = "timestamp") -> datetime | None:
    """ALFRD's zone-less TIMESTAMP read as wall time in `zone` (an ambiguous hour at a DST
    change takes its first occurrence, as PostgreSQL does)."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError as exc:
            raise Rejected(f"{column} {value!r} is not a timestamp") from exc
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime.combine(value, time())
    if not isinstance(value, datetime):
        raise Rejected(f"{column} {value!r} is not a timestamp")
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def to_naive(value: datetime | None, zone: ZoneInfo) -> datetime | None:
    """Our timestamptz back to ALFRD's zone-less wall time in `zone`."""
    if value is None:
        return None
    return value.astimezone(zone).replace(tzinfo=None) if value.tzinfo else value


def convert(kind: str, value: Any, zone: ZoneInfo, column: str) -> Any:
    """One ALFRD value → the PostgreSQL type of a legacy_* column."""
    if value is None:
        return None
    try:
        if kind == "uuid":
            parsed = parse_uuid(value)
            if parsed is None:
                raise Rejected(f"{column} {value!r} is not a UUID")
            return parsed
        if kind == "text":
            return clean_text(value if isinstance(value, str) else str(value))
        if kind == "json":
            return parse_json(value)
        if kind == "timestamp":
            return to_timestamptz(value, zone, column)
        if kind == "date":
            return value if isinstance(value, date) else date.fromisoformat(str(value).strip())
        if kind == "decimal":
            return value if isinstance(value, Decimal) else Decimal(str(value).strip())
        if kind == "float":
            return float(value)
        if kind == "int":
            return int(value)
        if kind == "bool":
            if isinstance(value, str):
                return value.strip().lower() in ("true", "t", "1", "yes")
            return bool(value)
    except (ValueError, TypeError, InvalidOperation) as exc:
        raise Rejected(f"{column} {value!r} is not a {kind}") from exc
    raise ValueError(f"unknown column kind {kind!r}")


def restore(kind: str, value: Any) -> Any:
    """A value from metadata->'alfrd' back to the Python type of ALFRD's DuckDB column."""
    if value is None:
        return None
    if kind == "json":
        return json.dumps(value, ensure_ascii=False)
    if kind == "timestamp":
        return datetime.fromisoformat(value) if isinstance(value, str) else value
    if kind == "date":
        return date.fromisoformat(value) if isinstance(value, str) else value
    if kind == "decimal":
        return Decimal(str(value))
    if kind == "float":
        return float(value)
    if kind == "int":
        return int(value)
    if kind == "bool":
        return bool(value)
    return value if isinstance(value, str) else str(value)


def map_status(alfrd_status: object) -> str | None:
    """Our status for an ALFRD status, None when ALFRD's is one we do not know."""
    return STATUS_MAP.get(str(alfrd_status).strip().lower()) if alfrd_status else None


def string_list(value: Any) -> list[str]:
    """ALFRD tags columns: a JSON array of strings in principle, anything in practice."""
    if isinstance(value, str):
        value = parse_json(value)
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


# --- documents: ALFRD → ours -----------------------------------------------------------------
@dataclass(frozen=True)
class FileFacts:
    """What the importer found on disk for one ALFRD document."""

    sha256: str | None = None
    stored_path: str | None = None
    size: int | None = None
    missing: tuple[str, ...] = ()
    folder: dict[str, Any] | None = None
    folder_tags: tuple[str, ...] = ()


def alfrd_columns(row: Mapping[str, Any], json_columns: Iterable[str]) -> dict[str, Any]:
    """Everything ALFRD knew except id and extracted_text (those have columns of ours)."""
    as_json = set(json_columns)
    out = {}
    for key, value in row.items():
        if key in ("id", "extracted_text"):
            continue
        out[key] = parse_json(value) if key in as_json else json_safe(value)
    raw_id = row.get("id")
    parsed = parse_uuid(raw_id)
    if parsed is not None and raw_id != str(parsed):
        out["original_id"] = raw_id  # so the export gives ALFRD its own spelling back
    return out


def check_document(row: Mapping[str, Any], zone: ZoneInfo) -> uuid.UUID:
    """The id, or Rejected: what must hold before any file of the row is touched."""
    doc_id = row_id(row)
    to_timestamptz(row.get("created_at"), zone, "created_at")
    to_timestamptz(row.get("updated_at"), zone, "updated_at")
    return doc_id


def reject_data(row: Mapping[str, Any], json_columns: Iterable[str]) -> dict[str, Any]:
    """A rejected row, whole, as legacy_rejects keeps it (JSON columns parsed, so the export
    can write them back as they were)."""
    as_json = set(json_columns)
    return {k: parse_json(v) if k in as_json else json_safe(v) for k, v in row.items()}


def document_row(
    row: Mapping[str, Any], files: FileFacts, *, json_columns: Iterable[str], zone: ZoneInfo,
    search_config: str, source: str,
) -> dict[str, Any]:
    """Parameters of legacy_insert_document for one ALFRD documents row. Raises Rejected."""
    doc_id = row_id(row)
    alfrd = alfrd_columns(row, json_columns)
    created = to_timestamptz(row.get("created_at"), zone, "created_at")
    updated = to_timestamptz(row.get("updated_at"), zone, "updated_at") or created
    status = map_status(row.get("status")) or "pending"
    is_folder = files.folder is not None or row.get("file_type") == "folder"
    name = clean_optional_text(row.get("filename")) or PurePosixPath(
        str(row.get("original_path") or row.get("folder_path") or doc_id)).name or str(doc_id)
    source_path = clean_optional_text(row.get("original_path")) or clean_optional_text(
        row.get("folder_path") or row.get("raw_document_path")) or name
    metadata: dict[str, Any] = {"alfrd": alfrd,
                                "import": {"source": source, "timezone": zone.key}}
    if files.missing:
        metadata["import"]["missing_files"] = list(files.missing)
    if files.folder is not None:
        metadata["folder"] = files.folder
    summary = clean_optional_text(row.get("summary"))
    text = clean_optional_text(row.get("extracted_text"))
    return {
        "id": doc_id,
        "sha256": files.sha256,
        "original_name": name,
        "source_path": source_path,
        "tags": merge_tags(string_list(row.get("tags")), string_list(row.get("secondary_tags")),
                           list(files.folder_tags)),
        "mime_type": (clean_optional_text(row.get("mime_type"))
                      or (FOLDER_MIME if is_folder else None)),
        "size_bytes": files.size if files.size is not None else _int_or_none(
            row.get("file_size")),
        "stored_path": files.stored_path,
        "status": status,
        # ALFRD weighted its one-line summary above the body in search; our title is weighted
        # the same way, so the summary becomes the title.
        "title": (summary.strip() or None) if summary else None,
        "extracted_text": text,
        "extractor": "alfrd" if text is not None else None,
        "search_config": search_config,
        "metadata": metadata,
        "error": clean_optional_text(row.get("error_message")),
        "created_at": created,
        "updated_at": updated,
    }


def arrival_row(doc: Mapping[str, Any], document_id: uuid.UUID, outcome: str) -> dict[str, Any]:
    """Each ALFRD row is one sighting; its id makes the claim key, so a re-run records none
    twice."""
    return {
        "document_id": document_id,
        "claim_key": f"{IMPORT_INSTANCE}:{doc['id']}",
        "source_path": doc["source_path"],
        "original_name": doc["original_name"],
        "size_bytes": doc["size_bytes"],
        "instance": IMPORT_INSTANCE,
        "outcome": outcome,
        "arrived_at": doc["created_at"],
    }


def legacy_row(table: LegacyTable, row: Mapping[str, Any], zone: ZoneInfo) -> dict[str, Any]:
    """Parameters for one legacy_* insert; columns this table does not know go to `extra`.
    Raises Rejected."""
    kinds = table.kinds
    row_id(row, table.source)
    out: dict[str, Any] = {}
    for column, kind in table.columns:
        out[column] = convert(kind, row.get(column), zone, f"{table.source}.{column}")
    out["extra"] = {k: json_safe(v) for k, v in row.items() if k not in kinds}
    return out


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


# --- verification ----------------------------------------------------------------------------
def text_digest(text: str | None) -> str:
    """Per-row digest; computed the same way in SQL (queries legacy_verify_*)."""
    if text is None:
        return "null"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def table_checksum(rows: Mapping[str, str]) -> str:
    """Order-free checksum over (id, text digest) pairs."""
    h = hashlib.sha256()
    for key in sorted(rows):
        h.update(f"{key}:{rows[key]}\n".encode())
    return h.hexdigest()


# --- documents: ours → ALFRD -----------------------------------------------------------------
def alfrd_document(doc: Mapping[str, Any], *, zone: ZoneInfo, store_root: str | None) -> dict[
        str, Any]:
    """One documents (or legacy_document_duplicates) row → ALFRD's columns plus ours (pg_*).
    ALFRD's own values come back from metadata->'alfrd' when the row was imported; a document
    the daemon ingested gets them derived from our columns."""
    metadata = dict(doc.get("metadata") or {})
    alfrd = metadata.pop("alfrd", None)
    out: dict[str, Any]
    derived = _derived_alfrd(doc, metadata, zone=zone, store_root=store_root)
    if isinstance(alfrd, dict):
        out = {name: restore(kind, alfrd.get(name)) for name, kind in ALFRD_DOCUMENT_COLUMNS}
        out["id"] = alfrd.get("original_id") or str(doc["id"])
        out["extracted_text"] = alfrd["extracted_text"] if "extracted_text" in alfrd else (
            doc.get("extracted_text"))
        for name in ALFRD_REQUIRED:  # an older ALFRD may have lacked one of them
            if out[name] is None:
                out[name] = derived[name]
    else:
        out = derived
    out.update({
        "pg_sha256": doc.get("sha256"),
        "pg_stored_path": doc.get("stored_path"),
        "pg_source_path": doc.get("source_path"),
        "pg_tags": list(doc.get("tags") or []),
        "pg_status": doc.get("status"),
        "pg_title": doc.get("title"),
        "pg_extractor": doc.get("extractor"),
        "pg_size_bytes": doc.get("size_bytes"),
        "pg_error": doc.get("error"),
        "pg_metadata": json.dumps(metadata, ensure_ascii=False),
        "pg_created_at": doc.get("created_at"),
        "pg_updated_at": doc.get("updated_at"),
        "pg_duplicate_of": str(doc["duplicate_of"]) if doc.get("duplicate_of") else None,
    })
    return out


def _derived_alfrd(doc: Mapping[str, Any], metadata: Mapping[str, Any], *, zone: ZoneInfo,
                   store_root: str | None) -> dict[str, Any]:
    out: dict[str, Any] = dict.fromkeys(ALFRD_DOCUMENT_KINDS)
    name = str(doc.get("original_name") or "")
    is_folder = "folder" in metadata
    stored = doc.get("stored_path")
    out.update({
        "id": str(doc["id"]),
        "filename": name,
        "original_path": doc.get("source_path") or name,
        "file_type": "folder" if is_folder else (PurePosixPath(name).suffix.lstrip(".").lower()
                                                 or "unknown"),
        "file_size": doc.get("size_bytes"),
        "mime_type": doc.get("mime_type"),
        "status": REVERSE_STATUS.get(str(doc.get("status")), "pending"),
        "created_at": to_naive(doc.get("created_at"), zone),
        "updated_at": to_naive(doc.get("updated_at"), zone),
        "error_message": doc.get("error"),
        "tags": json.dumps(list(doc.get("tags") or []), ensure_ascii=False),
        "raw_document_path": (str(PurePosixPath(store_root) / stored)
                              if store_root and stored and not str(stored).startswith("failed/")
                              else None),
        "extracted_text": doc.get("extracted_text"),
    })
    return out


def alfrd_legacy_row(table: LegacyTable, row: Mapping[str, Any], zone: ZoneInfo) -> dict[
        str, Any]:
    """One legacy_* row back to ALFRD's DuckDB types."""
    out: dict[str, Any] = {}
    for column, kind in table.columns:
        value = row.get(column)
        if value is None:
            out[column] = None
        elif kind == "uuid":
            out[column] = str(value)
        elif kind == "json":
            out[column] = json.dumps(value, ensure_ascii=False)
        elif kind == "timestamp":
            out[column] = to_naive(value, zone)
        else:
            out[column] = value
    return out


def rejected_row(kinds: Mapping[str, str], data: Mapping[str, Any]) -> dict[str, Any]:
    """A legacy_rejects row (kept as JSON) back to ALFRD's types, its bad id as it was."""
    return {name: restore("text" if kind == "uuid" else kind, data.get(name))
            for name, kind in kinds.items()}
