"""Group commit on real PostgreSQL: shared transactions, yet each file its own outcome."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from alfrd_daemon.db.pool import Database
from alfrd_daemon.ingest.committer import Committer, Pending


def row(i: int, sha: str) -> dict[str, Any]:
    return {"id": None, "sha256": sha, "original_name": f"f{i}.txt", "source_path": f"f{i}.txt",
            "tags": [], "mime_type": "text/plain", "size_bytes": 1, "stored_path": None,
            "status": "extracted", "title": None, "extracted_text": f"text {i}",
            "extractor": "plain/1", "search_config": "english", "metadata": Jsonb({}),
            "error": None, "store_id": None, "document_type": None, "correspondent": None,
            "rule_tags": [], "document_date": None}


def arrival(i: int) -> dict[str, Any]:
    return {"claim_key": f"key-{i}", "source_path": f"f{i}.txt", "original_name": f"f{i}.txt",
            "size_bytes": 1, "instance": "test"}


@pytest.mark.timeout(60)
def test_one_bad_row_does_not_sink_the_batch(db_url: str, tmp_path: Path) -> None:
    db = Database(db_url, min_size=1, max_size=2)
    db.open()
    committer = Committer(db, tmp_path, fsync=False, max_batch=64)
    results: dict[int, Any] = {}
    all_done = threading.Event()
    good = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(10)]

    def done(i: int, outcome: Any, doc_id: Any, replayed: bool) -> None:
        results[i] = outcome
        if len(results) == 12:
            all_done.set()

    # Queue everything before the thread starts, so it all lands in one batch.
    for i, sha in enumerate(good):
        committer.submit(Pending(row(i, sha), arrival(i), lambda o, d, r, i=i: done(i, o, d, r)))
    committer.submit(Pending(row(10, "not-a-sha256"), arrival(10),
                             lambda o, d, r: done(10, o, d, r)))  # violates the CHECK
    committer.submit(Pending(row(11, good[0]), arrival(11),
                             lambda o, d, r: done(11, o, d, r)))  # same content as file 0
    try:
        committer.start()
        assert all_done.wait(30)
    finally:
        committer.stop(10)
        db.close()
    assert [results[i] for i in range(10)] == ["ingested"] * 10
    assert isinstance(results[10], psycopg.errors.CheckViolation)
    assert results[11] == "duplicate"
    assert committer.batches >= 2  # the failed batch was replayed file by file
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 10
        assert conn.execute("SELECT count(*) FROM document_arrivals").fetchone()[0] == 11
