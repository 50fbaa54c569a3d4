"""Putting failed files back into the inbox: `alfrd retry` and the retry-failed job.

The files' failed rows are deleted so the next attempt is judged anew. A file lock on the
failed folder keeps two daemons (or a daemon and a user) sharing it from moving the same file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from alfrd_daemon.db.queries import QUERIES
from alfrd_daemon.ingest.failed import FailedFolder
from alfrd_daemon.jobs.context import JobContext

LOCK_NAME = ".alfrd-retry.lock"


@dataclass
class RetryOutcome:
    moved: list[dict[str, str]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


@contextlib.contextmanager
def _folder_lock(root: Path) -> Iterator[None]:
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def take_back_failed(settings: Any, conn: psycopg.Connection[Any],
                     names: list[str] | None) -> RetryOutcome:
    """Move the named failed files (None: all of them) back into the inbox."""
    outcome = RetryOutcome()
    if not settings.failed_path.is_dir():
        outcome.missing = list(names or [])
        return outcome
    failed = FailedFolder(settings.failed_path)
    with _folder_lock(settings.failed_path):
        notes = dict(failed.notes())
        for name in list(notes) if names is None else names:
            if name not in notes:
                outcome.missing.append(name)
                continue
            doc_id = notes[name].get("document_id")
            dest = failed.take_back(name, settings.inbox.path)
            if doc_id:
                with conn.transaction():
                    conn.execute(QUERIES["delete_failed_document"], {"id": doc_id})
            outcome.moved.append({"name": name, "inbox_path": str(dest)})
    return outcome


def run_retry_failed(ctx: JobContext) -> dict[str, Any]:
    with ctx.connection() as conn:
        outcome = take_back_failed(ctx.settings, conn, None)
    ctx.details["moved"] = len(outcome.moved)
    ctx.details["files"] = [m["name"] for m in outcome.moved[:50]]
    return ctx.details
