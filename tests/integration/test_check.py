"""`alfrd check [--repair] [--json]`: half-finished work is found, and repaired without ever
deleting anything."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from alfrd_daemon.ingest.reconcile import classify, compare, store_relpath, undisplay
from alfrd_daemon.pgsafe import display_text
from tests.helpers import DaemonProcess, query, run_cli, wait_for
from tests.integration.faultkit import (
    CrashingDaemon,
    fault_config,
    sha,
    verify_archive,
    wait_all_processed,
)

pytestmark = pytest.mark.timeout(90)


def check_json(config: Path, *args: str) -> tuple[int, dict]:
    result = run_cli(config, "check", "--json", *args, check=False)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return result.returncode, json.loads(result.stdout)


def counts(report: dict) -> dict[str, int]:
    return {k: v["count"] for k, v in report["problems"].items() if v["count"]}


# --- the pure parts ------------------------------------------------------------------------------
def test_classify_and_compare_are_plain_set_arithmetic() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    assert classify(f"{digest[:2]}/{digest}") == ("file", bytes.fromhex(digest))
    # the layout of stores written before 2026-12
    assert classify(f"{digest[:2]}/{digest[2:4]}/{digest}") == ("file", bytes.fromhex(digest))
    assert classify(f"00/00/{digest}")[0] == "stray"  # in the wrong folder
    assert classify(f"00/{digest}")[0] == "stray"
    assert classify(f"{digest[:2]}/{digest[2:4]}/.incoming-abc123")[0] == "temp"
    assert classify(".probe-xyz")[0] == "temp"
    assert classify("notes.txt")[0] == "stray"
    assert store_relpath(bytes.fromhex(digest)) == f"{digest[:2]}/{digest}"
    a, b, c = (bytes([i]) * 32 for i in range(3))
    assert compare({a, b}, {b, c}) == ({a}, {c})
    raw = os.fsdecode(b"bad\xffname.txt")
    assert undisplay(display_text(raw)) == raw


# --- against a real archive ----------------------------------------------------------------------
def make_archive(tmp_path: Path, db_url: str) -> tuple[Path, dict[str, bytes]]:
    config = fault_config(tmp_path, db_url)
    inbox = tmp_path / "inbox"
    contents = {f"doc{i}.txt": f"archived document number {i}\n".encode() * 3 for i in range(5)}
    contents["empty.txt"] = b""
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        for name, data in contents.items():
            (inbox / name).write_bytes(data)
        wait_all_processed(db_url, inbox, len(contents), 30, alive=daemon.assert_alive)
    return config, contents


def test_clean_archive_checks_ok(tmp_path: Path, db_url: str) -> None:
    config, _contents = make_archive(tmp_path, db_url)
    code, report = check_json(config)
    assert code == 0 and report["ok"] is True, report
    assert report["checked"]["store_files"] == 5 and report["verified_hashes"] is True
    assert not counts(report)
    text = run_cli(config, "check").stdout
    assert "ok: nothing half-finished" in text


def test_check_reads_a_store_of_the_older_nested_layout(tmp_path: Path, db_url: str) -> None:
    config, _contents = make_archive(tmp_path, db_url)
    store = tmp_path / "var" / "store"
    for row in query(db_url, "SELECT id, sha256, stored_path FROM documents"
                             " WHERE status <> 'failed'"):
        digest = row["sha256"]
        nested = f"{digest[:2]}/{digest[2:4]}/{digest}"
        (store / nested).parent.mkdir(parents=True, exist_ok=True)
        os.rename(store / row["stored_path"], store / nested)
        query(db_url, "UPDATE documents SET stored_path = %s WHERE id = %s RETURNING id",
              (nested, row["id"]))
    orphan_data = b"an orphan of the older layout"
    digest = sha(orphan_data)
    orphan = store / digest[:2] / digest[2:4] / digest
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(orphan_data)
    code, report = check_json(config, "--grace", "0")
    assert code == 1
    assert report["checked"]["store_files"] == 6
    assert counts(report) == {"orphan_store_files": 1}, report
    [example] = report["problems"]["orphan_store_files"]["examples"]
    assert example["path"] == f"{digest[:2]}/{digest[2:4]}/{digest}"


def test_check_finds_and_repairs_half_finished_work(tmp_path: Path, db_url: str) -> None:
    config, _contents = make_archive(tmp_path, db_url)
    inbox, var = tmp_path / "inbox", tmp_path / "var"
    store, failed = var / "store", var / "failed"
    rows = {r["original_name"]: r for r in query(
        db_url, "SELECT id, original_name, stored_path, status, error FROM documents")}

    # A claim left by a daemon that is gone (its lock is free).
    dead = inbox / ".alfrd" / "claimed" / "gone-host-1-abc"
    (dead / "sub").mkdir(parents=True)
    (dead / "sub" / "claimed.txt").write_bytes(b"claimed, never committed")
    # An orphan: content in the store that no row names.
    orphan_data = b"stored but never committed"
    orphan = store / store_relpath(bytes.fromhex(sha(orphan_data)))
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(orphan_data)
    # A half-written copy.
    temp = orphan.parent / ".incoming-k2j3h4"
    temp.write_bytes(b"half a cop")
    # A row whose file is gone, and a stored file whose content changed.
    (store / rows["doc1.txt"]["stored_path"]).unlink()
    with open(store / rows["doc2.txt"]["stored_path"], "ab") as f:
        f.write(b"bit rot")
    # A failure note whose file is gone.
    (failed / "ghost.txt.error").write_text(json.dumps({"reason": "x", "source_path": "g"}))

    # Young files are in flight (a daemon links before it commits): not orphans yet.
    code, report = check_json(config)
    assert code == 1 and report["ok"] is False
    assert counts(report) == {"claimed_by_dead_daemon": 1, "rows_without_file": 1,
                              "hash_mismatch": 1, "notes_without_file": 1}, counts(report)
    assert report["info"]["recent_unreferenced"]["count"] == 1

    code, report = check_json(config, "--grace", "0")
    assert code == 1
    assert counts(report) == {"claimed_by_dead_daemon": 1, "orphan_store_files": 1,
                              "store_temp_files": 1, "rows_without_file": 1,
                              "hash_mismatch": 1, "notes_without_file": 1}, counts(report)
    problems = report["problems"]
    assert problems["claimed_by_dead_daemon"]["examples"] == [
        {"path": "sub/claimed.txt", "instance": "gone-host-1-abc"}]
    assert problems["orphan_store_files"]["examples"][0]["path"] == orphan.relative_to(
        store).as_posix()
    assert problems["rows_without_file"]["examples"] == [
        {"document_id": str(rows["doc1.txt"]["id"]),
         "stored_path": rows["doc1.txt"]["stored_path"]}]
    assert problems["hash_mismatch"]["examples"][0]["path"] == rows["doc2.txt"]["stored_path"]
    # A plain check changes nothing.
    assert (dead / "sub" / "claimed.txt").exists() and orphan.exists() and temp.exists()

    code, report = check_json(config, "--grace", "0", "--repair")
    assert {k: v["repaired"] for k, v in report["problems"].items() if v["repaired"]} == {
        "claimed_by_dead_daemon": 1, "orphan_store_files": 1, "store_temp_files": 1,
        "rows_without_file": 1, "notes_without_file": 1}
    # Nothing was deleted: each thing moved somewhere a person can look.
    assert (inbox / "sub" / "claimed.txt").read_bytes() == b"claimed, never committed"
    assert not dead.exists()
    moved = var / "orphans" / "store" / orphan.relative_to(store)
    assert moved.read_bytes() == orphan_data and not orphan.exists()
    assert (var / "orphans" / "store-temp" / temp.relative_to(store)).read_bytes() == \
        b"half a cop"
    assert (var / "orphans" / "failed-notes" / "ghost.txt.error").exists()
    row = query(db_url, "SELECT status, error FROM documents WHERE id = %s",
                (rows["doc1.txt"]["id"],))[0]
    assert row["status"] == rows["doc1.txt"]["status"]  # status stays
    assert "stored file missing" in row["error"]
    # Repair is idempotent: the note is not added twice, and what cannot be fixed stays.
    code, report = check_json(config, "--grace", "0", "--repair")
    assert code == 1 and counts(report) == {"rows_without_file": 1, "hash_mismatch": 1}
    row = query(db_url, "SELECT error FROM documents WHERE id = %s", (rows["doc1.txt"]["id"],))
    assert row[0]["error"].count("stored file missing") == 1
    text = run_cli(config, "check", check=False).stdout
    assert "rows whose stored file is missing" in text and "problems found" in text


def test_repair_returns_a_committed_claim_without_ingesting_it_twice(
    tmp_path: Path, db_url: str
) -> None:
    """kill -9 after the commit, before the claimed copy was removed; `check --repair` puts the
    claim back into the inbox; a daemon then recognises it (arrival key) and only removes it."""
    config = fault_config(tmp_path, db_url)
    inbox = tmp_path / "inbox"
    data = b"committed, then the daemon died"
    (inbox / "once.txt").write_bytes(data)
    crashing = CrashingDaemon(config, tmp_path / "crash.log",
                              "alfrd_daemon.ingest.committer:write_rows", 1, "after").start()
    assert crashing.proc is not None
    crashing.proc.wait(60)
    crashing.kill()
    assert crashing.proc.returncode == -9
    code, report = check_json(config)
    assert counts(report) == {"claimed_by_dead_daemon": 1}
    code, report = check_json(config, "--repair")
    assert code == 0 and report["ok"], report
    assert (inbox / "once.txt").read_bytes() == data
    with DaemonProcess(config, tmp_path / "after.log") as daemon:
        wait_for(lambda: not (inbox / "once.txt").exists(), 30, "the file to be taken",
                 alive=daemon.assert_alive)
        wait_all_processed(db_url, inbox, 1, 30, alive=daemon.assert_alive)
        assert "claim replayed" in daemon.log()
    verify_archive(db_url, config, {"once.txt": sha(data)})
