"""Group commit on real PostgreSQL: shared transactions, yet each file its own outcome."""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from alfrd_daemon.db.pool import Database
from alfrd_daemon.ingest.committer import (
    SYNCFS_FROM,
    WORKER_FSYNC_BELOW,
    Committer,
    Pending,
    gathers,
    write_rows,
)
from tests.helpers import query


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


def run_until(committer: Committer, db: Database, finished: threading.Event) -> None:
    """Start the committer, wait for `finished`, then stop it and close its pool."""
    try:
        committer.start()
        assert finished.wait(30)
    finally:
        committer.stop(10)
        db.close()


@pytest.mark.timeout(60)
def test_one_bad_row_does_not_sink_the_batch(db_url: str, tmp_path: Path) -> None:
    db = Database(db_url, min_size=1, max_size=2)
    db.open()
    committer = Committer(db, tmp_path, fsync=False, in_flight=lambda: 0, max_batch=64)
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
    run_until(committer, db, all_done)
    assert [results[i] for i in range(10)] == ["ingested"] * 10
    assert isinstance(results[10], psycopg.errors.CheckViolation)
    assert results[11] == "duplicate"
    assert committer.batches >= 2  # the failed batch was replayed file by file
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM documents").fetchone()[0] == 10
        assert conn.execute("SELECT count(*) FROM document_arrivals").fetchone()[0] == 11


def tricky_batch() -> tuple[list[tuple[dict[str, Any], dict[str, Any]]], list[str]]:
    """Rows that meet every conflict a batch can hold, and the SQL that prepares them."""
    sha = [hashlib.sha256(f"content {i}".encode()).hexdigest() for i in range(8)]
    odd = row(0, sha[0]) | {
        "original_name": "naïve \"quoted\" {braces}, 'apostrophes'\n.txt",
        "tags": ["a,b", 'c"d', "{x}", "ü", "NULL"], "rule_tags": ["\\back"],
        "title": "Résumé — 2026", "extracted_text": "line one\nline\ttwo \\ \u2603 😀",
        "metadata": Jsonb({"nested": {"list": [1, 2.5, None, "x"]}, "flag": True}),
        "document_date": dt.date(2026, 2, 28), "document_type": "Bill",
        "correspondent": "ACME"}
    folder_id = "6f1c0c1e-2a7b-4b8e-9a55-2d7d1c3f0a11"
    failed = row(2, sha[2]) | {"status": "failed", "error": "bad", "extracted_text": None}
    items = [
        (odd, arrival(0)),
        (row(1, sha[1]), arrival(1)),
        (failed, arrival(2)),                               # failed, then its good copy
        (row(3, sha[2]), arrival(3)),
        (row(4, sha[1]), arrival(4)),                       # same content as file 1
        (row(5, sha[3]), arrival(5)),                       # revives a trashed document
        (row(6, sha[4]), arrival(6) | {"claim_key": "replayed"}),  # recorded before a crash
        (row(7, sha[5]) | {"id": folder_id}, arrival(7)),  # a folder document's own id
        (row(8, sha[6]) | {"id": folder_id}, arrival(8)),  # the same id, other content
        (row(9, sha[7]), arrival(9)),
        (row(10, sha[7]) | {"status": "failed", "error": "x"}, arrival(10)),  # good, failed
        (row(11, sha[0]), arrival(11) | {"claim_key": "key-0"}),  # a key seen in the batch
    ]
    before = [(row(20, sha[3]), arrival(20)), (row(21, sha[4]), arrival(21) | {
        "claim_key": "replayed"})]
    return before + items, ["UPDATE documents SET deleted_at = now() WHERE source_path = 'f20.txt'"]


def stored_rows(conn: psycopg.Connection[Any]) -> tuple[list[Any], list[Any]]:
    docs = conn.execute(
        "SELECT sha256, original_name, source_path, tags, mime_type, status, title,"
        " extracted_text, metadata, error, document_type, correspondent, rule_tags,"
        " document_date, deleted_at IS NULL, search_vector::text FROM documents"
        " ORDER BY sha256").fetchall()
    arrivals = conn.execute(
        "SELECT a.claim_key, a.source_path, a.outcome, d.sha256 FROM document_arrivals a"
        " JOIN documents d ON d.id = a.document_id ORDER BY a.claim_key").fetchall()
    return docs, arrivals


