"""Backups: a verified `pg_dump -Fc` archive with a manifest, roles and a content-store list.

A backup is only ever visible under its final name once it is complete and verified: every
file is written under a dot-name, fsynced, read back in full, and renamed; the archive is
renamed last, so a good-named archive always has its manifest beside it. Measured:
`pg_restore --list` exits 0 on corrupted and half-truncated archives (it reads only the table
of contents), so verification is a full read (`pg_restore -f /dev/null`); a scheduled test
restore (restore.py) proves more.

The manifest's counts and sample searches are taken in the very snapshot pg_dump dumps
(`pg_export_snapshot` + `pg_dump --snapshot`), so a restore can check it got exactly that.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import IsolationLevel, sql
from psycopg.rows import DictRow, dict_row

from alfrd_daemon.db import pgtools
from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.jobs.context import JobContext, JobFailed
from alfrd_daemon.jobs.retention import plan_retention

Q = load_named_queries("jobs.sql")

ARCHIVE_RE = re.compile(r"^alfrd-(\d{8}T\d{6}Z)(?:-(\d+))?\.dump$")
SIDECARS = (".manifest.json", ".content.tsv", ".globals.sql")
FILE_MODE = 0o600
DIR_MODE = 0o700
MANIFEST_FORMAT = 1
SAMPLE_DOCUMENTS = 50
SAMPLE_SEARCHES = 5
LOCK_WAIT_TIMEOUT_MS = 300_000  # pg_dump gives up rather than queue behind a long DDL lock


@dataclass(frozen=True)
class Backup:
    path: Path
    created: datetime

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def base(self) -> str:
        return self.path.name.removesuffix(".dump")

    def sidecar(self, suffix: str) -> Path:
        return self.path.with_name(self.base + suffix)

    def manifest(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.sidecar(".manifest.json").read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None


def list_backups(directory: Path) -> list[Backup]:
    """Complete backups (good-named archives), oldest first."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            m = ARCHIVE_RE.match(entry.name)
            if m and entry.is_file(follow_symlinks=False):
                created = datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
                found.append(Backup(Path(entry.path), created))
    return sorted(found, key=lambda b: (b.created, b.name))


def find_backup(directory: Path, spec: str) -> Backup:
    """'latest', an archive name in the backups folder, or a path."""
    backups = list_backups(directory)
    if spec == "latest":
        if not backups:
            raise JobFailed(f"no backups in {directory}")
        return backups[-1]
    path = Path(spec)
    if not path.exists() and (directory / spec).exists():
        path = directory / spec
    if not path.is_file():
        raise JobFailed(f"no backup archive at {spec} (nor in {directory})")
    m = ARCHIVE_RE.match(path.name)
    created = (datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) if m
               else datetime.fromtimestamp(path.stat().st_mtime, UTC))
    return Backup(path, created)


def ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path, DIR_MODE)


# --- the backup job ------------------------------------------------------------------------------
def run_backup(ctx: JobContext) -> dict[str, Any]:
    job = ctx.settings.jobs.backup
    directory: Path = ctx.settings.backups_path
    ensure_private_dir(directory)
    # We hold the job's lock: a temporary file here is a crashed run's leftover.
    removed = remove_leftovers(directory)
    if removed:
        ctx.details["removed_leftovers"] = removed
    base = _free_base(directory, datetime.now(UTC))
    final = {suffix: directory / f"{base}{suffix}" for suffix in (".dump", *SIDECARS)}
    temp = {suffix: directory / f".{base}{suffix}.tmp" for suffix in final}
    written: list[Path] = []
    try:
        manifest = _dump(ctx, job, temp, written)
        manifest["archive"] = final[".dump"].name
        _write_private(temp[".manifest.json"], json.dumps(manifest, indent=2).encode() + b"\n",
                       written)
        # Sidecars first, the archive last: a good-named archive is a complete backup.
        for suffix in (*SIDECARS, ".dump"):
            if temp[suffix] in written:
                os.rename(temp[suffix], final[suffix])
        pgtools.fsync_path(directory)
        written.clear()
    finally:
        for path in written:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    ctx.details.update(file=str(final[".dump"]), bytes=manifest["archive_bytes"],
                       tables=manifest["tables"])
    ctx.progress("applying retention", 5, 5)
    ctx.details["retention"] = apply_retention(directory, keep_daily=job.keep_daily,
                                               keep_weekly=job.keep_weekly,
                                               tz=ctx.settings.jobs.tz)
    return ctx.details


