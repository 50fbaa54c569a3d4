"""Backups on a real PostgreSQL: the round trip, verification, failures, retention, roles."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from alfrd_daemon.db import pgtools
from alfrd_daemon.db.search import search
from alfrd_daemon.jobs.backup import ARCHIVE_RE, list_backups
from tests.helpers import query, run_cli, write_config

pytestmark = pytest.mark.timeout(60)

TEXTS = {
    "invoice-plumber.txt": "Invoice from the plumber: 120 EUR for fixing the kitchen pipes.",
    "insurance.txt": "Car insurance renewal, the premium rises to 540 EUR per year.",
    "letter.txt": "Dear tenant, the plumber visits on Tuesday to inspect the boiler.",
    "recipe.txt": "Grandmother's recipe: apples, cinnamon, butter and a pinch of salt.",
    "tax.txt": "Tax assessment 2024: refund of 312 EUR, payable within four weeks.",
}
SEARCHES = ["plumber", "EUR", "insurance premium", "apples", "tax refund", "nothing-matches"]


def insert_documents(db_url: str, texts: dict[str, str]) -> None:
    with psycopg.connect(db_url) as conn:
        for name, text in texts.items():
            digest = hashlib.sha256(text.encode()).hexdigest()
            conn.execute(
                "INSERT INTO documents (sha256, original_name, source_path, status, "
                "extracted_text, stored_path, tags) VALUES (%s, %s, %s, 'extracted', %s, %s, "
                "%s)", (digest, name, name, text, f"{digest[:2]}/{digest[2:4]}/{digest}",
                        ["bills"] if "EUR" in text else []))
            conn.execute("INSERT INTO document_arrivals (document_id, claim_key, source_path, "
                         "original_name, instance, outcome) SELECT id, %s, %s, %s, 't', "
                         "'ingested' FROM documents WHERE sha256 = %s",
                         (digest, name, name, digest))


def search_results(db_url: str) -> dict[str, list[tuple[str, str]]]:
    out = {}
    with psycopg.connect(db_url) as conn:
        for words in SEARCHES:
            rows = search(conn, words, config="english", limit=20).rows
            out[words] = [(str(r["id"]), r["original_name"]) for r in rows]
    return out


def backup_files(directory: Path) -> list[str]:
    return sorted(os.listdir(directory)) if directory.exists() else []


def test_backup_restore_round_trip(tmp_path: Path, db_url: str, empty_db_url: str) -> None:
    insert_documents(db_url, TEXTS)
    config = write_config(tmp_path, db_url)
    before = search_results(db_url)
    assert before["plumber"] and before["EUR"] and not before["nothing-matches"]

    out = run_cli(config, "backup")
    assert "backup: succeeded" in out.stdout
    backups_dir = tmp_path / "var" / "backups"
    [backup] = list_backups(backups_dir)
    assert stat.S_IMODE(backups_dir.stat().st_mode) == 0o700
    for name in backup_files(backups_dir):
        assert stat.S_IMODE((backups_dir / name).stat().st_mode) == 0o600, name
    assert not [n for n in backup_files(backups_dir) if n.startswith(".")]

    manifest = json.loads(backup.sidecar(".manifest.json").read_text())
    assert manifest["tables"]["documents"] == len(TEXTS)
    assert manifest["tables"]["document_arrivals"] == len(TEXTS)
    assert manifest["searches"] and all(s["matches"] > 0 for s in manifest["searches"])
    with psycopg.connect(db_url) as conn:
        server_major = conn.info.server_version // 10000
    # The oldest pg_dump that can dump this server: an archive older pg_restores can read.
    assert manifest["pg_dump"]["major"] == server_major
    listed = backup.sidecar(".content.tsv").read_text().splitlines()
    assert sorted(line.split("\t")[0] for line in listed) == sorted(
        hashlib.sha256(t.encode()).hexdigest() for t in TEXTS.values())
    assert manifest["roles"]["status"] in ("dumped", "dumped without role passwords")

    out = run_cli(config, "restore", "latest", "--to", empty_db_url)
    assert "verified against the manifest" in out.stdout
    assert f"{len(TEXTS)} stored files referenced, {len(TEXTS)} missing" in out.stdout
    restored = query(empty_db_url, "SELECT count(*) AS n FROM documents")[0]["n"]
    assert restored == len(TEXTS)
    assert query(empty_db_url, "SELECT count(*) AS n FROM document_arrivals")[0]["n"] == len(
        TEXTS)
    assert search_results(empty_db_url) == before
    # The restored database is usable by the daemon as is: migrations are recorded.
    assert query(empty_db_url, "SELECT count(*) AS n FROM schema_migrations")[0]["n"] == (
        query(db_url, "SELECT count(*) AS n FROM schema_migrations")[0]["n"])


def test_restore_refuses_a_database_that_is_not_empty(tmp_path: Path, db_url: str) -> None:
    insert_documents(db_url, TEXTS)
    config = write_config(tmp_path, db_url)
    run_cli(config, "backup")
    out = run_cli(config, "restore", "latest", "--to", db_url, check=False)
    assert out.returncode == 64
    assert "is not empty" in out.stderr and "documents" in out.stderr
    assert query(db_url, "SELECT count(*) AS n FROM documents")[0]["n"] == len(TEXTS)


def test_restore_refuses_an_older_server_than_the_backups(tmp_path: Path, db_url: str,
                                                          empty_db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    run_cli(config, "backup")
    [backup] = list_backups(tmp_path / "var" / "backups")
    manifest_path = backup.sidecar(".manifest.json")
    manifest = json.loads(manifest_path.read_text())
    manifest["server_major"] = 99  # as if taken from a newer PostgreSQL
    manifest_path.write_text(json.dumps(manifest))
    out = run_cli(config, "restore", backup.name, "--to", empty_db_url, check=False)
    assert out.returncode == 64 and "PostgreSQL 99" in out.stderr, out.stderr
    assert query(empty_db_url, "SELECT to_regclass('documents') AS t")[0]["t"] is None


def test_restore_test_job_restores_into_a_scratch_database_and_drops_it(
        tmp_path: Path, db_url: str) -> None:
    insert_documents(db_url, TEXTS)
    config = write_config(tmp_path, db_url)
    out = run_cli(config, "jobs", "run", "restore-test", check=False)
    assert out.returncode == 1 and "no backup" in out.stderr  # nothing to test yet
    run_cli(config, "backup")
    out = run_cli(config, "jobs", "run", "restore-test", "--json")
    result = json.loads(out.stdout)
    assert result["outcome"] == "succeeded", result
    assert result["details"]["verified"] is True
    assert result["details"]["tables"]["documents"] == len(TEXTS)
    scratch = result["details"]["scratch_database"]
    assert not query(db_url, "SELECT 1 FROM pg_database WHERE datname = %s", (scratch,))


def fake_bin_dir(tmp_path: Path, server_major: int, pg_dump_body: str) -> Path:
    """A bin dir whose pg_dump misbehaves; the other tools are the real ones."""
    real = pgtools.choose("pg_dump", minimum=server_major, prefer=server_major)
    fake = tmp_path / "fakebin"
    fake.mkdir()
    script = fake / "pg_dump"
    script.write_text(f"""#!/bin/sh
