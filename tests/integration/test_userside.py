"""The archive from the user's side, against a running daemon: `alfrd get` and `alfrd open`
give back the verified original bytes, `alfrd tag` and `alfrd set` record the user's edits,
`alfrd delete` moves documents to a trash that `alfrd restore-deleted` and a new drop of the
same content undo, and the prune job empties it."""

from __future__ import annotations

import hashlib
import json
import os
import pty
import secrets
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from alfrd_daemon.cli.main import main
from alfrd_daemon.ingest.store import Store
from tests.conftest import create_database, drop_database
from tests.helpers import (
    REPO,
    DaemonProcess,
    alfrd_env,
    claimed_files,
    inbox_files,
    query,
    run_cli,
    wait_for,
)
from tests.integration.faultkit import fault_config
from tests.samples import write_folder_document

pytestmark = pytest.mark.timeout(120)


@dataclass
class Archive:
    tmp: Path
    db_url: str
    config: Path
    daemon: DaemonProcess

    @property
    def inbox(self) -> Path:
        return self.tmp / "inbox"

    @property
    def store(self) -> Path:
        return self.tmp / "var" / "store"

    def drop(self, name: str, data: bytes) -> str:
        """Drop a file and wait for its row; returns the document id."""
        digest = hashlib.sha256(data).hexdigest()
        (self.inbox / name).write_bytes(data)

        def live() -> Any:
            rows = query(self.db_url, "SELECT d.id FROM documents d JOIN document_arrivals a "
                         "ON a.document_id = d.id WHERE d.sha256 = %s AND a.original_name = %s "
                         "AND d.deleted_at IS NULL", (digest, os.path.basename(name)))
            return rows and str(rows[0]["id"])

        return str(wait_for(live, 30, f"{name} ingested", alive=self.daemon.assert_alive))

    def row(self, doc_id: str) -> dict[str, Any] | None:
        rows = query(self.db_url, "SELECT * FROM documents WHERE id = %s", (doc_id,))
        return rows[0] if rows else None

    def cli(self, *args: str, check: bool = True,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return run_cli(self.config, *args, check=check, env=env)

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.cli(*args, "--json").stdout)


@pytest.fixture(scope="module")
def archive(pg_admin: str, template_db: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    """One daemon for the module (starting one costs seconds); each test uses documents of
    its own."""
    tmp = tmp_path_factory.mktemp("userside")
    name = f"alfrd_userside_{secrets.token_hex(4)}"
    db_url = create_database(pg_admin, name, template=template_db)
    config = fault_config(tmp, db_url, trash={"keep_days": 30})
    daemon = DaemonProcess(config, tmp / "daemon.log")
    try:
        with daemon:
            yield Archive(tmp, db_url, config, daemon)
    finally:
        drop_database(pg_admin, name)


def _stderr_on_a_terminal(argv: list[str]) -> str:
    """Run a command whose stderr is a pseudo-terminal; returns what it wrote there."""
    leader, follower = pty.openpty()
    try:
        proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=follower,
                              stdin=subprocess.DEVNULL, env=alfrd_env(), cwd=REPO, timeout=60)
        os.close(follower)
        follower = -1
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if follower >= 0:
            os.close(follower)
        os.close(leader)
    assert proc.returncode == 0
    return b"".join(chunks).decode(errors="replace")


