"""The hook runner in this process against real PostgreSQL and real shell scripts: the
environment a hook sees, a failing hook recorded without touching its document, retries,
documents in the trash, and an archive without hooks that queues nothing."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alfrd_daemon.config.hooks import HooksSettings, command
from alfrd_daemon.db.pool import Database
from alfrd_daemon.hooks.runner import HookRunner
from tests.conftest import RUN_PREFIX, create_database, drop_database
from tests.helpers import query, wait_for

HOST = "hooktest"


def script(tmp: Path, name: str, body: str) -> Path:
    path = tmp / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def module_db_url(pg_admin: str, template_db: str) -> Iterator[str]:
    """One database for this module's tests, emptied before each (dropping a database costs
    seconds on a busy machine)."""
    name = f"{RUN_PREFIX}_hooks_{secrets.token_hex(3)}"
    url = create_database(pg_admin, name, template=template_db)
    try:
        yield url
    finally:
        drop_database(pg_admin, name)


@pytest.fixture
def db_url(module_db_url: str) -> str:
    with psycopg.connect(module_db_url) as conn:
        conn.execute("TRUNCATE documents, hook_config CASCADE")
    return module_db_url


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = Database(db_url, min_size=1, max_size=3, name="hooktest")
    database.open(timeout=10)
    try:
        yield database
    finally:
        database.close()


def runner(db: Database, tmp: Path, **hooks: Any) -> HookRunner:
    settings = HooksSettings(**{"timeout_seconds": 10.0, **hooks})
    # Only PATH of the test's environment, so the hook's environment can be compared whole.
    return HookRunner(settings, db, store_root=tmp / "store", store_id=None,
                      instance=f"{HOST}-{os.getpid()}-abcdef", host=HOST,
                      environ=lambda: {"PATH": os.environ["PATH"]})


def insert_document(db_url: str, **fields: Any) -> str:
    row = {"id": str(uuid.uuid4()), "sha256": uuid.uuid4().hex * 2,
           "original_name": "Rechnung März.pdf", "source_path": "bills/2024/Rechnung März.pdf",
           "tags": ["bills", "2024"], "mime_type": "application/pdf",
           "stored_path": "ab/cd/abcd.pdf", "status": "extracted", "extracted_text":
           "electricity invoice quokka", **fields}
    cols = ", ".join(row)
    values = ", ".join(f"%({k})s" for k in row)
    query(db_url, f"INSERT INTO documents ({cols}) VALUES ({values}) RETURNING id", row)
    return row["id"]


def run_of(db_url: str, doc: str, hook: str = "post_ingest") -> dict[str, Any] | None:
    rows = query(db_url, "SELECT * FROM hook_runs WHERE document_id = %s AND hook = %s",
                 (doc, hook))
    return rows[0] if rows else None


def test_the_hook_sees_every_field_of_the_document(tmp_path: Path, db: Database,
                                                   db_url: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    hook = script(tmp_path, "hook.sh",
                  'env | grep -v "^PATH=\\|^PWD=\\|^SHLVL=\\|^_="'
                  f' > "{out}/$ALFRD_DOCUMENT_ID.env"\n'
                  'read -r line && echo "stdin was not empty"\necho "hook ran"\n')
    r = runner(db, tmp_path, post_ingest=command(str(hook)))
    r.start()
    try:
        doc = insert_document(db_url, document_type="invoice", correspondent="Stadtwerke Köln",
                              document_date="2024-03-05", title="Strom März")
        done = wait_for(lambda: (run_of(db_url, doc) or {}).get("state") == "done", 15,
                        "the hook run")
        assert done
    finally:
        assert r.stop()
    env = dict(line.split("=", 1) for line in
               (out / f"{doc}.env").read_text("utf-8").splitlines())
    # The run's lease token, by which a restarted daemon finds a hook its predecessor left.
    assert env.pop("ALFRD_HOOK_LEASE").startswith(f"{HOST}-{os.getpid()}-abcdef/")
    assert env == {
        "ALFRD_HOOK": "post_ingest", "ALFRD_DOCUMENT_ID": doc,
        "ALFRD_DOCUMENT_PATH": str(tmp_path / "store" / "ab/cd/abcd.pdf"),
        "ALFRD_DOCUMENT_NAME": "Rechnung März.pdf", "ALFRD_DOCUMENT_TITLE": "Strom März",
        "ALFRD_DOCUMENT_TAGS": "bills,2024", "ALFRD_DOCUMENT_TYPE": "invoice",
        "ALFRD_DOCUMENT_CORRESPONDENT": "Stadtwerke Köln", "ALFRD_DOCUMENT_DATE": "2024-03-05",
        "ALFRD_DOCUMENT_MIME": "application/pdf", "ALFRD_DOCUMENT_STATUS": "extracted"}
    run = run_of(db_url, doc)
    assert run is not None
    assert run["exit_code"] == 0 and run["attempts"] == 1 and run["last_error"] is None
    assert run["output"].strip() == "hook ran"  # stdin is /dev/null: `read` found nothing


def test_a_failing_hook_is_recorded_and_the_document_is_untouched(tmp_path: Path,
                                                                  db: Database,
                                                                  db_url: str) -> None:
    hook = script(tmp_path, "fail.sh", 'echo "no printer: $ALFRD_DOCUMENT_NAME" >&2\nexit 3\n')
    r = runner(db, tmp_path, post_ingest=command(f"{hook} --flag"))
    r.start()
    try:
        doc = insert_document(db_url)
        wait_for(lambda: (run_of(db_url, doc) or {}).get("state") == "failed", 15,
                 "the failed run")
    finally:
        assert r.stop()
    run = run_of(db_url, doc)
    assert run is not None
    assert run["exit_code"] == 3 and run["attempts"] == 1  # no retry by default
    assert run["last_error"] == "exited with status 3"
    assert "no printer: Rechnung März.pdf" in run["output"]
    row = query(db_url, "SELECT status, error, extracted_text, tags, metadata FROM documents "
                "WHERE id = %s", (doc,))[0]
    assert row["status"] == "extracted" and row["error"] is None
    assert row["tags"] == ["bills", "2024"]
    failure = row["metadata"]["hooks"]["post_ingest"]
    assert failure["exit_code"] == 3 and failure["error"] == "exited with status 3"
    assert failure["at"]
    hits = query(db_url, "SELECT id::text FROM documents WHERE search_vector @@ "
                 "websearch_to_tsquery('english', 'quokka')")
    assert [h["id"] for h in hits] == [doc]


def test_retries_run_again_and_a_success_clears_the_failure(tmp_path: Path, db: Database,
                                                             db_url: str) -> None:
    marker = tmp_path / "second"
    # Fails the first time, succeeds the second.
    hook = script(tmp_path, "flaky.sh",
                  f'if [ -e "{marker}" ]; then exit 0; fi\ntouch "{marker}"\nexit 1\n')
    r = runner(db, tmp_path, post_ingest=command(str(hook)), retries=1)
    r.start()
    try:
        doc = insert_document(db_url)
        wait_for(lambda: (run_of(db_url, doc) or {}).get("attempts") == 1 and
                 run_of(db_url, doc)["state"] == "queued", 15, "the first, failed run")
        # The retry is due 30 s later; bring it forward rather than wait.
        query(db_url, "UPDATE hook_runs SET not_before = now() WHERE document_id = %s "
              "RETURNING 1", (doc,))
        r.wake()
        wait_for(lambda: run_of(db_url, doc)["state"] == "done", 15, "the retry")
    finally:
        assert r.stop()
    assert run_of(db_url, doc)["attempts"] == 2
    meta = query(db_url, "SELECT metadata FROM documents WHERE id = %s", (doc,))[0]["metadata"]
    assert "post_ingest" not in meta.get("hooks", {})


def test_trash_and_unconfigured_hooks_are_skipped(tmp_path: Path, db: Database,
                                                  db_url: str) -> None:
    ok = script(tmp_path, "ok.sh", "exit 0\n")
    r = runner(db, tmp_path, post_ingest=command(str(ok)))
    r.declared = True  # declare by hand below, before any runner thread looks
    r.queue.declare(r.commands)
    trashed = insert_document(db_url, deleted_at="2024-01-01T00:00:00Z")
    waiting = insert_document(db_url)
    r.start()
    try:
        wait_for(lambda: (run_of(db_url, trashed) or {}).get("state") == "skipped", 15,
                 "the trashed document's run skipped")
        wait_for(lambda: (run_of(db_url, waiting) or {}).get("state") == "done", 15,
                 "the other run")
    finally:
        assert r.stop()
    # This host has no hooks any more: nothing is queued for new documents, and runs left
    # queued, or running under a lease that ran out, are skipped.
    left = insert_document(db_url)
    query(db_url, "INSERT INTO hook_runs (document_id, hook) VALUES (%s, 'post_ocr') "
          "RETURNING 1", (left,))
    query(db_url, "UPDATE hook_runs SET state = 'running', lease_owner = 'gone-1-x/y', "
          "lease_expires_at = now() - interval '1 s' WHERE document_id = %s "
          "AND hook = 'post_ingest' RETURNING 1", (left,))
    none = runner(db, tmp_path)
    none.start()
    assert {r["hook"]: r["state"] for r in query(
        db_url, "SELECT hook, state FROM hook_runs WHERE document_id = %s", (left,))} == {
        "post_ingest": "skipped", "post_ocr": "skipped"}
    assert none.declared and none.state()["hooks"] == []
    later = insert_document(db_url)
    assert run_of(db_url, later) is None
    assert query(db_url, "SELECT count(*) AS n FROM hook_config")[0]["n"] == 0


def test_a_stop_kills_the_running_hook_and_puts_its_run_back(tmp_path: Path, db: Database,
                                                             db_url: str) -> None:
    pid_file = tmp_path / "pid"
    hook = script(tmp_path, "slow.sh", f'echo $$ > "{pid_file}"\nexec sleep 300\n')
    r = runner(db, tmp_path, post_ingest=command(str(hook)))
    r.start()
    doc = insert_document(db_url)
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 15,
                 "the hook to start")
    finally:
        assert r.stop()
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # our own child: reaped by run_hook
    run = run_of(db_url, doc)
    assert run is not None
    assert run["state"] == "queued" and run["attempts"] == 0 and run["lease_owner"] is None


def test_which_changes_of_a_document_queue_which_hook(tmp_path: Path, db: Database,
                                                      db_url: str) -> None:
    """post_ingest once per document, also when a failed row is replaced by a good ingest;
    post_ocr after every completed OCR."""
    r = runner(db, tmp_path, post_ingest=("true",), post_ocr=("true",))
    r.queue.declare(r.commands)  # no runner threads: the runs stay as the triggers left them
    failed = insert_document(db_url, status="failed", error="unreadable")
    assert run_of(db_url, failed) is None
    query(db_url, "UPDATE documents SET status = 'extracted', error = NULL WHERE id = %s "
          "RETURNING 1", (failed,))
    assert run_of(db_url, failed)["state"] == "queued"
    query(db_url, "UPDATE hook_runs SET state = 'done' WHERE document_id = %s RETURNING 1",
          (failed,))
    # Its OCR failed and is taken again: no new ingest, no second post_ingest.
    for status in ("failed", "pending"):
        query(db_url, "UPDATE documents SET status = %s WHERE id = %s RETURNING 1",
              (status, failed))
    assert run_of(db_url, failed)["state"] == "done"
    # `alfrd import-duckdb` moves an archive in: no new ingest, no hook.
    with psycopg.connect(db_url) as conn:
        conn.execute("SELECT set_config('alfrd.skip_hooks', 'on', false)")
        imported = str(conn.execute(
            "INSERT INTO documents (sha256, original_name, source_path, status) "
            "VALUES (repeat('e', 64), 'old.txt', 'old.txt', 'extracted') RETURNING id"
        ).fetchone()[0])
    assert run_of(db_url, imported) is None

    scan = insert_document(db_url, status="pending", mime_type="image/png")
    assert query(db_url, "SELECT state FROM ocr_jobs WHERE document_id = %s", (scan,))
    assert run_of(db_url, scan, "post_ocr") is None
    for round_ in (1, 2):  # `alfrd ocr --again` reads it once more: the hook runs again
        for state in ("running", "done"):
            query(db_url, "UPDATE ocr_jobs SET state = %s WHERE document_id = %s RETURNING 1",
                  (state, scan))
        run = run_of(db_url, scan, "post_ocr")
        assert run is not None and run["state"] == "queued" and run["attempts"] == 0, round_
        query(db_url, "UPDATE hook_runs SET state = 'done', attempts = 1 "
              "WHERE document_id = %s AND hook = 'post_ocr' RETURNING 1", (scan,))
    # Marking a done job done again (a no-op update) queues nothing.
    query(db_url, "UPDATE ocr_jobs SET state = 'done' WHERE document_id = %s RETURNING 1",
          (scan,))
    assert run_of(db_url, scan, "post_ocr")["state"] == "done"