if [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) {real.version}"; exit 0; fi
REAL={real.tool("pg_dump")}
{pg_dump_body}
""")
    script.chmod(0o755)
    for tool in ("pg_restore", "pg_dumpall"):
        (fake / tool).symlink_to(real.tool(tool))
    return fake


def server_major(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.info.server_version // 10000


def assert_failed_without_a_good_file(config: Path, tmp_path: Path, db_url: str,
                                      message: str) -> None:
    out = run_cli(config, "backup", check=False)
    assert out.returncode == 1, out
    runs = query(db_url, "SELECT outcome, details FROM job_runs WHERE job = 'backup'")
    assert [r["outcome"] for r in runs] == ["failed"]
    assert re.search(message, runs[0]["details"]["error"]), runs[0]["details"]
    files = backup_files(tmp_path / "var" / "backups")
    assert not [f for f in files if ARCHIVE_RE.match(f)], files
    assert not [f for f in files if f.startswith(".")], files  # temporaries removed too


def test_failing_pg_dump_records_a_failed_run_and_leaves_no_file(
        tmp_path: Path, db_url: str) -> None:
    # Writes half an archive, then dies as pg_dump does when the server goes away.
    fake = fake_bin_dir(tmp_path, server_major(db_url), """
for a in "$@"; do case "$a" in --file=*) OUT="${a#--file=}";; esac; done
"$REAL" "$@" || exit $?
head -c 200 "$OUT" > "$OUT.part" && mv "$OUT.part" "$OUT"
echo "pg_dump: error: connection to server lost" >&2
exit 1
""")
    config = write_config(tmp_path, db_url, jobs={"backup": {"pg_bin_dir": str(fake)}})
    assert_failed_without_a_good_file(config, tmp_path, db_url, "pg_dump exited 1.*lost")


def test_truncated_archive_that_pg_dump_reports_as_fine_is_caught(
        tmp_path: Path, db_url: str) -> None:
    insert_documents(db_url, TEXTS)
    fake = fake_bin_dir(tmp_path, server_major(db_url), """