# --- alfrd get ----------------------------------------------------------------------------------
def test_get_gives_back_the_original_bytes_under_a_safe_name(archive: Archive,
                                                             tmp_path: Path) -> None:
    data = b"the electricity bill of March\n" * 20
    doc = archive.drop("-bill.txt", data)
    out = tmp_path / "out"
    out.mkdir()
    # While the daemon ingests other files.
    stop = threading.Event()

    def keep_dropping() -> None:
        n = 0
        while not stop.is_set() and n < 20:
            (archive.inbox / f"busy{n}.txt").write_bytes(f"busy file {n} {doc}\n".encode())
            n += 1
            stop.wait(0.05)

    dropper = threading.Thread(target=keep_dropping)
    dropper.start()
    try:
        result = json.loads(archive.cli("get", doc[:8], "-o", str(out), "--json").stdout)
    finally:
        stop.set()
        dropper.join()
    [got] = result["got"]
    assert result["problems"] == []
    # A leading dash would be read as an option by the next command.
    assert Path(got["path"]) == out / "bill.txt"
    assert (out / "bill.txt").read_bytes() == data and got["bytes"] == len(data)
    assert not [p for p in os.listdir(out) if p.startswith(".alfrd-get-")]

    # Never over an existing file, unless --force.
    (out / "bill.txt").write_bytes(b"mine")
    again = archive.cli("get", doc, "-o", str(out), check=False)
    assert again.returncode == 1 and "exists" in again.stderr
    assert (out / "bill.txt").read_bytes() == b"mine"
    archive.cli("get", doc, "-o", str(out), "--force")
    assert (out / "bill.txt").read_bytes() == data

    # -o naming a file.
    archive.cli("get", doc, "-o", str(tmp_path / "renamed.txt"))
    assert (tmp_path / "renamed.txt").read_bytes() == data


def test_get_of_several_documents_numbers_clashing_names(archive: Archive,
                                                         tmp_path: Path) -> None:
    a = archive.drop("report.txt", b"first report about cranes\n")
    (archive.inbox / "sub").mkdir(exist_ok=True)
    b = archive.drop("sub/report.txt", b"second report about cranes\n")
    out = tmp_path / "several"
    result = json.loads(archive.cli("get", a, b, "-o", str(out), "--json").stdout)
    names = sorted(os.listdir(out))
    assert names == ["report (2).txt", "report.txt"], names
    contents = {(out / n).read_bytes() for n in names}
    assert contents == {b"first report about cranes\n", b"second report about cranes\n"}
    assert len(result["got"]) == 2

    # On a terminal, a bar says how far it is.
    progress = _stderr_on_a_terminal([sys.executable, "-m", "alfrd_daemon", "get", a, b, "-o",
                                      str(tmp_path / "on-a-tty"), "--config",
                                      str(archive.config)])
    assert "alfrd get: done [####" in progress and "100%" in progress, progress

    # --search into a folder; an unknown id next to good ones: the good ones land, exit 1.
    by_search = tmp_path / "by-search"
    found = archive.cli("get", "--search", "cranes", "-o", str(by_search))
    assert sorted(os.listdir(by_search)) == ["report (2).txt", "report.txt"], found.stdout
    mixed = archive.cli("get", a, "ffffffff", "-o", str(tmp_path / "mixed"), check=False)
    assert mixed.returncode == 1 and "no document matches 'ffffffff'" in mixed.stderr
    assert os.listdir(tmp_path / "mixed") == ["report.txt"]


def test_get_refuses_a_damaged_stored_file(archive: Archive, tmp_path: Path) -> None:
    data = b"a contract that must come back intact\n" * 10
    doc = archive.drop("contract.txt", data)
    row = archive.row(doc)
    assert row is not None
    stored = archive.store / row["stored_path"]
    os.chmod(stored, stat.S_IRUSR | stat.S_IWUSR)
    stored.write_bytes(data.replace(b"intact", b"broken"))  # same size, other bytes
    out = tmp_path / "out"
    out.mkdir()
    result = archive.cli("get", doc, "-o", str(out), check=False)
    assert result.returncode == 1
    assert str(stored) in result.stderr and "does not match its sha256" in result.stderr
    assert os.listdir(out) == []  # no partial copy, no temporary file

    piped = subprocess.run([sys.executable, "-m", "alfrd_daemon", "get", doc, "--stdout",
                            "--config", str(archive.config)], capture_output=True,
                           env=alfrd_env(), cwd=REPO, timeout=60)
    assert piped.returncode == 1 and piped.stdout == b""  # verified before a byte is sent


