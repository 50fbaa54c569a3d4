"""Schema migrations: the numbered files in sql/migrations, applied once each, in order, and
recorded in schema_migrations."""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from alfrd_daemon.db.locks import advisory_key

MIGRATION_LOCK = advisory_key("migrations")


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) for every file in sql/migrations, in order."""
    folder = resources.files("alfrd_daemon.db").joinpath("sql/migrations")
    found = []
    for entry in folder.iterdir():
        m = re.match(r"^(\d+)_(\w+)\.sql$", entry.name)
        if m:
            found.append((int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    return sorted(found)


# Any row type: both functions read through a cursor of their own.
def migrate(conn: psycopg.Connection[Any]) -> list[str]:
    """Apply missing migrations in one transaction under an advisory lock, so daemons starting
    together neither race nor half-apply. Returns the names applied."""
    applied_now: list[str] = []
    with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in cur.execute("SELECT version FROM schema_migrations")}
        for version, name, sql in migrations():
            if version in done:
                continue
            cur.execute(sql.encode())  # bytes: run the file as one multi-statement script
            cur.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name)
            )
            applied_now.append(f"{version:03d}_{name}")
    return applied_now


def pending_migrations(conn: psycopg.Connection[Any]) -> list[str]:
    cur = conn.cursor(row_factory=tuple_row)
    exists = cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    done: set[int] = set()
    if exists and exists[0]:
        done = {row[0] for row in cur.execute("SELECT version FROM schema_migrations")}
    return [f"{v:03d}_{n}" for v, n, _ in migrations() if v not in done]
