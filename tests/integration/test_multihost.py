"""Several hosts on one database: each store has an identity, rows record the store that holds
their file, and `alfrd check` / `alfrd show` on one host understand the other hosts' rows.

Two state dirs on one machine stand for two hosts: what tells the stores apart is their id file,
not the hostname."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import psycopg
import pytest

from alfrd_daemon.db.migrations import migrate, migrations
from alfrd_daemon.ingest.store import IDENTITY_NAME, Store
from tests.helpers import DaemonProcess, inbox_files, query, run_cli, wait_for
from tests.integration.faultkit import fault_config, sha

pytestmark = pytest.mark.timeout(120)


def check_json(config: Path, *args: str) -> tuple[int, dict[str, Any]]:
    result = run_cli(config, "check", "--json", *args, check=False)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    return result.returncode, json.loads(result.stdout)


def problems(report: dict[str, Any]) -> dict[str, int]:
    return {k: v["count"] for k, v in report["problems"].items() if v["count"]}


def show_json(config: Path, doc_id: str) -> dict[str, Any]:
    return json.loads(run_cli(config, "show", str(doc_id), "--json").stdout)


def host_config(tmp: Path, db_url: str, **overrides: Any) -> Path:
    return fault_config(tmp, db_url, workers={"count": 2}, **overrides)


def wait_processed(db_url: str, inboxes: list[Path], arrivals: int,
                   daemons: list[DaemonProcess]) -> None:
    def alive() -> None:
        for d in daemons:
            d.assert_alive()

    wait_for(lambda: not any(inbox_files(i) for i in inboxes) and query(
        db_url, "SELECT count(*) AS n FROM document_arrivals")[0]["n"] >= arrivals,
        60, f"{arrivals} arrivals and empty inboxes", alive=alive, interval=0.2)
    # Committed rows leave the claim area last.
    wait_for(lambda: not any(p.is_file() for i in inboxes
                             for p in (i / ".alfrd" / "claimed").rglob("*")
                             if p.suffix != ".lock"),
             30, "empty claim areas", alive=alive, interval=0.2)


def rows_by_name(db_url: str) -> dict[str, dict[str, Any]]:
    return {r["original_name"]: r for r in query(
        db_url, "SELECT id, original_name, status, store_id::text AS store_id FROM documents")}


def test_two_hosts_with_their_own_stores_each_check_only_their_own_rows(
        tmp_path: Path, db_url: str) -> None:
    config_a, config_b = (host_config(tmp_path / h, db_url) for h in ("a", "b"))
    inbox_a, inbox_b = tmp_path / "a" / "inbox", tmp_path / "b" / "inbox"
    store_a, store_b = tmp_path / "a" / "var" / "store", tmp_path / "b" / "var" / "store"
    with DaemonProcess(config_a, tmp_path / "a.log") as a, \
            DaemonProcess(config_b, tmp_path / "b.log") as b:
        for inbox, host in ((inbox_a, "a"), (inbox_b, "b")):
            for i in (1, 2):
                (inbox / f"{host}{i}.txt").write_bytes(f"document {i} of host {host}\n".encode())
            (inbox / f"{host}-empty.txt").write_bytes(b"")  # a failure, in this host's failed/
            (inbox / "shared.txt").write_bytes(b"the same content dropped on both hosts\n")
        wait_processed(db_url, [inbox_a, inbox_b], 8, [a, b])

    id_a = (store_a / IDENTITY_NAME).read_text().strip()
    id_b = (store_b / IDENTITY_NAME).read_text().strip()
    assert id_a != id_b
    hostname = socket.gethostname()
    stores = {r["id"]: r for r in query(
        db_url, "SELECT id::text AS id, hostname, path FROM stores")}
    assert stores == {id_a: {"id": id_a, "hostname": hostname, "path": str(store_a.resolve())},
                      id_b: {"id": id_b, "hostname": hostname, "path": str(store_b.resolve())}}
    rows = rows_by_name(db_url)
    assert {n: r["store_id"] for n, r in rows.items() if n != "shared.txt"} == {
        "a1.txt": id_a, "a2.txt": id_a, "a-empty.txt": id_a,
        "b1.txt": id_b, "b2.txt": id_b, "b-empty.txt": id_b}
    assert rows["a-empty.txt"]["status"] == "failed"
    # The shared content is one document, held by the store that committed it first; the
    # other store keeps the copy it stored before it learnt that.
    winner = rows["shared.txt"]["store_id"]
    assert winner in (id_a, id_b)

    for config, mine, other, other_store in ((config_a, id_a, id_b, store_b),
                                              (config_b, id_b, id_a, store_a)):
        held_elsewhere = sum(r["store_id"] == other for r in rows.values())
        code, report = check_json(config, "--grace", "0")
        assert code == 0 and report["ok"] is True, report
        assert not problems(report), problems(report)
        assert report["store_id"] == mine
        info = report["info"]
        assert info["held_by_other_stores"]["count"] == held_elsewhere
        assert info["held_by_other_stores"]["examples"] == [
            {"store_id": other, "hostname": hostname, "path": str(other_store.resolve()),
             "rows": held_elsewhere}]
        assert info["copies_held_elsewhere"]["count"] == (0 if winner == mine else 1)
        assert report["checked"]["store_files"] == 3  # two of its own and the shared one
        text = run_cli(config, "check").stdout
        assert (f"held by store {other} on host {hostname} (path {other_store.resolve()}): "
                f"{held_elsewhere} rows") in text, text
        assert "ok: nothing half-finished" in text

    # `alfrd show` on host a names the store holding b's document, and says it is not a's.
    theirs = show_json(config_a, rows["b1.txt"]["id"])["store"]
    assert theirs == {"id": id_b, "hostname": hostname, "path": str(store_b.resolve()),
                      "recorded": True, "this_host": False}
    assert show_json(config_b, rows["b1.txt"]["id"])["store"]["this_host"] is True
    failed_b = show_json(config_a, rows["b-empty.txt"]["id"])
    assert failed_b["stored_path"] == "failed/b-empty.txt"
    assert failed_b["store"]["id"] == id_b and failed_b["store"]["this_host"] is False
    text = run_cli(config_a, "show", str(rows["b1.txt"]["id"])).stdout
    assert f"store: {id_b} on host {hostname} (path {store_b.resolve()}); another host's " \
           "store" in text, text

    status = json.loads(run_cli(config_a, "status", "--json", check=False).stdout)
    assert {s["id"]: s["this_host"] for s in status["stores"]} == {id_a: True, id_b: False}
    assert sum(s["documents"] for s in status["stores"]) == len(rows)


def test_daemons_sharing_one_store_see_every_row_as_local(tmp_path: Path, db_url: str) -> None:
    """The recommended layout for several hosts: one store (and failed folder) for all."""
    shared_state = tmp_path / "a" / "var"
    config_a = host_config(tmp_path / "a", db_url)
    config_b = host_config(tmp_path / "b", db_url, state_dir=str(shared_state))
    inbox_a, inbox_b = tmp_path / "a" / "inbox", tmp_path / "b" / "inbox"
    a = DaemonProcess(config_a, tmp_path / "a.log")
    b = DaemonProcess(config_b, tmp_path / "b.log")
    try:
        a.start(), b.start()  # together: both find a fresh store without an id
        a.wait_started(), b.wait_started()
        for inbox, host in ((inbox_a, "a"), (inbox_b, "b")):
            for i in (1, 2):
                (inbox / f"{host}{i}.txt").write_bytes(f"document {i} from {host}\n".encode())
            (inbox / f"{host}-empty.txt").write_bytes(b"")
        wait_processed(db_url, [inbox_a, inbox_b], 6, [a, b])
    finally:
        a.stop(), b.stop()

    store_id = (shared_state / "store" / IDENTITY_NAME).read_text().strip()
    assert [r["id"] for r in query(db_url, "SELECT id::text AS id FROM stores")] == [store_id]
    assert {r["store_id"] for r in rows_by_name(db_url).values()} == {store_id}
    instances = {r["instance"] for r in query(db_url, "SELECT instance FROM document_arrivals")}
    assert len(instances) == 2
    for config in (config_a, config_b):
        code, report = check_json(config, "--grace", "0")
        assert code == 0 and report["ok"] and not problems(report), report
        assert report["store_id"] == store_id
        assert report["info"]["held_by_other_stores"]["count"] == 0
        assert report["checked"]["references"] == 6


# --- upgrading: rows from before stores had an identity ----------------------------------------
def migrate_before_store_ids(url: str) -> None:
    """The schema as releases before migration 004 left it."""
    with psycopg.connect(url) as conn, conn.transaction():
        conn.execute("CREATE TABLE schema_migrations (version integer PRIMARY KEY, "
                     "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        for version, name, script in migrations():
            if version < 4:
                conn.execute(script.encode())
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                             (version, name))


def insert_old_row(url: str, name: str, data: bytes) -> str:
    digest = sha(data)
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "INSERT INTO documents (sha256, original_name, source_path, size_bytes, "
            "stored_path, status) VALUES (%s, %s, %s, %s, %s, 'extracted') RETURNING id::text",
            (digest, name, name, len(data), Store.relpath(digest))).fetchone()
    assert row is not None
    return row[0]


def test_rows_from_before_store_ids_belong_to_the_store_holding_their_file(
        tmp_path: Path, empty_db_url: str) -> None:
    migrate_before_store_ids(empty_db_url)
    here = insert_old_row(empty_db_url, "here.txt", b"a file this store holds\n")
    gone = insert_old_row(empty_db_url, "gone.txt", b"a file no store here holds\n")
    with psycopg.connect(empty_db_url) as conn:
        assert migrate(conn)[0] == "004_store_identity"
    assert {r["store_id"] for r in query(empty_db_url, "SELECT store_id FROM documents")} == \
        {None}

    config = host_config(tmp_path, empty_db_url)
    store = Store(tmp_path / "var" / "store", fsync=False)
    store.open()  # what the daemon does at start
    with psycopg.connect(empty_db_url, row_factory=psycopg.rows.dict_row) as conn, \
            conn.transaction():
        store.register(conn.cursor())
    path = store.path(sha(b"a file this store holds\n"))
    path.parent.mkdir(parents=True)
    path.write_bytes(b"a file this store holds\n")

    # The only store: an old row whose file it lacks is missing, as before.
    code, report = check_json(config)
    assert code == 1 and problems(report) == {"rows_without_file": 1}, report
    assert report["problems"]["rows_without_file"]["examples"][0]["document_id"] == gone
    assert report["info"]["rows_without_store_id"]["examples"] == [{"document_id": here}]

    # Once another store is registered, that row may be the other host's: not "missing".
    with psycopg.connect(empty_db_url) as conn:
        conn.execute("INSERT INTO stores (id, hostname, path) VALUES "
                     "(gen_random_uuid(), 'other-host', '/srv/alfrd/store')")
    code, report = check_json(config, "--repair")
    assert code == 1 and problems(report) == {"rows_of_unrecorded_store": 1}, report
    assert report["problems"]["rows_of_unrecorded_store"]["repaired"] == 0
    assert report["info"]["rows_without_store_id"]["repaired"] == 1
    rows = {r["id"]: r for r in query(
        empty_db_url, "SELECT id::text AS id, store_id::text AS store_id, error FROM documents")}
    assert rows[here]["store_id"] == store.id  # recorded as this store's
    assert rows[gone] == {"id": gone, "store_id": None, "error": None}  # left alone
    assert show_json(config, here)["store"]["this_host"] is True
    old = show_json(config, gone)["store"]
    assert old["recorded"] is False and old["this_host"] is False
    assert "not recorded" in run_cli(config, "show", gone).stdout


def test_a_replaced_identity_file_is_reported_at_start(tmp_path: Path, db_url: str) -> None:
    config = host_config(tmp_path, db_url)
    ident = tmp_path / "var" / "store" / IDENTITY_NAME
    with DaemonProcess(config, tmp_path / "first.log"):
        pass
    old_id = ident.read_text().strip()
    ident.unlink()  # lost, e.g. a store restored from a copy that skipped dotfiles
    with DaemonProcess(config, tmp_path / "second.log") as daemon:
        wait_for(lambda: f"registered before with id {old_id}" in daemon.log(), 10,
                 "a warning naming the old id", alive=daemon.assert_alive)
    assert ident.read_text().strip() != old_id


def test_a_corrupt_identity_file_is_one_line_never_a_new_id(tmp_path: Path,
                                                             db_url: str) -> None:
    config = host_config(tmp_path, db_url)
    ident = tmp_path / "var" / "store" / IDENTITY_NAME
    ident.parent.mkdir(parents=True)
    ident.write_text("not an id\n")
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    assert daemon.proc is not None
    try:
        assert daemon.proc.wait(60) == 1
    finally:
        daemon.kill()
    assert "Traceback" not in daemon.log()
    assert f"cannot start: {ident}: store identity file holds 'not an id', expected a UUID" \
        in daemon.log(), daemon.log()[-2000:]
    result = run_cli(config, "check", check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"alfrd check: cannot read the store's identity: {ident}: ")
    assert ident.read_text() == "not an id\n"  # never replaced by a fresh id
