"""Emptying the trash: documents deleted more than trash.keep_days ago lose their row, and
their stored file when no other row points at it. Part of the prune job.

Prune runs once per schedule for the whole database, on whichever daemon gets there first,
so it purges every store's expired rows; it can only remove files from this host's store.
The files of rows held by other hosts' stores stay where they are, counted in the run's
details: nothing refers to them any more, so that host's `alfrd check` lists them as orphans
and `--repair` moves them aside (never deletes)."""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import DictRow

from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.ingest.claim import rename_noreplace
from alfrd_daemon.ingest.failed import NOTE_SUFFIX
from alfrd_daemon.ingest.reconcile import undisplay
from alfrd_daemon.ingest.store import TEMP_PREFIX, Store
from alfrd_daemon.jobs.context import JobContext

Q = load_named_queries("userside.sql")

BATCH = 500


def files_of(row: dict[str, Any]) -> list[str]:
    """Every store file a row points at: its own, and each page of a document folder."""
    paths = [row["stored_path"]] if row["stored_path"] else []
    pages = ((row.get("metadata") or {}).get("folder") or {}).get("pages")
    if isinstance(pages, list):
        paths += [str(p["stored_path"]) for p in pages
                  if isinstance(p, dict) and p.get("stored_path")]
    return list(dict.fromkeys(paths))


def purge_trash(ctx: JobContext) -> dict[str, Any]:
    settings = ctx.settings
    keep_days = settings.trash.keep_days
    cutoff = datetime.now(UTC) - timedelta(days=keep_days)
    try:
        local_id = Store(settings.store_path).read_identity()
    except OSError:
        local_id = None  # files then stay (counted as left), rows still go
    counts = {"trash_documents_purged": 0, "trash_files_removed": 0,
              "trash_files_in_use": 0, "trash_files_arriving": 0, "trash_files_absent": 0,
              "trash_files_left_on_other_stores": 0}
    ctx.progress("emptying the trash")
    with ctx.connection(autocommit=True) as conn:
        while True:
            ctx.check()
            with conn.transaction():
                rows = conn.execute(Q["trash_expired_all"],
                                    {"cutoff": cutoff, "limit": BATCH}).fetchall()
                if not rows:
                    break
                conn.execute(Q["purge_documents"],
                             {"ids": [r["id"] for r in rows], "cutoff": cutoff})
            # The rows are gone (committed) before their files: a crash in between leaves a
            # file nothing points at, which `alfrd check` finds, never a row without its file.
            for row in rows:
                local = row["store_id"] is None or str(row["store_id"]) == local_id
                for path in files_of(row):
                    if not local:
                        counts["trash_files_left_on_other_stores"] += 1
                        continue
                    outcome = _remove_unreferenced(conn, settings.store_path,
                                                   settings.failed_path, path,
                                                   row["deleted_at"].timestamp())
                    counts[outcome] += 1
            counts["trash_documents_purged"] += len(rows)
            if len(rows) < BATCH:
                break
    ctx.details.update(trash_keep_days=keep_days, **counts)
    return counts


def _remove_unreferenced(conn: psycopg.Connection[DictRow], store: Path, failed: Path,
                         path: str, deleted_at: float) -> str:
    """Remove one file of a purged row unless another row points at it (a folder page shared
    with a document of its own) or its content is arriving again right now. Returns the
    counter to count it under."""
    row = conn.execute(Q["file_referenced"], {"path": path}).fetchone()
    if row is not None and row["referenced"]:
        return "trash_files_in_use"
    if path.startswith("failed/"):  # no ingest adopts into the failed folder
        name = path[len("failed/"):]
        for candidate in (failed / name, failed / undisplay(name)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(candidate)
                # Its note too, or `alfrd retry` and `alfrd status` would list a file that
                # is gone.
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(candidate.with_name(candidate.name + NOTE_SUFFIX))
                return "trash_files_removed"
        return "trash_files_absent"
    return _remove_stored(store / path, deleted_at)


def _remove_stored(target: Path, deleted_at: float) -> str:
    """A worker that receives this content again finds the file in place, keeps no copy of
    its own, and commits a new row for it a moment later; it marks the file (a new mtime,
    store._mark_arrived) first. So: move the file aside (a worker adopting from now on
    stores its own copy), then look at the mark: one newer than the deletion means a row
    for it may be about to commit, and the file goes back."""
    aside = target.with_name(f"{TEMP_PREFIX}purge-{target.name}")
    try:
        os.rename(target, aside)
    except FileNotFoundError:
        return "trash_files_absent"
    try:
        arriving = os.lstat(aside).st_mtime >= deleted_at
    except FileNotFoundError:
        return "trash_files_absent"
    if not arriving:
        os.unlink(aside)
        return "trash_files_removed"
    try:
        rename_noreplace(aside, target)
    except FileExistsError:  # the arriving worker stored its own copy meanwhile
        os.unlink(aside)
    return "trash_files_arriving"
