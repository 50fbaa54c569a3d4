"""The start-up steps that can fail for a reason the operator fixes (a directory outside the
unit's ReadWritePaths=, a database still recovering, a store that belongs elsewhere), each
turned into one StartupError line that names what to fix instead of a traceback."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import psycopg

from alfrd_daemon.config.settings import Settings
from alfrd_daemon.db import pool as dbmod
from alfrd_daemon.db.cluster import ClusterError
from alfrd_daemon.db.migrations import migrate
from alfrd_daemon.db.target import DatabaseTarget, resolve_database
from alfrd_daemon.ingest.store import Store, StoreIdentityError

log = logging.getLogger("alfrd.daemon")

_WAITED = "(raise database.startup_timeout if it needs longer)"


class StartupError(Exception):
    """The daemon cannot start; the message says what to fix."""


@contextlib.contextmanager
def opening(what: str, path: Path) -> Iterator[None]:
    """An OSError while creating or opening one of our directories is a start-up problem
    (outside the unit's ReadWritePaths=, read-only, under a regular file): one line naming
    the path and the error, never a traceback."""
    try:
        yield
    except OSError as exc:
        raise StartupError(f"cannot open the {what} {path}: {_os_reason(exc, path)}") from exc


def _os_reason(exc: OSError, path: Path) -> str:
    """strerror, plus the path the kernel refused when it is not the one we named."""
    reason = exc.strerror or str(exc)
    refused = os.fsdecode(exc.filename) if exc.filename is not None else None
    return f"{reason}: {refused}" if refused and refused != str(path) else reason


def database_target(settings: Settings) -> DatabaseTarget:
    """The embedded server or the configured one, waited for: it may still be starting or
    recovering (a restart right after a crash)."""
    try:
        return resolve_database(settings)
    except dbmod.DatabaseUnavailable as exc:
        raise StartupError(f"embedded PostgreSQL: {exc} {_WAITED}") from exc
    except (ClusterError, OSError, psycopg.Error) as exc:
        # What the cluster raises for a reason worth a line: a failed pg_ctl or initdb, a
        # directory it cannot make, a database it cannot create. Anything else is a bug.
        raise StartupError(f"embedded PostgreSQL: {exc}") from exc


def open_database(db: dbmod.Database, startup_timeout: float) -> None:
    """Open the pool (waiting up to `startup_timeout`) and apply the schema migrations."""
    try:
        db.open(timeout=startup_timeout)
    except dbmod.DatabaseUnavailable as exc:
        raise StartupError(f"{exc} {_WAITED}") from exc
    try:
        with db.connection() as conn:
            applied = migrate(conn)
    except (dbmod.DatabaseUnavailable, psycopg.Error) as exc:
        raise StartupError(f"cannot apply the schema migrations: {exc}") from exc
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))


def open_store(store: Store, db: dbmod.Database) -> None:
    """Open the store, then register it before any row names it (rows refer to it)."""
    try:
        store.open()
    except StoreIdentityError as exc:
        raise StartupError(f"{exc.filename}: {exc.strerror}") from exc
    try:
        with db.transaction() as cur:
            store.register(cur)
    except dbmod.DatabaseUnavailable as exc:
        raise StartupError(str(exc)) from exc
    log.info("store %s: id %s", store.root, store.id)
