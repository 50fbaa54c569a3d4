"""The hook runs in PostgreSQL: declaring this host's hooks, claiming a run under a lease,
finishing or releasing it. Every statement after the claim matches the claim's own lease
token, so a runner whose lease ran out can never record a run a second runner also did."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg.types.json import Jsonb

from alfrd_daemon.db.pool import Database
from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.hooks.command import kill_leftovers
from alfrd_daemon.pgsafe import clean_json, clean_text

Q = load_named_queries("hooks.sql")
ERROR_MAX_CHARS = 2000


@dataclass(frozen=True)
class Run:
    document_id: str
    hook: str
    owner: str  # this claim's lease token
    attempts: int  # counting this one
    document: dict[str, Any]  # the claim's row: name, stored_path, tags, type, …


def pid_of_owner(owner: str, host: str) -> int | None:
    """The process id in a lease token `<host>-<pid>-<hex>/<hex>` of this host."""
    rest = owner.removeprefix(f"{host}-")
    if rest == owner:
        return None
    pid = rest.split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


class HookQueue:
    def __init__(self, db: Database, *, instance: str, host: str, lease_seconds: float,
                 store_id: str | None):
        self.db = db
        self.instance = instance
        self.host = host
        self.lease_seconds = lease_seconds
        self.store_id = store_id

    def declare(self, commands: dict[str, tuple[str, ...]]) -> int:
        """Record which hooks this host runs (the triggers enqueue only hooks some host
        has); runs of hooks no host has any more are skipped. Returns how many."""
        with self.db.transaction() as cur:
            cur.execute(Q["hook_config_clear"], {"host": self.host})
            for hook, argv in commands.items():
                cur.execute(Q["hook_config_set"], {"hook": hook, "host": self.host,
                                                   "command": clean_text(" ".join(argv))})
            cur.execute(Q["hook_skip_unconfigured"])
            return cur.rowcount

    def release_dead(self) -> int:
        """Runs leased by a process of this host that no longer exists (a daemon killed
        mid-run) go back to the queue at once instead of waiting for their lease."""
        released = 0
        with self.db.transaction() as cur:
            rows = cur.execute(Q["hook_running_of_host"],
                               {"prefix": f"{self.host}-%"}).fetchall()
            for row in rows:
                pid = pid_of_owner(row["lease_owner"], self.host)
                if pid is None or pid == os.getpid() or process_alive(pid):
                    continue
                # Its hook may still run (a session of its own outlives the daemon): end it
                # first, so the run taken again is not running twice at once.
                kill_leftovers(row["lease_owner"])
                cur.execute(Q["hook_release"], {"id": row["document_id"], "hook": row["hook"],
                                                "owner": row["lease_owner"]})
                released += cur.rowcount
        return released

    def claim(self, hooks: list[str]) -> Run | None:
        owner = f"{self.instance}/{secrets.token_hex(4)}"
        with self.db.transaction() as cur:
            row = cur.execute(Q["hook_claim"], {
                "hooks": hooks, "owner": owner, "lease_seconds": self.lease_seconds,
                "store_id": self.store_id}).fetchone()
        if row is None:
            return None
        return Run(document_id=str(row["document_id"]), hook=row["hook"], owner=owner,
                   attempts=row["attempts"], document=dict(row))

    def finish(self, run: Run, *, state: str, exit_code: int | None, error: str | None,
               output: str, delay_seconds: float = 0.0) -> bool:
        """Record the outcome; a failure also on the document (metadata.hooks.<hook>), a
        success takes back a failure recorded there before. False when the lease was lost."""
        error = clean_text(error[:ERROR_MAX_CHARS]) if error else None
        with self.db.transaction() as cur:
            row = cur.execute(Q["hook_finish"], {
                "id": run.document_id, "hook": run.hook, "owner": run.owner, "state": state,
                "exit_code": exit_code, "error": error, "output": clean_text(output),
                "delay_seconds": delay_seconds}).fetchone()
            if row is None:
                return False
            if state == "failed":
                record = {"exit_code": exit_code, "error": error, "attempts": run.attempts,
                          "at": datetime.now(UTC).isoformat(timespec="seconds")}
                cur.execute(Q["hook_record_failure"], {
                    "id": run.document_id, "hook": run.hook,
                    "record": Jsonb(clean_json(record))})
            elif state == "done":
                cur.execute(Q["hook_clear_failure"], {"id": run.document_id, "hook": run.hook})
        return True

    def release(self, run: Run) -> bool:
        with self.db.transaction() as cur:
            row = cur.execute(Q["hook_release"], {"id": run.document_id, "hook": run.hook,
                                                  "owner": run.owner}).fetchone()
        return row is not None
