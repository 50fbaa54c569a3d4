"""Restoring a backup into an empty database, and proving it worked.

After pg_restore the restored database is compared with the backup's manifest: the row count
of every table, and the matches of a few searches (count and ids), which exercises the
recomputed search vectors. A restore into a database that already holds tables is refused:
mixing an archive into existing data cannot be verified and may not be undone.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from alfrd_daemon.db import pgtools
from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.jobs.backup import (
    Backup,
    count_tables,
    file_sha256,
    find_backup,
    list_backups,
    search_fingerprint,
)
from alfrd_daemon.jobs.context import JobContext, JobFailed

Q = load_named_queries("jobs.sql")

log = logging.getLogger("alfrd.restore")


class RestoreRefused(JobFailed):
    """The target is not an empty database."""


class VerificationFailed(JobFailed):
    """The restore ran but the result differs from the manifest."""


def restore_backup(ctx: JobContext, backup: Backup, target: str, *,
                   keep_owners: bool = False, store_root: Path | None = None,
                   failed_root: Path | None = None) -> dict[str, Any]:
    """Restore `backup` into the empty database `target`, verify it; details as a dict."""
    manifest = backup.manifest()
    details: dict[str, Any] = {"archive": str(backup.path), "manifest": manifest is not None}
    timeout = ctx.settings.jobs.restore_test.timeout
    if manifest and manifest.get("archive_sha256"):
        ctx.progress("checking the archive", 1, 4)
        if file_sha256(backup.path) != manifest["archive_sha256"]:
            raise JobFailed(f"{backup.path} does not match the checksum in its manifest: the "
                            "file changed or is damaged")
    with ctx.connection(target) as conn:
        objects = conn.execute(Q["restore_user_objects"]).fetchall()
        target_major = conn.info.server_version // 10000
        target_db = conn.info.dbname
    if objects:
        names = ", ".join(f"{o['schema']}.{o['name']}" for o in objects)
        raise RestoreRefused(
            f"database {target_db!r} is not empty (it has {names}…): restore only into a new, "
            f"empty database, e.g. createdb {target_db}_restored")
    source_major = int((manifest or {}).get("server_major") or 0)
    if source_major > target_major:
        raise RestoreRefused(
            f"the backup comes from PostgreSQL {source_major} and {target_db!r} is on "
            f"PostgreSQL {target_major}: restore into a server of version {source_major} or "
            "newer (pg_restore does not downgrade)")
    dumped_by = int((manifest or {}).get("pg_dump", {}).get("major") or 0)
    tools = pgtools.choose(
        "pg_restore", minimum=max(dumped_by, 1), prefer=target_major,
        purpose=f" to read an archive written by pg_dump {dumped_by}" if dumped_by else "")
    details["pg_restore"] = tools.describe()
    dsn, env = pgtools.libpq_args(target)
    args = [tools.tool("pg_restore"), "--exit-on-error", "--single-transaction"]
    if not keep_owners:
        # Roles of the source server need not exist here; the restoring user owns everything.
        args += ["--no-owner", "--no-privileges"]
    if dsn:
        args.append(f"--dbname={dsn}")
    args.append(str(backup.path))
    ctx.progress("restoring", 2, 4)
    result = ctx.run_tool(args, env=env, timeout=timeout)
    details["restore_seconds"] = round(result.seconds, 3)
    if result.returncode != 0:
        hint = ""
        if tools.major > target_major:
            hint = (f" (this archive needs pg_restore {tools.major}, whose output a PostgreSQL "
                    f"{target_major} server may not accept: restore into a newer server)")
        raise JobFailed(f"pg_restore exited {result.returncode} (nothing was restored: it runs "
                        f"in one transaction){hint}: {result.stderr}")
    ctx.progress("verifying", 3, 4)
    with ctx.connection(target) as conn:
        details["tables"] = count_tables(conn)
        details["searches"] = [search_fingerprint(conn, s["lexeme"])
                               for s in (manifest or {}).get("searches", [])]
    if manifest:
        problems = compare_with_manifest(manifest, details["tables"], details["searches"])
        if problems:
            details["problems"] = problems
            raise VerificationFailed("the restored database differs from the backup: "
                                     + "; ".join(problems))
        details["verified"] = True
    else:
        details["verified"] = False
        details["warning"] = "no manifest beside the archive: counts were not compared"
    if store_root is not None:
        details["content_store"] = check_content_store(backup, store_root, failed_root)
    ctx.progress("done", 4, 4)
    return details


def compare_with_manifest(manifest: dict[str, Any], tables: dict[str, int],
                          searches: list[dict[str, Any]]) -> list[str]:
    problems = []
    for table, expected in manifest.get("tables", {}).items():
        got = tables.get(table)
        if got != expected:
            problems.append(f"{table}: {got} rows, the backup had {expected}")
    for want, found in zip(manifest.get("searches", []), searches, strict=False):
        if (want["matches"], want["ids_md5"]) != (found["matches"], found["ids_md5"]):
            problems.append(f"search {want['lexeme']!r}: {found['matches']} matches, the backup "
                            f"had {want['matches']} (or other documents)")
    return problems


def check_content_store(backup: Backup, store_root: Path,
                        failed_root: Path | None) -> dict[str, Any]:
    """Which stored files the restored rows refer to, and how many are missing here."""
    listing = backup.sidecar(".content.tsv")
    if not listing.exists():
        return {"checked": False, "reason": f"{listing.name} is missing"}
    needed = missing = 0
    examples: list[str] = []
    with open(listing, encoding="utf-8") as f:
        for line in f:
            sha, _, stored = line.rstrip("\n").partition("\t")
            needed += 1
            if stored.startswith("failed/") and failed_root is not None:
                path = failed_root / stored.removeprefix("failed/")
            else:
                path = store_root / stored
            if not path.exists():
                missing += 1
                if len(examples) < 5:
                    examples.append(f"{sha} {stored}")
    return {"checked": True, "needed": needed, "missing": missing, "missing_examples": examples,
            "store": str(store_root), "list": str(listing)}


# --- the restore-test job --------------------------------------------------------------------
def run_restore_test(ctx: JobContext) -> dict[str, Any]:
    """Restore the newest backup into a scratch database, verify, drop it."""
    directory = ctx.settings.backups_path
    if not list_backups(directory):
        raise JobFailed(f"no backup in {directory} to test; run `alfrd backup` first")
    backup = find_backup(directory, "latest")
    server = ctx.settings.jobs.restore_test.scratch_url or ctx.conninfo
    with ctx.connection(server) as conn:
        source_db = conn.info.dbname
    # A fixed name: the job's lock makes it ours alone, and a crashed run's copy is replaced.
    scratch = f"{source_db[:45]}_restore_test"
    scratch_url = make_conninfo("", **{**conninfo_to_dict(server), "dbname": scratch})
    ctx.details["backup"] = backup.name
    ctx.details["scratch_database"] = scratch
    _drop_database(ctx, server, scratch)
    _create_database(ctx, server, scratch)
    try:
        ctx.details.update(restore_backup(ctx, backup, scratch_url))
    finally:
        try:
            _drop_database(ctx, server, scratch)
        except Exception as exc:
            log.warning("could not drop the scratch database %s: %s", scratch, exc)
    return ctx.details


def _create_database(ctx: JobContext, server: str, name: str) -> None:
    try:
        with ctx.connection(server, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(
                sql.Identifier(name)))
    except Exception as exc:
        if "permission denied" in str(exc):
            raise JobFailed(f"cannot create the scratch database {name!r} ({exc}): grant "
                            "CREATEDB or set jobs.restore_test.scratch_url to a server where "
                            "this user may create databases") from exc
        raise


def _drop_database(ctx: JobContext, server: str, name: str) -> None:
    with ctx.connection(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