@pytest.mark.timeout(60)
def test_a_batch_writes_what_its_files_one_by_one_would(db_url: str) -> None:
    """One statement for the batch must give every file the outcome, and the tables the rows,
    that writing the same files one after another gives."""
    items, prepare = tricky_batch()
    results = {}
    snapshots = {}
    db = Database(db_url, min_size=1, max_size=2)
    db.open()
    try:
        for way in ("batch", "one by one"):
            with psycopg.connect(db_url, autocommit=True) as conn:
                conn.execute("TRUNCATE documents CASCADE")
            write_rows(db, items[:2])
            with psycopg.connect(db_url, autocommit=True) as conn:
                for sql in prepare:
                    conn.execute(sql)
            rest = items[2:]
            got = (write_rows(db, rest) if way == "batch"
                   else [write_rows(db, [item])[0] for item in rest])
            with psycopg.connect(db_url) as conn:
                by_id = dict(conn.execute("SELECT id::text, sha256 FROM documents").fetchall())
                snapshots[way] = stored_rows(conn)
            results[way] = [(outcome, by_id[doc_id], replayed)
                            for outcome, doc_id, replayed in got]
    finally:
        db.close()
    assert results["batch"] == results["one by one"]
    assert snapshots["batch"] == snapshots["one by one"]
    outcomes = [outcome for outcome, _, _ in results["batch"]]
    assert outcomes == ["ingested", "ingested", "ingested", "ingested", "duplicate", "ingested",
                        "duplicate", "ingested", "duplicate", "ingested", "duplicate",
                        "duplicate"]
    assert [replayed for _, _, replayed in results["batch"]] == [False] * 6 + [True] + [
        False] * 4 + [True]
    odd = snapshots["batch"][0][[r[0] for r in snapshots["batch"][0]].index(items[2][0][
        "sha256"])]
    assert odd[1:4] == (items[2][0]["original_name"], items[2][0]["source_path"],
                        items[2][0]["tags"])
    assert odd[7:9] == (items[2][0]["extracted_text"], items[2][0]["metadata"].obj)
    assert odd[13] == dt.date(2026, 2, 28)


def test_workers_leave_the_flush_to_the_batch_while_many_files_are_in_flight(
        tmp_path: Path) -> None:
    """A committer that drains its queue fast must not make every worker of a backlog fsync
    each file: the files in flight decide too (the backlog took 1.6 times the CPU)."""
    committer = Committer(Database("postgresql:///unused"), tmp_path, fsync=True,
                          in_flight=lambda: 0)
    assert committer.wants_worker_fsync(in_flight=1)
    assert committer.wants_worker_fsync(in_flight=WORKER_FSYNC_BELOW - 1)
    assert not committer.wants_worker_fsync(in_flight=WORKER_FSYNC_BELOW)
    for i in range(SYNCFS_FROM):
        committer.submit(Pending(row(i, "0" * 64), arrival(i), lambda o, d, r: None))
    assert not committer.wants_worker_fsync(in_flight=1)


def test_only_a_small_batch_of_a_backlog_waits_for_more_files() -> None:
    """The committer keeps up with a backlog, so its batches stay small and each file was
    fsynced in turn: while a backlog is in flight a small batch waits (briefly) for enough
    files for one syncfs. At low rates nothing waits."""
    assert gathers(1, in_flight=WORKER_FSYNC_BELOW)
    assert gathers(SYNCFS_FROM - 1, in_flight=1000)
    assert not gathers(SYNCFS_FROM, in_flight=1000)
    assert not gathers(1, in_flight=WORKER_FSYNC_BELOW - 1)


