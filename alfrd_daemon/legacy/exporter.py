"""Our archive as a DuckDB file in ALFRD's own schema: the way back to ALFRD, and a copy for
DuckDB analytics. Imported rows get ALFRD's columns back from metadata->'alfrd' exactly;
documents the daemon ingested get them derived; our columns ride along as pg_*.

The file is written under a temporary name beside the target and renamed into place when
complete, so a failed export never leaves half a database (nor destroys the old one with
--force). The DuckDB module is handed in: this module never imports duckdb.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql
from psycopg.rows import DictRow, dict_row

from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.legacy.mapping import (
    ALFRD_DOCUMENT_KINDS,
    LEGACY_TABLES,
    LegacyTable,
    alfrd_document,
    alfrd_legacy_row,
    rejected_row,
    table_checksum,
    text_digest,
)
from alfrd_daemon.progress import Progress

Q = load_named_queries("legacy.sql")
DUCK = load_named_queries("duckdb_export.sql")
BATCH = 1000
CHECKSUM_COLUMN = {"documents": "extracted_text",
                   **{t.source: t.checksum_column for t in LEGACY_TABLES}}


class ExportRefused(Exception):
    """The target exists and --force was not given."""


@dataclass
class ExportTable:
    rows: int = 0
    from_rejects: int = 0
    skipped: int = 0
    source_checksum: str = ""
    file_checksum: str = ""
    file_rows: int = 0

    @property
    def ok(self) -> bool:
        return self.rows == self.file_rows and self.source_checksum == self.file_checksum


@dataclass
class ExportReport:
    path: str
    timezone: str
    tables: dict[str, ExportTable] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def verified(self) -> bool:
        return all(t.ok for t in self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "timezone": self.timezone, "seconds": round(self.seconds, 3),
                "verified": self.verified,
                "tables": {name: {**vars(t), "ok": t.ok} for name, t in self.tables.items()}}


class Exporter:
    def __init__(self, conn: psycopg.Connection[DictRow], duckdb: Any, *, zone: ZoneInfo,
                 store_root: Path, progress: Progress):
        self.conn = conn
        self.duckdb = duckdb
        self.zone = zone
        self.store_root = store_root
        self.progress = progress

    def export(self, path: Path, *, force: bool) -> ExportReport:
        if path.exists() and not force:
            raise ExportRefused(f"{path} exists; pass --force to replace it")
        started = time.monotonic()
        report = ExportReport(path=str(path), timezone=self.zone.key)
        tmp = path.with_name(f".{path.name}.export-{os.getpid()}")
        _remove(tmp)
        try:
            duck = self.duckdb.connect(str(tmp))
            try:
                duck.execute(DUCK["schema"])
                # One snapshot for every table, so documents and their events agree.
                with self.conn.transaction():
                    self.conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, "
                                      "READ ONLY")
                    rejects = self._rejects()
                    self._documents(duck, report, rejects.pop("documents", []))
                    for table in LEGACY_TABLES:
                        self._legacy(duck, table, report, rejects.pop(table.source, []))
                for name, stats in report.tables.items():
                    self._check_file(duck, name, stats)
                duck.execute("CHECKPOINT")
            finally:
                duck.close()
            if report.verified:
                _place(tmp, path, force=force)
        finally:
            _remove(tmp)
        report.seconds = time.monotonic() - started
        return report

    def _rejects(self) -> dict[str, list[dict[str, Any]]]:
        """Rows the import refused (bad ids) go back to ALFRD as they were."""
        found: dict[str, list[dict[str, Any]]] = {}
        for row in self.conn.cursor(row_factory=dict_row).execute(Q["export_rejects"]):
            found.setdefault(row["source_table"], []).append(row["row_data"])
        return found

    def _documents(self, duck: Any, report: ExportReport, rejects: list[dict[str, Any]]) -> None:
        stats = report.tables.setdefault("documents", ExportTable())
        digests: dict[str, str] = {}
        total = self.conn.cursor(row_factory=dict_row).execute(
            Q["export_count_documents"]).fetchone()
        self.progress.start("export documents", int(total["n"]) + len(rejects) if total else None)
        store_root = str(self.store_root)

        def rows() -> Iterator[dict[str, Any]]:
            for doc in self._stream(sql.SQL(Q["export_documents"])):
                yield alfrd_document(doc, zone=self.zone, store_root=store_root)
            for data in rejects:
                stats.from_rejects += 1
                yield {**rejected_row(ALFRD_DOCUMENT_KINDS, data),
                       **dict.fromkeys(_PG_COLUMNS)}

        for batch in _batches(rows(), BATCH):
            for row in batch:
                row["pg_created_at"] = _utc_naive(row["pg_created_at"])
                row["pg_updated_at"] = _utc_naive(row["pg_updated_at"])
                digests[row["id"]] = text_digest(row["extracted_text"])
            duck.execute(DUCK["insert_documents"], _columns(batch))
            stats.rows += len(batch)
            self.progress.advance(len(batch))
        stats.source_checksum = table_checksum(digests)
        self.progress.finish()

    def _legacy(self, duck: Any, table: LegacyTable, report: ExportReport,
                rejects: list[dict[str, Any]]) -> None:
        stats = report.tables.setdefault(table.source, ExportTable())
        digests: dict[str, str] = {}
        seen_types: set[str] = set()
        statement = sql.SQL("SELECT * FROM {} ORDER BY created_at NULLS LAST, id"
                            if "created_at" in table.kinds else "SELECT * FROM {} ORDER BY id"
                            ).format(sql.Identifier(table.target))

        def rows() -> Iterator[dict[str, Any]]:
            for row in self._stream(statement):
                yield alfrd_legacy_row(table, row, self.zone)
            for data in rejects:
                stats.from_rejects += 1
                yield rejected_row(table.kinds, data)

        for batch in _batches(rows(), BATCH):
            keep = []
            for row in batch:
                # ALFRD's type_name is UNIQUE; two imported databases may each have one.
                if table.source == "document_types":
                    if row["type_name"] in seen_types:
                        stats.skipped += 1
                        continue
                    seen_types.add(row["type_name"])
                digests[row["id"]] = text_digest(row[table.checksum_column])
                keep.append(row)
            if keep:
                duck.execute(DUCK[f"insert_{table.source}"], _columns(keep))
                stats.rows += len(keep)
        stats.source_checksum = table_checksum(digests)

    def _stream(self, statement: sql.SQL | sql.Composed) -> Iterator[dict[str, Any]]:
        """A server-side cursor, so a large archive never sits in memory whole."""
        with self.conn.cursor(name="alfrd_export", row_factory=dict_row) as cur:
            cur.itersize = BATCH
            cur.execute(statement)
            yield from cur

    def _check_file(self, duck: Any, table: str, stats: ExportTable) -> None:
        """Read back what the file holds: same rows, same (id, text) checksum."""
        digests = {row_id: text_digest(text)
                   for row_id, text in duck.execute(DUCK[f"digests_{table}"]).fetchall()}
        stats.file_rows = len(digests)
        stats.file_checksum = table_checksum(digests)


_PG_COLUMNS = ("pg_sha256", "pg_stored_path", "pg_source_path", "pg_tags", "pg_status",
               "pg_title", "pg_extractor", "pg_size_bytes", "pg_error", "pg_metadata",
               "pg_created_at", "pg_updated_at", "pg_duplicate_of")


def _columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Rows → one list per column: the insert statements unnest them side by side."""
    return {name: [row.get(name) for row in rows] for name in rows[0]}


def _batches(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _utc_naive(value: datetime | None) -> datetime | None:
    """DuckDB's Python client needs pytz for zone-aware values; pg_* times are UTC, naive."""
    if value is None or value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _place(tmp: Path, path: Path, *, force: bool) -> None:
    """Without --force a link, which fails if the target appeared meanwhile (a rename
    would silently replace it)."""
    if force:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError as exc:
        raise ExportRefused(f"{path} exists; pass --force to replace it") from exc


def _remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()