def _dump(ctx: JobContext, job: Any, temp: dict[str, Path],
          written: list[Path]) -> dict[str, Any]:
    dsn, env = pgtools.libpq_args(ctx.conninfo)
    with ctx.connection() as snap:
        snap.isolation_level = IsolationLevel.REPEATABLE_READ
        snap.read_only = True
        info = snap.execute(Q["backup_export_snapshot"]).fetchone()
        assert info is not None
        server_major = snap.info.server_version // 10000
        tools = pgtools.choose("pg_dump", minimum=server_major, prefer=server_major,
                               explicit=job.pg_bin_dir,
                               purpose=f" for the PostgreSQL {info['server_version']} server")
        ctx.details["pg_dump"] = tools.describe()
        ctx.progress("dumping", 1, 5)
        _create_private(temp[".dump"], written)
        dump = ctx.run_tool([
            tools.tool("pg_dump"), "--format=custom", f"--snapshot={info['snapshot']}",
            f"--lock-wait-timeout={LOCK_WAIT_TIMEOUT_MS}", f"--file={temp['.dump']}",
            f"--dbname={dsn}",
        ], env=env, timeout=job.timeout)
        ctx.details["dump_seconds"] = round(dump.seconds, 3)
        if dump.returncode != 0:
            raise JobFailed(f"pg_dump exited {dump.returncode}: {dump.stderr}")
        tables = count_tables(snap)
        searches = _search_fingerprints(snap)
        content_count, content_sha = _write_content_list(snap, temp[".content.tsv"], written)
        snap.rollback()
    pgtools.fsync_path(temp[".dump"])
    ctx.progress("verifying", 2, 5)
    archive_sha, archive_bytes, verify_seconds = verify_archive(ctx, tools, temp[".dump"],
                                                                env, job.timeout)
    ctx.details["verify_seconds"] = round(verify_seconds, 3)
    ctx.progress("dumping roles", 3, 5)
    roles = dump_roles(ctx, tools, dsn, env, info["database"], temp[".globals.sql"], written) \
        if job.roles else {"status": "skipped", "reason": "jobs.backup.roles is false"}
    ctx.details["roles"] = roles
    ctx.progress("writing the manifest", 4, 5)
    return {
        "format": MANIFEST_FORMAT,
        "created_at": datetime.now(UTC).isoformat(),
        "database": info["database"],
        "server_version": info["server_version"],
        "server_major": server_major,
        "pg_dump": tools.describe(),
        "archive_sha256": archive_sha,
        "archive_bytes": archive_bytes,
        "tables": tables,
        "searches": searches,
        "roles": roles,
        "content_store": {"file": temp[".content.tsv"].name.removeprefix(".").removesuffix(
            ".tmp"), "files": content_count, "sha256": content_sha},
    }


def verify_archive(ctx: JobContext, tools: pgtools.PgTools, archive: Path,
                   env: dict[str, str], timeout: float) -> tuple[str, int, float]:
    """Read the whole archive back (a TOC-only read misses truncation and corruption).
    Returns (sha256, bytes, seconds of the full read)."""
    check = ctx.run_tool([tools.tool("pg_restore"), "--file=/dev/null", str(archive)],
                         env=env, timeout=timeout)
    if check.returncode != 0:
        raise JobFailed(f"the new archive does not read back (pg_restore exited "
                        f"{check.returncode}: {check.stderr}); it was not kept")
    return file_sha256(archive), archive.stat().st_size, check.seconds


def dump_roles(ctx: JobContext, tools: pgtools.PgTools, dsn: str, env: dict[str, str],
               database: str, target: Path, written: list[Path]) -> dict[str, Any]:
    """Roles and tablespaces (`pg_dumpall --globals-only`). A user who may not read
    pg_authid gets the roles without their passwords; if even that fails the backup goes on
    and the manifest says the roles were skipped and why."""
    _create_private(target, written)
    base = [tools.tool("pg_dumpall"), "--globals-only", f"--file={target}",
            f"--database={database}"]
    if dsn:
        base.append(f"--dbname={dsn}")
    first = ctx.run_tool(base, env=env, timeout=600)
    if first.returncode == 0:
        pgtools.fsync_path(target)
        return {"status": "dumped", "file": target.name.removeprefix(".").removesuffix(".tmp")}
    if "permission denied" in first.stderr:
        second = ctx.run_tool([*base, "--no-role-passwords"], env=env, timeout=600)
        if second.returncode == 0:
            pgtools.fsync_path(target)
            return {"status": "dumped without role passwords",
                    "file": target.name.removeprefix(".").removesuffix(".tmp"),
                    "reason": _error_line(first.stderr)}
        first = second
    target.unlink()
    written.remove(target)
    return {"status": "skipped", "reason": _error_line(first.stderr)}