def committed_files(db_url: str, tmp_path: Path, in_flight: int, files: int,
                    gather_seconds: float) -> tuple[float, int]:
    """(seconds until every file's verdict, batches) for `files` submitted at once."""
    db = Database(db_url, min_size=1, max_size=2)
    db.open()
    committer = Committer(db, tmp_path, fsync=True, in_flight=lambda: in_flight,
                          gather_seconds=gather_seconds)
    committer.start()
    verdicts: list[Any] = []
    all_done = threading.Event()

    def done(outcome: Any, _doc: Any, _replayed: bool) -> None:
        verdicts.append(outcome)
        if len(verdicts) == files:
            all_done.set()

    try:
        started = time.monotonic()
        for i in range(files):
            stored = tmp_path / f"stored-{i}"
            stored.write_bytes(b"x")
            committer.submit(Pending(row(i, hashlib.sha256(str(i).encode()).hexdigest()),
                                     arrival(i), done, stored=stored))
        assert all_done.wait(30)
        return time.monotonic() - started, committer.batches
    finally:
        committer.stop(10)
        db.close()


@pytest.mark.timeout(60)
def test_a_file_at_a_low_rate_never_waits_for_company(db_url: str, tmp_path: Path) -> None:
    seconds, batches = committed_files(db_url, tmp_path, in_flight=1, files=1,
                                       gather_seconds=60)
    assert seconds < 30 and batches == 1
    assert query(db_url, "SELECT count(*) AS n FROM documents")[0]["n"] == 1


@pytest.mark.timeout(60)
def test_a_gathering_batch_goes_once_it_can_take_one_syncfs(db_url: str,
                                                            tmp_path: Path) -> None:
    """With a backlog in flight and a minute to gather, SYNCFS_FROM files still go at once."""
    seconds, batches = committed_files(db_url, tmp_path, in_flight=1000, files=SYNCFS_FROM,
                                       gather_seconds=60)
    assert seconds < 30 and 1 <= batches <= 2


@pytest.mark.timeout(60)
def test_a_value_json_cannot_hold_fails_its_file_only(db_url: str, tmp_path: Path) -> None:
    """The batch goes to the server as JSON: a value that JSON cannot carry must fail its own
    file, as a value psycopg cannot adapt did, and never stop the committer thread."""
    db = Database(db_url, min_size=1, max_size=2)
    db.open()
    committer = Committer(db, tmp_path, fsync=False, in_flight=lambda: 0, max_batch=64)
    results: dict[int, Any] = {}
    all_done = threading.Event()

    def done(i: int, outcome: Any) -> None:
        results[i] = outcome
        if len(results) == 4:
            all_done.set()

    bad = {1: {"metadata": Jsonb({"ratio": float("nan")})}, 2: {"document_date": object()}}
    for i in range(4):
        sha = hashlib.sha256(f"json {i}".encode()).hexdigest()
        committer.submit(Pending(row(i, sha) | bad.get(i, {}), arrival(i),
                                 lambda o, d, r, i=i: done(i, o)))
    try:
        committer.start()
        assert all_done.wait(30)
        assert committer.alive()
    finally:
        committer.stop(10)
        db.close()
    assert results[0] == results[3] == "ingested"
    assert isinstance(results[1], psycopg.DataError) and "float" in str(results[1])
    assert isinstance(results[2], psycopg.DataError) and "object" in str(results[2])


@pytest.mark.timeout(60)
def test_after_batch_runs_once_each_batch_after_all_its_verdicts(db_url: str,
                                                                  tmp_path: Path) -> None:
    """The daemon hands a batch's releases on in one piece: the hook must come after every
    verdict of its batch (a release queued later would wait for the next batch), once."""
    db = Database(db_url, min_size=1, max_size=2)
    db.open()
    events: list[str] = []
    finished = threading.Event()

    def after() -> None:
        events.append("after")
        if events.count("after") == 2:
            finished.set()

    committer = Committer(db, tmp_path, fsync=False, in_flight=lambda: 0, max_batch=3,
                          after_batch=after)
    shas = [hashlib.sha256(f"after {i}".encode()).hexdigest() for i in range(6)]
    for i, sha in enumerate(shas):  # queued before the thread starts: two full batches
        committer.submit(Pending(row(i, sha), arrival(i),
                                 lambda o, d, r, i=i: events.append(f"{i}:{o}")))
    run_until(committer, db, finished)
    assert events == ["0:ingested", "1:ingested", "2:ingested", "after",
                      "3:ingested", "4:ingested", "5:ingested", "after"]
