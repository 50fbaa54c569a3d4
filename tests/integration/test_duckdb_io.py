"""`alfrd import-duckdb` / `export-duckdb` against real PostgreSQL and real DuckDB files,
through the real CLI."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import select
import subprocess
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest
from psycopg import sql

from alfrd_daemon.ingest.folderdoc import Page, folder_digest
from alfrd_daemon.legacy.importer import IMPORT_LOCK
from tests.helpers import REPO, DaemonProcess, alfrd_env, query, run_cli, wait_for, write_config
from tests.integration import alfrd_source as a
from tests.integration.alfrd_source import Source

TABLES = ("documents", "document_arrivals", "legacy_document_duplicates", "legacy_rejects",
          "legacy_summaries", "legacy_processing_events", "legacy_analytics", "legacy_prompts",
          "legacy_classification_suggestions", "legacy_document_types", "legacy_import_runs")


@pytest.fixture
def source(tmp_path: Path) -> Source:
    return a.build(tmp_path / "src")


@pytest.fixture
def config(tmp_path: Path, db_url: str) -> Path:
    return write_config(tmp_path, db_url, store={"fsync": False})


def store_root(tmp_path: Path) -> Path:
    return tmp_path / "var" / "store"


def do_import(config: Path, src: Source, *extra: str, check: bool = True,
              files_root: bool = True) -> dict[str, Any]:
    args = ["import-duckdb", str(src.path), "--json", *extra]
    if files_root:
        args += ["--files-root", str(src.new_root)]
    result = run_cli(config, *args, check=check)
    report = json.loads(result.stdout)
    report["exit_code"] = result.returncode
    report["stderr"] = result.stderr
    return report


def counts(db_url: str) -> dict[str, int]:
    return {t: query(db_url, sql.SQL("SELECT count(*) AS n FROM {}").format(
        sql.Identifier(t)))[0]["n"] for t in TABLES}


def docs(db_url: str) -> dict[str, dict[str, Any]]:
    return {str(r["id"]): r for r in query(db_url, "SELECT * FROM documents")}


# --- import ----------------------------------------------------------------------------------
def test_import_maps_alfrd_rows_into_our_schema(source: Source, config: Path, db_url: str,
                                                tmp_path: Path) -> None:
    report = do_import(config, source)

    assert report["exit_code"] == 0 and report["verified"] and report["complete"]
    d = report["tables"]["documents"]
    assert (d["read"], d["imported"], d["duplicates"], d["rejected"]) == (9, 7, 1, 1)
    assert report["tables"]["processing_events"]["rejected"] == 1  # document_id 'doc-7'
    assert report["bad_ids"] == 2
    assert {m["id"] for m in report["missing_files"]} == {a.MISSING, a.BARE}
    assert report["files_missing"] == 2
    assert report["duplicates"] == [{"id": a.BILL_COPY, "duplicate_of": a.BILL}]

    rows = docs(db_url)
    assert set(rows) == {a.BILL, a.CJK, a.MISSING, a.FOLDER, a.BARE, a.MOVED, a.UPPER.lower()}
    assert {i: r["status"] for i, r in rows.items()} == {
        a.BILL: "completed", a.CJK: "processing", a.MISSING: "failed", a.FOLDER: "extracted",
        a.BARE: "pending", a.MOVED: "processing", a.UPPER.lower(): "processing"}

    bill = rows[a.BILL]
    alfrd = bill["metadata"]["alfrd"]
    assert alfrd["status"] == "completed" and alfrd["vendor"] == "Stadtwerke"
    assert alfrd["amount"] == 42.1 and alfrd["due_date"] == "2024-03-20"
    assert alfrd["created_at"] == "2024-03-01T10:00:00"  # ALFRD's wall time, unchanged
    assert len(alfrd["structured_data"]["items"]) == 12_000  # the 1 MB JSON value, whole
    assert alfrd["secondary_tags"] == ["2024", "strom"]
    assert bill["created_at"] == datetime(2024, 3, 1, 10, 0, tzinfo=UTC)
    assert bill["tags"] == ["bills", "utilities", "2024", "strom"]
    assert bill["title"] == "Electricity bill, March 2024"
    assert bill["metadata"]["import"]["timezone"] == "UTC"

    # Content: hashed, copied into the store, the user's file left as it was.
    assert bill["sha256"] == hashlib.sha256(a.BILL_BYTES).hexdigest()
    stored = store_root(tmp_path) / bill["stored_path"]
    original = Path(source.documents[a.BILL]["raw_document_path"])
    assert stored.read_bytes() == a.BILL_BYTES and original.read_bytes() == a.BILL_BYTES
    assert stored.stat().st_ino != original.stat().st_ino
    assert original.stat().st_mode & 0o777 == 0o644

    # Unicode: CJK, emoji and NFD names and text survive byte for byte.
    cjk = rows[a.CJK]
    assert cjk["original_name"] == a.NFD_NAME
    assert cjk["extracted_text"] == source.documents[a.CJK]["extracted_text"]
    assert cjk["tags"] == ["請求書", "🧾"]
    assert rows[a.UPPER.lower()]["extracted_text"] == "nul  inside"  # NUL cannot be text
    assert rows[a.UPPER.lower()]["metadata"]["alfrd"]["original_id"] == a.UPPER

    # The folder document: its pages stored, identity as the daemon would compute it.
    folder = rows[a.FOLDER]
    pages = folder["metadata"]["folder"]["pages"]
    assert [p["file"] for p in pages] == ["p1.txt", "p2.jpg"]
    assert folder["sha256"] == folder_digest(
        [(Page(p["file"], p["type"], p["order"]), p["sha256"]) for p in pages])
    assert folder["tags"] == ["bank", "scans"]
    assert folder["mime_type"] == "application/x-alfrd-folder"

    # Missing and moved files, and a row with nothing but its required columns.
    assert rows[a.MISSING]["sha256"] is None and rows[a.MISSING]["error"] == "Textract timed out"
    assert rows[a.MISSING]["metadata"]["import"]["missing_files"] == [
        source.documents[a.MISSING]["raw_document_path"]]
    assert rows[a.MOVED]["sha256"] is not None  # found under --files-root
    bare = rows[a.BARE]
    assert bare["extracted_text"] is None and bare["tags"] == [] and bare["sha256"] is None
    assert bare["metadata"]["alfrd"]["structured_data"] is None

    # Search works on the imported text (the generated, weighted search_vector).
    hits = query(db_url, "SELECT id FROM documents WHERE search_vector @@ "
                 "websearch_to_tsquery('english', 'electricity bill')")
    assert [str(h["id"]) for h in hits] == [a.BILL]

    # The duplicate: kept whole beside its document, and recorded as its second arrival.
    dup = query(db_url, "SELECT * FROM legacy_document_duplicates")
    assert [(str(r["id"]), str(r["document_id"])) for r in dup] == [(a.BILL_COPY, a.BILL)]
    assert dup[0]["metadata"]["alfrd"]["vendor"] == "Stadtwerke"
    arrivals = query(db_url, "SELECT document_id, outcome FROM document_arrivals "
                     "WHERE claim_key = %s", (f"alfrd-import:{a.BILL_COPY}",))
    assert [(str(r["document_id"]), r["outcome"]) for r in arrivals] == [(a.BILL, "duplicate")]

    rejects = {(r["source_table"], r["source_id"]): r for r in
               query(db_url, "SELECT * FROM legacy_rejects")}
    assert set(rejects) == {("documents", a.BAD_ID),
                            ("processing_events", "e0000000-0000-4000-8000-000000000003")}
    assert rejects[("documents", a.BAD_ID)]["row_data"]["extracted_text"] == (
        "a row whose id is not a UUID")

    # The other ALFRD tables, typed.
    summary = query(db_url, "SELECT * FROM legacy_summaries ORDER BY id")[0]
    assert summary["total_amount"] == Decimal("1234567890.12")
    assert summary["period_start"] == date(2024, 3, 1)
    assert summary["document_ids"] == [a.BILL, a.CJK]
    assert summary["generated_at"] == datetime(2024, 4, 1, tzinfo=UTC)
    prompt = query(db_url, "SELECT * FROM legacy_prompts ORDER BY id")[0]
    assert prompt["performance_metrics"] == {"accuracy": 0.8, "runs": 12}
    assert prompt["version"] == 3 and prompt["is_active"] is True
    types = query(db_url, "SELECT type_name, usage_count FROM legacy_document_types "
                  "ORDER BY type_name")
    assert [(t["type_name"], t["usage_count"]) for t in types] == [("bill", 3), ("junk", 0)]
    event = query(db_url, "SELECT document_id FROM legacy_processing_events ORDER BY id")[0]
    assert str(event["document_id"]) == a.BILL
    assert len(query(db_url, "SELECT 1 FROM legacy_import_runs")) == 1


def test_human_report_names_duplicates_missing_files_and_bad_ids(source: Source, config: Path,
                                                                 db_url: str) -> None:
    result = run_cli(config, "import-duckdb", str(source.path))
    out = result.stdout
    assert "ALFRD times read as UTC" in out
    assert f"missing  {a.MOVED}" in out  # no --files-root: the moved file is not found
    assert f"duplicate  {a.BILL_COPY}  same content as {a.BILL}" in out
    assert f"bad id   documents  '{a.BAD_ID}'" in out
    assert "verification: ok" in out
    assert "documents: 9/9" in result.stderr  # plain progress lines: stderr is not a terminal


def test_second_run_imports_nothing_twice(source: Source, config: Path, db_url: str) -> None:
    first = do_import(config, source)
    before = counts(db_url)
    second = do_import(config, source)

    assert second["exit_code"] == 0 and second["verified"]
    for name, t in second["tables"].items():
        assert t["imported"] == t["duplicates"] == t["merged"] == 0, name
        f = first["tables"][name]
        assert t["already_imported"] == f["imported"] + f["duplicates"], name
    assert second["files_stored"] == 0
    after = counts(db_url)
    assert after == {**before, "legacy_import_runs": before["legacy_import_runs"] + 1}


def test_interrupted_import_continues_where_it_stopped(source: Source, config: Path,
                                                       db_url: str) -> None:
    partial = do_import(config, source, "--batch-size", "2", "--limit", "5")
    assert partial["complete"] is False and partial["verified"]
    assert partial["rows_read"] == 5 and partial["tables"]["documents"]["read"] == 5
    # Oldest first: three documents, the duplicate of the first, the bad id.
    assert len(docs(db_url)) == 3 and partial["tables"]["documents"]["duplicates"] == 1

    rest = do_import(config, source, "--batch-size", "2")
    assert rest["complete"] is True and rest["verified"] and rest["exit_code"] == 0
    d = rest["tables"]["documents"]
    assert (d["already_imported"], d["imported"], d["duplicates"]) == (4, 4, 0)
    assert len(docs(db_url)) == 7
    assert counts(db_url)["document_arrivals"] == 8


def test_dry_run_writes_nothing(source: Source, config: Path, db_url: str,
                                tmp_path: Path) -> None:
    report = do_import(config, source, "--dry-run")

    assert report["dry_run"] and report["verified"]
    assert report["tables"]["documents"]["imported"] == 7  # what the real run would do
    assert report["tables"]["documents"]["duplicates"] == 1
    assert all(n == 0 for n in counts(db_url).values())
    root = store_root(tmp_path)
    assert not root.exists() or not any(p.is_file() for p in root.rglob("*"))


def test_timezone_is_stated_and_configurable(source: Source, config: Path,
                                             db_url: str) -> None:
    bad = run_cli(config, "import-duckdb", str(source.path), "--timezone", "Mars/Olympus",
                  check=False)
    assert bad.returncode == 64 and "unknown time zone" in bad.stderr

    report = do_import(config, source, "--timezone", "Europe/Berlin")
    assert report["timezone"] == "Europe/Berlin"
    bill = docs(db_url)[a.BILL]
    assert bill["created_at"] == datetime(2024, 3, 1, 9, 0, tzinfo=UTC)  # 10:00 CET
    assert bill["metadata"]["alfrd"]["created_at"] == "2024-03-01T10:00:00"
    event = query(db_url, "SELECT created_at FROM legacy_processing_events ORDER BY id")[0]
    assert event["created_at"] == datetime(2024, 3, 1, 9, 0, 1, tzinfo=UTC)


def test_verification_fails_when_the_destination_differs(source: Source, config: Path,
                                                         db_url: str) -> None:
    do_import(config, source)
    query(db_url, "UPDATE documents SET extracted_text = 'tampered' WHERE id = %s "
          "RETURNING id", (a.BILL,))
    report = do_import(config, source, check=False)

    assert report["exit_code"] == 1 and report["verified"] is False
    check = next(c for c in report["verification"] if c["table"] == "documents")
    assert check["different_ids"] == [a.BILL] and not check["ok"]
    assert check["source_checksum"] != check["destination_checksum"]


def test_import_merges_into_a_document_the_daemon_ingested(source: Source, config: Path,
                                                           db_url: str) -> None:
    # The daemon ingested ALFRD's folder from the inbox before the import: same id.
    query(db_url, "INSERT INTO documents (id, sha256, original_name, source_path, tags, status,"
          " extracted_text, metadata) VALUES (%s, %s, 'scan', 'scan', '{scans}', 'extracted',"
          " 'our own text', '{\"folder\": {}}') RETURNING id", (a.FOLDER, "f" * 64))
    report = do_import(config, source)

    assert report["verified"] and report["tables"]["documents"]["merged"] == 1
    folder = docs(db_url)[a.FOLDER]
    assert folder["extracted_text"] == "our own text" and folder["sha256"] == "f" * 64
    assert folder["metadata"]["alfrd"]["status"] == "ocr_completed"
    assert folder["metadata"]["alfrd"]["extracted_text"] == "Seite eins: Kontoauszug"
    assert folder["tags"] == ["scans", "bank"]
    again = do_import(config, source)
    assert again["tables"]["documents"]["merged"] == 0 and again["verified"]


def test_a_duckdb_file_that_is_not_alfrd_is_refused(tmp_path: Path, config: Path) -> None:
    other = tmp_path / "other.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE things (x INTEGER)")
    con.close()
    result = run_cli(config, "import-duckdb", str(other), check=False)
    assert result.returncode == 1 and "not an ALFRD database" in result.stderr


# --- export ----------------------------------------------------------------------------------
def duck_rows(path: Path, table: str) -> dict[str, dict[str, Any]]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        relation = con.table(table)
        return {row[0]: dict(zip(relation.columns, row, strict=True))
                for row in relation.fetchall()}
    finally:
        con.close()


def duck_types(path: Path, table: str) -> dict[str, str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        relation = con.table(table)
        return {c: str(t) for c, t in zip(relation.columns, relation.types, strict=True)}
    finally:
        con.close()


def same_value(column: str, a_value: Any, b_value: Any) -> bool:
    if isinstance(a_value, str) and isinstance(b_value, str) and column in JSON_COLUMNS:
        return json.loads(a_value) == json.loads(b_value)
    return a_value == b_value


JSON_COLUMNS = {"tags", "secondary_tags", "structured_data", "folder_metadata", "document_ids",
                "payload", "metadata", "performance_metrics"}


def test_export_round_trip_gives_alfrd_its_rows_back(source: Source, config: Path,
                                                     db_url: str, tmp_path: Path) -> None:
    do_import(config, source)
    # A document the daemon ingested itself: ALFRD's columns are derived for it.
    query(db_url, "INSERT INTO documents (id, sha256, original_name, source_path, tags, status,"
          " extracted_text, stored_path) VALUES ('11111111-2222-4333-8444-555555555555', %s,"
          " 'inbox.txt', 'taxes/inbox.txt', '{taxes}', 'extracted', 'hello', 'ab/cd/x')"
          " RETURNING id", ("e" * 64,))
    out = tmp_path / "export.duckdb"
    result = run_cli(config, "export-duckdb", str(out), "--json")
    report = json.loads(result.stdout)
    assert report["verified"] and report["tables"]["documents"]["rows"] == 10

    # ALFRD's own schema: every column it had, with its type.
    for table in ("documents", *source.tables):
        fixture = duck_types(source.path, table)
        exported = duck_types(out, table)
        assert {c: exported.get(c) for c in fixture} == fixture, table

    exported = duck_rows(out, "documents")
    originals = duck_rows(source.path, "documents")  # as stored (FLOAT is 32 bits)
    assert set(originals) <= set(exported)  # ids as ALFRD spelled them, the bad one too
    for doc_id, original in originals.items():
        row = exported[doc_id]
        for column, value in original.items():
            if column == "extracted_text" and value is not None:
                value = value.replace("\x00", "")
            assert same_value(column, row[column], value), (doc_id, column)
    assert exported[a.BILL]["pg_sha256"] == hashlib.sha256(a.BILL_BYTES).hexdigest()
    assert exported[a.BILL]["pg_tags"] == ["bills", "utilities", "2024", "strom"]
    assert exported[a.BILL_COPY]["pg_duplicate_of"] == a.BILL
    assert exported[a.BILL_COPY]["pg_sha256"] == exported[a.BILL]["pg_sha256"]
    ours = exported["11111111-2222-4333-8444-555555555555"]
    assert (ours["filename"], ours["status"], json.loads(ours["tags"])) == (
        "inbox.txt", "ocr_completed", ["taxes"])
    assert ours["raw_document_path"] == str(store_root(tmp_path) / "ab/cd/x")

    for table in source.tables:
        back = duck_rows(out, table)
        originals = duck_rows(source.path, table)
        assert set(back) == set(originals), table
        for row_id, original in originals.items():
            for column, value in original.items():
                assert same_value(column, back[row_id][column], value), (table, column)


def test_export_refuses_to_overwrite_unless_forced(config: Path, tmp_path: Path,
                                                   db_url: str) -> None:
    out = tmp_path / "exists.duckdb"
    out.write_bytes(b"keep me")
    refused = run_cli(config, "export-duckdb", str(out), check=False)
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert out.read_bytes() == b"keep me"

    run_cli(config, "export-duckdb", str(out), "--force")
    assert duck_rows(out, "documents") == {}
    assert not list(tmp_path.glob(".exists.duckdb.export-*"))

    nowhere = run_cli(config, "export-duckdb", str(tmp_path / "no" / "x.duckdb"), check=False)
    assert nowhere.returncode == 1 and "cannot write" in nowhere.stderr


# --- environment ---------------------------------------------------------------------------
def test_without_duckdb_the_commands_say_how_to_install_it(tmp_path: Path, config: Path) -> None:
    hide = tmp_path / "hide_duckdb"
    hide.mkdir()
    # An interpreter where `import duckdb` fails, as on a machine without the extra.
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['duckdb'] = None\n")
    env = {"PYTHONPATH": f"{hide}{os.pathsep}{REPO}"}
    for command in ("import-duckdb", "export-duckdb"):
        result = run_cli(config, command, str(tmp_path / "x.duckdb"), env=env, check=False)
        assert result.returncode == 2, result.stderr
        assert result.stderr.strip().splitlines() == [
            f"alfrd {command} needs the duckdb package, which is not installed: "
            "pip install 'alfrd-daemon[duckdb]'"]
    assert run_cli(config, "--help", env=env, check=False).returncode == 0


def test_progress_bar_is_drawn_on_a_terminal(source: Source, config: Path) -> None:
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "alfrd_daemon", "import-duckdb", str(source.path),
             "--json", "--config", str(config)],
            stdout=subprocess.PIPE, stderr=slave, env=alfrd_env(), cwd=REPO)
        os.close(slave)
        seen = b""
        while True:
            ready, _, _ = select.select([master], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            seen += chunk
        stdout, _ = proc.communicate(timeout=30)
    finally:
        os.close(master)
    assert proc.returncode == 0
    assert b"\r" in seen and b"100%" in seen and b"[" + b"#" * 24 + b"]" in seen
    assert json.loads(stdout)["verified"]  # stdout stays clean JSON


def test_import_runs_beside_the_daemon(source: Source, config: Path, db_url: str,
                                       tmp_path: Path) -> None:
    cjk_bytes = Path(source.documents[a.CJK]["raw_document_path"]).read_bytes()
    sha = hashlib.sha256(cjk_bytes).hexdigest()
    with DaemonProcess(config, tmp_path / "daemon.log"):
        # The same content reaches the daemon while the import runs: whichever records it
        # first owns the document, the other becomes its duplicate arrival.
        (tmp_path / "inbox" / "again.txt").write_bytes(cjk_bytes)
        report = do_import(config, source)
        wait_for(lambda: query(db_url, "SELECT 1 FROM document_arrivals WHERE source_path = "
                               "'again.txt'"), 30, "the daemon to ingest again.txt")
    assert report["verified"] and report["exit_code"] == 0
    owners = query(db_url, "SELECT id FROM documents WHERE sha256 = %s", (sha,))
    assert len(owners) == 1
    arrivals = query(db_url, "SELECT outcome FROM document_arrivals WHERE document_id = %s",
                     (owners[0]["id"],))
    assert sorted(r["outcome"] for r in arrivals) == ["duplicate", "ingested"]


def test_one_import_at_a_time(source: Source, config: Path, db_url: str) -> None:
    with psycopg.connect(db_url) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (IMPORT_LOCK,))
        busy = run_cli(config, "import-duckdb", str(source.path), check=False)
    assert busy.returncode == 1 and "another alfrd import-duckdb is running" in busy.stderr
    assert counts(db_url)["documents"] == 0
