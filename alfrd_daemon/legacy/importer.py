"""ALFRD's DuckDB database into our PostgreSQL schema.

Rows go across in small committed batches keyed by ALFRD's own ids (ON CONFLICT), so the
import runs beside a live daemon without holding locks for long, can be interrupted at any
point, and imports nothing twice when run again. A dry run does all of it inside one
transaction that is rolled back, so its report is the real one, and copies no files.
The DuckDB connection is handed in: this module never imports duckdb (an optional extra).
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import Jsonb

from alfrd_daemon.config.settings import Settings
from alfrd_daemon.db.locks import advisory_key
from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.ingest.store import Store
from alfrd_daemon.legacy.files import FileImporter
from alfrd_daemon.legacy.mapping import (
    LEGACY_BY_SOURCE,
    FileFacts,
    LegacyTable,
    Rejected,
    arrival_row,
    check_document,
    document_row,
    legacy_row,
    map_status,
    reject_data,
)
from alfrd_daemon.legacy.verify import Expectations, TableCheck, verify
from alfrd_daemon.pgsafe import clean_optional_text
from alfrd_daemon.progress import Progress

Q = load_named_queries("legacy.sql")
IMPORT_LOCK = advisory_key("import-duckdb")

# Fixed statements per ALFRD table (no SQL is assembled from names). Documents come oldest
# first, so of two rows with the same content the earlier one becomes the document.
SOURCE_QUERIES: dict[str, tuple[str, str]] = {
    "documents": ("SELECT count(*) FROM documents",
                  "SELECT * FROM documents ORDER BY created_at NULLS LAST, id"),
    "document_types": ("SELECT count(*) FROM document_types",
                       "SELECT * FROM document_types ORDER BY id"),
    "prompts": ("SELECT count(*) FROM prompts", "SELECT * FROM prompts ORDER BY id"),
    "summaries": ("SELECT count(*) FROM summaries", "SELECT * FROM summaries ORDER BY id"),
    "processing_events": ("SELECT count(*) FROM processing_events",
                          "SELECT * FROM processing_events ORDER BY id"),
    "analytics": ("SELECT count(*) FROM analytics", "SELECT * FROM analytics ORDER BY id"),
    "classification_suggestions": ("SELECT count(*) FROM classification_suggestions",
                                   "SELECT * FROM classification_suggestions ORDER BY id"),
}
TABLE_ORDER = tuple(SOURCE_QUERIES)
SHOWN_PER_LIST = 1000  # the report names this many missing files / rejects; counts are exact


class ImporterError(Exception):
    """The import cannot start; `str()` says why."""


class NotAlfrd(ImporterError):
    """The DuckDB file is not an ALFRD database."""


class ImportBusy(ImporterError):
    """Another import holds the import lock on this database."""


@dataclass
class TableReport:
    read: int = 0
    imported: int = 0
    already_imported: int = 0
    duplicates: int = 0
    merged: int = 0
    rejected: int = 0


@dataclass(frozen=True)
class ImportOptions:
    source: Path
    zone: ZoneInfo
    search_config: str
    files_root: Path | None = None
    batch_size: int = 200
    limit: int | None = None
    dry_run: bool = False


@dataclass
class ImportReport:
    source: str
    timezone: str
    dry_run: bool
    tables: dict[str, TableReport] = field(default_factory=dict)
    missing_tables: list[str] = field(default_factory=list)
    missing_files: list[dict[str, str]] = field(default_factory=list)
    missing_files_count: int = 0
    rejects: list[dict[str, str]] = field(default_factory=list)
    duplicates: list[dict[str, str]] = field(default_factory=list)
    unknown_statuses: dict[str, int] = field(default_factory=dict)
    files_stored: int = 0
    complete: bool = True
    seconds: float = 0.0
    verification: list[TableCheck] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return all(check.ok for check in self.verification)

    @property
    def rows_read(self) -> int:
        return sum(t.read for t in self.tables.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "timezone": self.timezone, "dry_run": self.dry_run,
            "complete": self.complete, "seconds": round(self.seconds, 3),
            "rows_read": self.rows_read,
            "rows_per_second": round(self.rows_read / self.seconds, 1) if self.seconds else None,
            "tables": {name: asdict(t) for name, t in self.tables.items()},
            "missing_tables": self.missing_tables,
            "files_stored": self.files_stored,
            "files_missing": self.missing_files_count,
            "missing_files": self.missing_files,
            "bad_ids": sum(t.rejected for t in self.tables.values()),
            "rejects": self.rejects,
            "duplicates": self.duplicates,
            "unknown_statuses": self.unknown_statuses,
            "verified": self.verified,
            "verification": [c.to_dict() for c in self.verification],
        }


def run_import(conn: psycopg.Connection[DictRow], duck: Any, options: ImportOptions,
               settings: Settings, progress: Progress) -> ImportReport:
    """`conn` must be in autocommit mode: each batch commits on its own."""
    store = None
    if not options.dry_run:
        store = Store(settings.store_path, fsync=settings.store.fsync)
        store.open()
    return Importer(conn, duck, options, store=store, fsync=settings.store.fsync,
                    progress=progress).run()


class Importer:
    def __init__(self, conn: psycopg.Connection[DictRow], duck: Any, options: ImportOptions, *,
                 store: Store | None, fsync: bool, progress: Progress):
        self.conn = conn
        self.cur = conn.cursor(row_factory=dict_row)
        self.duck = duck
        self.opt = options
        self.progress = progress
        self.files = FileImporter(None if options.dry_run else store,
                                  files_root=options.files_root,
                                  base_dir=options.source.parent, fsync=fsync)
        self.expected = Expectations()
        self.report = ImportReport(source=str(options.source), timezone=options.zone.key,
                                   dry_run=options.dry_run)
        self.budget = options.limit
        self._unknown: Counter[str] = Counter()

    # --- the run ------------------------------------------------------------------------------
    def run(self) -> ImportReport:
        """Needs an autocommit connection: each batch is its own transaction."""
        started = time.monotonic()
        started_at = datetime.now(UTC)
        present = {r[0] for r in self.duck.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'"
        ).fetchall()}
        if "documents" not in present:
            raise NotAlfrd(f"{self.opt.source} has no documents table: not an ALFRD database")
        # Moving an archive is no new ingest: no post_ingest hook for the rows it brings.
        self.cur.execute("SELECT set_config('alfrd.skip_hooks', 'on', false)")
        with self._locked(), self._outer():
            for table in TABLE_ORDER:
                if table not in present:
                    self.report.missing_tables.append(table)
                    continue
                self._table(table)
            self.report.verification = verify(self.conn, self.expected)
            self.report.files_stored = self.files.files_stored
            self.report.unknown_statuses = dict(self._unknown)
            self.report.seconds = time.monotonic() - started
            if not self.opt.dry_run:
                self.cur.execute(Q["record_run"], {
                    "source": str(self.opt.source), "started_at": started_at,
                    "options": Jsonb(self._options()), "report": Jsonb(self.report.to_dict())})
        return self.report

    def _options(self) -> dict[str, Any]:
        return {"timezone": self.opt.zone.key, "batch_size": self.opt.batch_size,
                "limit": self.opt.limit,
                "files_root": str(self.opt.files_root) if self.opt.files_root else None}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One import at a time per database (two would race on the same ALFRD ids); the
        daemon never takes this lock, so it is not held up."""
        row = self.cur.execute(Q["import_try_lock"], {"key": IMPORT_LOCK}).fetchone()
        if not row or not row["locked"]:
            raise ImportBusy("another alfrd import-duckdb is running against this database")
        try:
            yield
        finally:
            with contextlib.suppress(psycopg.Error):
                self.cur.execute(Q["import_unlock"], {"key": IMPORT_LOCK})

    @contextlib.contextmanager
    def _outer(self) -> Iterator[None]:
        """A dry run wraps everything in one rolled-back transaction (batches become
        savepoints), so it sees its own earlier batches, as the real run would."""
        if not self.opt.dry_run:
            yield
            return
        with self.conn.transaction(force_rollback=True):
            yield

    def _table(self, table: str) -> None:
        count_sql, select_sql = SOURCE_QUERIES[table]
        total = int(self.duck.execute(count_sql).fetchone()[0])
        self.expected.table(table)
        stats = self.report.tables.setdefault(table, TableReport())
        if self.budget == 0:
            self.report.complete = self.report.complete and total == 0
            return
        shown_total = total if self.budget is None else min(total, self.budget)
        self.progress.start(table, shown_total)
        cur = self.duck.execute(select_sql)
        names = [d[0] for d in cur.description]
        json_columns = frozenset(d[0] for d in cur.description if str(d[1]) == "JSON")
        while True:
            size = self.opt.batch_size if self.budget is None else min(self.opt.batch_size,
                                                                       self.budget)
            if size == 0:
                if cur.fetchmany(1):
                    self.report.complete = False
                break
            batch = cur.fetchmany(size)
            if not batch:
                break
            rows = [dict(zip(names, values, strict=True)) for values in batch]
            stats.read += len(rows)
            if self.budget is not None:
                self.budget -= len(rows)
            if table == "documents":
                self._documents(rows, json_columns, stats)
            else:
                self._legacy(LEGACY_BY_SOURCE[table], rows, json_columns, stats)
            self.progress.advance(len(rows))
        self.progress.finish()

    # --- documents ----------------------------------------------------------------------------
    def _documents(self, rows: list[dict[str, Any]], json_columns: frozenset[str],
                   stats: TableReport) -> None:
        valid: list[tuple[dict[str, Any], uuid.UUID]] = []
        for row in rows:
            try:
                doc_id = check_document(row, self.opt.zone)
            except Rejected as exc:
                self._reject("documents", row, json_columns, exc.reason, stats)
                continue
            self.expected.expect("documents", str(doc_id),
                                 clean_optional_text(row.get("extracted_text")))
            valid.append((row, doc_id))
        if not valid:
            return
        ids = [doc_id for _, doc_id in valid]
        known = {r["id"]: r["imported"] for r in
                 self.cur.execute(Q["existing_documents"], {"ids": ids})}
        known.update((r["id"], True) for r in
                     self.cur.execute(Q["existing_duplicates"], {"ids": ids}))
        todo: list[tuple[dict[str, Any], bool]] = []
        for row, doc_id in valid:
            if known.get(doc_id) is True:
                stats.already_imported += 1
                continue
            merge = doc_id in known  # the daemon ingested this document under ALFRD's id
            # Files are hashed and copied before the batch's transaction opens, which keeps
            # it short; the stored copy is durable before the row that names it commits.
            facts = FileFacts() if merge else self.files.facts(row)
            params = document_row(row, facts, json_columns=json_columns, zone=self.opt.zone,
                                  search_config=self.opt.search_config,
                                  source=str(self.opt.source))
            self._note_files(params, facts)
            todo.append((params, merge))
        # Pipeline mode: the arrival and NOTIFY after each insert go out without waiting for
        # their replies, which about halves the round trips of a batch.
        with self.conn.transaction(), self.conn.pipeline():
            for params, merge in todo:
                if merge:
                    self._merge(params, stats)
                else:
                    self._insert(params, stats)

    def _note_files(self, params: Mapping[str, Any], facts: FileFacts) -> None:
        status = params["metadata"]["alfrd"].get("status")
        if map_status(status) is None:
            self._unknown[str(status)] += 1
        self.report.missing_files_count += len(facts.missing)
        for path in facts.missing:
            if len(self.report.missing_files) < SHOWN_PER_LIST:
                self.report.missing_files.append({"id": str(params["id"]), "path": path})

    def _insert(self, params: dict[str, Any], stats: TableReport) -> None:
        db_params = {**params, "metadata": Jsonb(params["metadata"])}
        if self.cur.execute(Q["insert_document"], db_params).fetchone():
            self._arrival(params, params["id"], "ingested")
            self.cur.execute(Q["notify_document"], {"document_id": str(params["id"])})
            stats.imported += 1
            return
        other = self.cur.execute(Q["conflicting_document"],
                                 {"id": params["id"], "sha256": params["sha256"]}).fetchone()
        if other is None:
            # The conflicting row went between two statements: a document deleted meanwhile.
            raise psycopg.OperationalError(f"document {params['id']} changed during the import")
        if other["same_id"]:  # committed meanwhile by someone else: the daemon or a run
            if other["imported"]:
                stats.already_imported += 1
            else:
                self._merge(params, stats)
            return
        # Same content as a document we hold: ALFRD's row is kept whole beside it and counts
        # as a second arrival of it, as the daemon does for a file dropped twice.
        inserted = self.cur.execute(Q["insert_duplicate"], {
            **db_params, "document_id": other["id"]}).fetchone()
        self._arrival(params, other["id"], "duplicate")
        if inserted:
            stats.duplicates += 1
            if len(self.report.duplicates) < SHOWN_PER_LIST:
                self.report.duplicates.append({"id": str(params["id"]),
                                               "duplicate_of": str(other["id"])})
        else:
            stats.already_imported += 1

    def _merge(self, params: dict[str, Any], stats: TableReport) -> None:
        merged = self.cur.execute(Q["merge_document"], {
            "id": params["id"], "alfrd": Jsonb(params["metadata"]["alfrd"]),
            "import": Jsonb(params["metadata"]["import"]), "tags": params["tags"],
            "extracted_text": params["extracted_text"]}).fetchone()
        if merged:
            self._arrival(params, params["id"], "duplicate")
            stats.merged += 1
        else:
            stats.already_imported += 1

    def _arrival(self, params: Mapping[str, Any], document_id: uuid.UUID, outcome: str) -> None:
        self.cur.execute(Q["insert_arrival"], arrival_row(params, document_id, outcome))

    # --- the other ALFRD tables ---------------------------------------------------------------
    def _legacy(self, table: LegacyTable, rows: list[dict[str, Any]],
                json_columns: frozenset[str], stats: TableReport) -> None:
        mapped = []
        for row in rows:
            try:
                params = legacy_row(table, row, self.opt.zone)
            except Rejected as exc:
                self._reject(table.source, row, json_columns, exc.reason, stats)
                continue
            self.expected.expect(table.source, str(params["id"]), params[table.checksum_column])
            mapped.append(params)
        statement = _legacy_insert(table)
        kinds = table.kinds
        with self.conn.transaction():
            for params in mapped:
                db_params = {k: Jsonb(v) if kinds.get(k, "json") == "json" and v is not None
                             else v for k, v in params.items()}
                if self.cur.execute(statement, db_params).fetchone():
                    stats.imported += 1
                else:
                    stats.already_imported += 1

    def _reject(self, table: str, row: Mapping[str, Any], json_columns: frozenset[str],
                reason: str, stats: TableReport) -> None:
        source_id = str(row.get("id"))
        stats.rejected += 1
        self.expected.reject(table, source_id)
        if len(self.report.rejects) < SHOWN_PER_LIST:
            self.report.rejects.append({"table": table, "id": source_id, "reason": reason})
        with self.conn.transaction():
            self.cur.execute(Q["insert_reject"], {
                "source_table": table, "source_id": source_id, "source": str(self.opt.source),
                "reason": reason, "row_data": Jsonb(reject_data(row, json_columns))})


def _legacy_insert(table: LegacyTable) -> sql.Composed:
    columns = [name for name, _ in table.columns] + ["extra"]
    return sql.SQL(
        "INSERT INTO {table} ({columns}) VALUES ({values}) ON CONFLICT (id) DO NOTHING "
        "RETURNING id"
    ).format(table=sql.Identifier(table.target),
             columns=sql.SQL(", ").join(sql.Identifier(c) for c in columns),
             values=sql.SQL(", ").join(sql.Placeholder(c) for c in columns))