for a in "$@"; do case "$a" in --file=*) OUT="${a#--file=}";; esac; done
"$REAL" "$@" || exit $?
SIZE=$(wc -c < "$OUT")
head -c $((SIZE / 2)) "$OUT" > "$OUT.part" && cat "$OUT.part" > "$OUT" && rm "$OUT.part"
exit 0
""")
    config = write_config(tmp_path, db_url, jobs={"backup": {"pg_bin_dir": str(fake)}})
    assert_failed_without_a_good_file(config, tmp_path, db_url, "does not read back")


def test_missing_binaries_name_the_version_needed(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url,
                          jobs={"backup": {"pg_bin_dir": str(tmp_path / "nowhere")}})
    major = server_major(db_url)
    assert_failed_without_a_good_file(config, tmp_path, db_url,
                                      f"pg_dump {major} or newer is needed")


def test_server_down_fails_cleanly(tmp_path: Path) -> None:
    config = write_config(tmp_path, "postgresql://postgres@127.0.0.1:9/alfrd",
                          database={"connect_timeout": 2})
    out = run_cli(config, "backup", check=False)
    assert out.returncode == 2 and "database unavailable" in out.stderr
    assert not [f for f in backup_files(tmp_path / "var" / "backups") if ARCHIVE_RE.match(f)]


def test_backup_applies_retention(tmp_path: Path, db_url: str) -> None:
    """Keep 2 daily + 1 weekly: today's new backup, the newest of yesterday, and the newest of
    an older week; older ones and same-day older ones go, with their sidecars; other files
    stay."""
    backups_dir = tmp_path / "var" / "backups"
    backups_dir.mkdir(parents=True)
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    old = {}
    for label, when in (("yesterday_early", midnight - timedelta(hours=23)),
                        ("yesterday_late", midnight - timedelta(hours=1)),
                        # 8 days back is in an older ISO week than yesterday, or the same
                        # week as 9 days back; either way it is its week's newest.
                        ("eight_days", midnight - timedelta(days=8, hours=-12)),
                        ("nine_days", midnight - timedelta(days=9, hours=-12)),
                        ("month_ago", midnight - timedelta(days=30))):
        base = f"alfrd-{when:%Y%m%dT%H%M%SZ}"
        for suffix in (".dump", ".manifest.json", ".content.tsv"):
            (backups_dir / f"{base}{suffix}").write_text("x")
        old[label] = base
    (backups_dir / "notes.txt").write_text("not ours")
    config = write_config(tmp_path, db_url, jobs={
        "timezone": "UTC", "backup": {"keep_daily": 2, "keep_weekly": 1}})
    result = json.loads(run_cli(config, "backup", "--json").stdout)
    new = Path(result["details"]["file"]).name.removesuffix(".dump")
    assert result["details"]["retention"]["kept"] == {
        f"{new}.dump": "daily 1", f"{old['yesterday_late']}.dump": "daily 2",
        f"{old['eight_days']}.dump": "weekly 1"}
    assert sorted(result["details"]["retention"]["deleted"]) == sorted(
        f"{old[k]}.dump" for k in ("month_ago", "nine_days", "yesterday_early"))
    assert {b.base for b in list_backups(backups_dir)} == {
        new, old["yesterday_late"], old["eight_days"]}
    files = backup_files(backups_dir)
    assert "notes.txt" in files
    for gone in ("month_ago", "nine_days", "yesterday_early"):
        assert not [f for f in files if f.startswith(old[gone])], files
    assert f"{old['eight_days']}.manifest.json" in files


def test_roles_without_the_right_to_read_passwords(tmp_path: Path, db_url: str,
                                                   pg_admin: str) -> None:
    """A database owner who is no superuser still gets a backup; the roles are dumped without
    passwords and the manifest says why."""
    role = f"alfrd_owner_{secrets.token_hex(3)}"
    with psycopg.connect(pg_admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                sql.Identifier(conn.info.dbname), sql.Identifier(role)))
            conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(role)))
            for (name,) in conn.execute("SELECT tablename FROM pg_tables "
                                        "WHERE schemaname = 'public'").fetchall():
                conn.execute(sql.SQL("ALTER TABLE {} OWNER TO {}").format(
                    sql.Identifier(name), sql.Identifier(role)))
        as_owner = make_conninfo(**{**conninfo_to_dict(db_url), "user": role})
        insert_documents(as_owner, TEXTS)
        config = write_config(tmp_path, as_owner)
        result = json.loads(run_cli(config, "backup", "--json").stdout)
        assert result["outcome"] == "succeeded", result
        roles = result["details"]["roles"]
        assert roles["status"] == "dumped without role passwords", roles
        assert "permission denied" in roles["reason"]
        [backup] = list_backups(tmp_path / "var" / "backups")
        assert json.loads(backup.sidecar(".manifest.json").read_text())["roles"] == roles
    finally:
        with psycopg.connect(pg_admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(conninfo_to_dict(db_url)["dbname"])))
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