def count_tables(conn: psycopg.Connection[DictRow]) -> dict[str, int]:
    """Rows of every user table, by name (schema-qualified outside public)."""
    counts: dict[str, int] = {}
    for row in conn.execute(Q["backup_user_tables"]).fetchall():
        ident = sql.Identifier(row["schema"], row["table"])
        n = conn.execute(sql.SQL("SELECT count(*) AS n FROM {}").format(ident)).fetchone()
        assert n is not None  # count(*) always returns its row
        key = row["table"] if row["schema"] == "public" else f"{row['schema']}.{row['table']}"
        counts[key] = n["n"]
    return counts


def _search_fingerprints(conn: psycopg.Connection[DictRow]) -> list[dict[str, Any]]:
    words = conn.execute(Q["backup_sample_lexemes"],
                         {"documents": SAMPLE_DOCUMENTS, "limit": SAMPLE_SEARCHES}).fetchall()
    return [search_fingerprint(conn, w["lexeme"]) for w in words]


def search_fingerprint(conn: psycopg.Connection[Any], lexeme: str) -> dict[str, Any]:
    """How many documents a word matches and a digest of their ids."""
    with conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(Q["backup_search_fingerprint"], {"lexeme": lexeme}).fetchone()
    assert row is not None  # an aggregate: always one row
    return {"lexeme": lexeme, "matches": row["matches"], "ids_md5": row["ids_md5"]}


def _write_content_list(conn: psycopg.Connection[DictRow], target: Path,
                        written: list[Path]) -> tuple[int, str]:
    """sha256 <TAB> stored_path per stored file, streamed (a server-side cursor) so a large
    archive does not have to fit in memory."""
    digest = hashlib.sha256()
    count = 0
    _create_private(target, written)
    with open(target, "wb") as out, conn.cursor(name="alfrd_content_list") as cur:
        cur.execute(Q["backup_content_store"])
        for row in cur:
            line = f"{row['sha256']}\t{row['stored_path']}\n".encode()
            out.write(line)
            digest.update(line)
            count += 1
        out.flush()
        os.fsync(out.fileno())
    return count, digest.hexdigest()


# --- files ---------------------------------------------------------------------------------------
def _free_base(directory: Path, now: datetime) -> str:
    stamp = now.strftime("%Y%m%dT%H%M%SZ")
    base, n = f"alfrd-{stamp}", 1
    while (directory / f"{base}.dump").exists():
        n += 1
        base = f"alfrd-{stamp}-{n}"
    return base


def _create_private(path: Path, written: list[Path]) -> None:
    """Create the file 0600 ourselves: the tools open it with truncation and keep the mode."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    os.close(fd)
    written.append(path)


def _write_private(path: Path, data: bytes, written: list[Path]) -> None:
    _create_private(path, written)
    with open(path, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _error_line(text: str) -> str:
    """The line that says what went wrong (the tools add detail lines after it)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if "error:" in line]
    return (errors or lines or ["no message"])[0]


def remove_leftovers(directory: Path) -> list[str]:
    """Temporary files of an interrupted run, and sidecars whose archive is gone."""
    removed = []
    archives = {b.base for b in list_backups(directory)}
    for entry in os.scandir(directory):
        name = entry.name
        orphan = name.startswith("alfrd-") and name.endswith(SIDECARS) and not any(
            name == f"{base}{suffix}" for base in archives for suffix in SIDECARS)
        if (name.startswith(".alfrd-") and name.endswith(".tmp")) or orphan:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
            removed.append(name)
    return sorted(removed)


def apply_retention(directory: Path, *, keep_daily: int, keep_weekly: int,
                    tz: Any) -> dict[str, Any]:
    backups = list_backups(directory)
    kept, delete = plan_retention([(b.name, b.created) for b in backups],
                                  keep_daily=keep_daily, keep_weekly=keep_weekly, tz=tz)
    by_name = {b.name: b for b in backups}
    for name in delete:
        backup = by_name[name]
        backup.path.unlink()  # the archive first: sidecars without it are leftovers
        for suffix in SIDECARS:
            with contextlib.suppress(FileNotFoundError):
                backup.sidecar(suffix).unlink()
    if delete:
        pgtools.fsync_path(directory)
    return {"kept": {k.name: k.rule for k in kept}, "deleted": delete}