def test_get_to_stdout_and_the_store_of_another_host(archive: Archive) -> None:
    data = bytes(range(256)) * 8  # binary, not text
    doc = archive.drop("blob.bin", data)
    piped = subprocess.run([sys.executable, "-m", "alfrd_daemon", "get", doc, "--stdout",
                            "--config", str(archive.config)], capture_output=True,
                           env=alfrd_env(), cwd=REPO, timeout=60)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == data

    other = query(archive.db_url, "INSERT INTO stores (id, hostname, path) VALUES "
                  "(gen_random_uuid(), 'scanner-pc', '/srv/alfrd/store') RETURNING id")[0]["id"]
    query(archive.db_url, "UPDATE documents SET store_id = %s WHERE id = %s RETURNING id",
          (other, doc))
    result = archive.cli("get", doc, "--stdout", check=False)
    assert result.returncode == 1
    assert "scanner-pc" in result.stderr and "/srv/alfrd/store" in result.stderr


def test_get_of_a_document_folder_gives_a_folder_of_its_pages(archive: Archive,
                                                             tmp_path: Path) -> None:
    doc_id = "5b2f8a4e-0000-4000-8000-00000000f01d"
    pages = {"page1.txt": b"first page of the scan\n", "page2.txt": b"second page\n"}
    write_folder_document(archive.inbox / "scan-0001", doc_id, pages, ["scans"])
    wait_for(lambda: archive.row(doc_id), 30, "the folder document",
             alive=archive.daemon.assert_alive)
    out = tmp_path / "out"
    out.mkdir()
    result = json.loads(archive.cli("get", doc_id, "-o", str(out), "--json").stdout)
    folder = Path(result["got"][0]["path"])
    assert folder.parent == out
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == pages
    again = archive.cli("get", doc_id, "-o", str(out), check=False)
    assert again.returncode == 1 and "exists" in again.stderr


def test_open_hands_the_copy_to_xdg_open(archive: Archive, tmp_path: Path) -> None:
    doc = archive.drop("letter.txt", b"dear reader\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    seen = tmp_path / "opened"
    opener = bin_dir / "xdg-open"
    opener.write_text(f"#!/bin/sh\nprintf '%s' \"$1\" > {seen}.tmp && mv {seen}.tmp {seen}\n")
    opener.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "XDG_CACHE_HOME": str(tmp_path / "cache")}
    result = json.loads(archive.cli("open", doc, "--json", env=env).stdout)
    wait_for(seen.exists, 10, "xdg-open to run")
    assert seen.read_text() == result["path"]
    assert Path(result["path"]).read_bytes() == b"dear reader\n"
    assert Path(result["path"]).is_relative_to(tmp_path / "cache")

    bare = {"PATH": str(tmp_path / "nothing-here"), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    missing = archive.cli("open", doc, env=bare, check=False)
    assert missing.returncode == 2 and "no xdg-open" in missing.stderr


# --- alfrd tag / alfrd set ----------------------------------------------------------------------
def test_tag_and_set_are_recorded_as_the_users(archive: Archive) -> None:
    doc = archive.drop("invoice.txt", b"invoice from the water works\n")
    # What a rule run would have left: a tag of its own.
    query(archive.db_url, "UPDATE documents SET tags = tags || ARRAY['bills'], rule_tags = "
          "ARRAY['bills'] WHERE id = %s RETURNING id", (doc,))
    tagged = archive.cli_json("tag", doc, "+water", "-bills", "+keep")
    assert tagged["tags"] == ["water", "keep"]
    assert tagged["user_removed_tags"] == ["bills"] and tagged["rule_tags"] == []
    assert "tags" in tagged["user_fields"]
    again = archive.cli_json("tag", doc, "+bills", "-keep")
    assert again["tags"] == ["water", "bills"] and again["user_removed_tags"] == ["keep"]

    edited = archive.cli_json("set", doc, "--type", "Invoice", "--correspondent",
                              "Water Works", "--date", "2024-03-05", "--title", "")
    assert edited["document_type"] == "Invoice" and edited["document_date"] == "2024-03-05"
    assert set(edited["user_fields"]) == {"tags", "document_type", "correspondent",
                                          "document_date", "title"}
    assert edited["title"] is None
    cleared = archive.cli_json("set", doc, "--date", "none")
    assert cleared["document_date"] is None and cleared["document_type"] == "Invoice"

    # What an automatic run does: write only the fields the user has not set.
    query(archive.db_url, "UPDATE documents SET document_type = 'Letter', "
          "correspondent = 'Somebody' WHERE id = %s AND NOT ('document_type' = ANY(user_fields))"
          " RETURNING id", (doc,))
    shown = archive.cli_json("show", doc)
    assert shown["document_type"] == "Invoice" and shown["correspondent"] == "Water Works"
    assert "document_type" in shown["user_fields"] and shown["deleted_at"] is None
    text = archive.cli("show", doc).stdout
    assert "Invoice  (set by hand)" in text and "tags taken off: keep" in text


def test_bad_arguments_are_one_line_and_exit_64(archive: Archive,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # Refused before the database is asked, so in this process.
    for args, expected in ((("set", "abc", "--date", "2024-13-01"), "2024-13-01"),
                           (("set", "abc"), "at least one of"),
                           (("tag", "abc", "water"), "'water'"),
                           (("tag", "abc"), "at least one"),
                           (("get",), "name a document id"),
                           (("get", "abc", "--stdout", "--json"), "take one"),
                           (("get", "abc", "--stdout", "-o", "x"), "not allowed with")):
        try:
            code = main([*args, "--config", str(archive.config)])
        except SystemExit as exc:
            code = int(exc.code or 0)
        err = capsys.readouterr().err
        assert code == 64, (args, err)
        assert expected in err and len(err.strip().splitlines()) == 1, err
    missing = archive.cli("tag", "abcdef12", "+x", check=False)
    assert missing.returncode == 1 and "no document matches" in missing.stderr


# --- the trash ----------------------------------------------------------------------------------
def test_delete_restore_and_a_new_drop_of_trashed_content(archive: Archive,
                                                          tmp_path: Path) -> None:
    data = b"a receipt for a garden chair\n"
    doc = archive.drop("receipt.txt", data)
    other = archive.drop("note.txt", b"a note to keep in the trash for a while\n")
    archive.cli("tag", doc, "+garden")
    deleted = archive.cli_json("delete", doc, other)
    assert [d["state"] for d in deleted] == ["in the trash", "in the trash"]
    assert archive.cli_json("delete", doc)[0]["state"] == "already in the trash"
    row = archive.row(doc)
    assert row is not None and row["deleted_at"] is not None
    assert (archive.store / row["stored_path"]).exists()  # kept while in the trash
    refused = archive.cli("get", doc, "-o", str(tmp_path), check=False)
    assert refused.returncode == 1 and "in the trash" in refused.stderr
    assert "restore-deleted" in archive.cli("show", doc).stdout
    assert archive.cli_json("status")["documents"]["trashed"] == 2

    restored = archive.cli_json("restore-deleted", other)
    assert restored[0]["state"] == "restored"
    row_other = archive.row(other)
    assert row_other is not None and row_other["deleted_at"] is None

    # The same content dropped again: the user wants it, so it is back, as this arrival.
    (archive.inbox / "chair").mkdir()
    again = archive.drop("chair/receipt-again.txt", data)
    assert again == doc
    row = archive.row(doc)
    assert row is not None and row["deleted_at"] is None
    assert row["original_name"] == "receipt-again.txt" and row["tags"] == ["chair"]
    assert row["user_fields"] == [] and row["user_removed_tags"] == []
    outcomes = query(archive.db_url, "SELECT outcome FROM document_arrivals WHERE "
                     "document_id = %s ORDER BY arrived_at", (doc,))
    assert [o["outcome"] for o in outcomes] == ["ingested", "ingested"]


def test_prune_empties_the_trash_after_keep_days(archive: Archive) -> None:
    old = archive.drop("old.txt", b"deleted long ago\n")
    recent = archive.drop("recent.txt", b"deleted yesterday\n")
    old_row, recent_row = archive.row(old), archive.row(recent)
    assert old_row is not None and recent_row is not None
    archive.cli("delete", old, recent)
    query(archive.db_url, "UPDATE documents SET deleted_at = now() - interval '31 days' "
          "WHERE id = %s RETURNING id", (old,))
    query(archive.db_url, "UPDATE documents SET deleted_at = now() - interval '1 day' "
          "WHERE id = %s RETURNING id", (recent,))
    # Stored before it was deleted, as every file of a trashed row is.
    month_ago = time.time() - 32 * 86400
    os.utime(archive.store / old_row["stored_path"], (month_ago, month_ago))

    # Content whose row is in the trash, arriving again just while prune runs: the worker
    # found the file in place (and marked it) and its row is not committed yet. Prune must
    # leave that file, or the new row would point at nothing.
    arriving_data = b"deleted long ago, and dropped again just now\n"
    arriving = archive.drop("arriving.txt", arriving_data)
    arriving_row = archive.row(arriving)
    assert arriving_row is not None
    archive.cli("delete", arriving)
    query(archive.db_url, "UPDATE documents SET deleted_at = now() - interval '31 days' "
          "WHERE id = %s RETURNING id", (arriving,))
    arriving_file = archive.store / arriving_row["stored_path"]
    os.utime(arriving_file, (month_ago, month_ago))
    again = archive.tmp / "again.txt"
    again.write_bytes(arriving_data)
    Store(archive.store, fsync=False).put_file(again, limit=1 << 20)  # what a worker does

    # A failed document in the trash: its file and note in the failed folder go with it.
    (archive.inbox / "broken.pdf").write_bytes(b"%PDF-1.4\nnot really a pdf\n")
    failed = wait_for(lambda: query(archive.db_url, "SELECT id, stored_path FROM documents "
                                    "WHERE original_name = 'broken.pdf' AND status = 'failed'"),
                      30, "broken.pdf failed", alive=archive.daemon.assert_alive)[0]
    failed_file = archive.tmp / "var" / failed["stored_path"]
    assert failed_file.exists() and Path(f"{failed_file}.error").exists()
    archive.cli("delete", str(failed["id"]))
    query(archive.db_url, "UPDATE documents SET deleted_at = now() - interval '31 days' "
          "WHERE id = %s RETURNING id", (failed["id"],))

    result = json.loads(archive.cli("jobs", "run", "prune", "--json").stdout)
    assert archive.row(str(failed["id"])) is None
    assert not failed_file.exists() and not Path(f"{failed_file}.error").exists()
    assert archive.row(old) is None
    assert not (archive.store / old_row["stored_path"]).exists()
    assert archive.row(recent) is not None
    assert (archive.store / recent_row["stored_path"]).exists()
    assert archive.row(arriving) is None and arriving_file.read_bytes() == arriving_data
    details = json.dumps(result)
    assert '"trash_documents_purged": 3' in details and '"trash_files_removed": 2' in details
    assert '"trash_files_arriving": 1' in details
    arriving_file.unlink()  # the row that would have come; without it, an orphan for check

    # Neither the purged row nor the trashed one is a problem for `alfrd check`.
    wait_for(lambda: not inbox_files(archive.inbox) and not claimed_files(archive.inbox), 30,
             "the inbox to drain", alive=archive.daemon.assert_alive)
    check = archive.cli("check", "--json", "--quick", "--grace", "0", check=False)
    report = json.loads(check.stdout)
    problems = {k: v["count"] for k, v in report["problems"].items() if v["count"]}
    assert check.returncode == 0 and not problems, problems
