"""What `alfrd show` and `alfrd status` say about hooks: a document's hook runs, and the
runs waiting and failed across the archive."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.rows import DictRow

from alfrd_daemon.db.queries import load_named_queries

_OUTPUT_LINES = 5  # of a run's output tail, under `alfrd show`


def hook_runs_of(conn: psycopg.Connection[DictRow], document_id: object) -> list[dict[str, Any]]:
    q = load_named_queries("hooks.sql")
    return [dict(r) for r in conn.execute(q["hook_runs_of"], {"id": document_id})]


def hook_run_lines(runs: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in runs:
        state = {"queued": "waiting", "running": "running", "done": "done",
                 "failed": "FAILED", "skipped": "skipped"}.get(r["state"], r["state"])
        parts = [f"{r['hook']}: {state}"]
        if r["finished_at"] is not None:
            parts.append(f"at {r['finished_at']:%Y-%m-%d %H:%M:%S}")
        if r["exit_code"] is not None:
            parts.append(f"exit {r['exit_code']}")
        if r["attempts"] > 1:
            parts.append(f"attempts {r['attempts']}")
        if r["last_error"] and r["state"] != "done":
            parts.append(r["last_error"])
        lines.append("; ".join(parts))
        output = (r["output"] or "").strip().splitlines()[-_OUTPUT_LINES:]
        lines += [f"  | {line}" for line in output]
    return lines


def hook_status(conn: psycopg.Connection[DictRow]) -> dict[str, Any]:
    q = load_named_queries("hooks.sql")
    counts: dict[str, dict[str, int]] = {}
    for r in conn.execute(q["hook_counts"]):
        counts.setdefault(r["hook"], {})[r["state"]] = r["n"]
    configured = sorted({r["hook"] for r in conn.execute(
        "SELECT DISTINCT hook FROM hook_config")})
    return {"configured": configured, "runs": counts}


def hook_status_line(status: dict[str, Any]) -> str | None:
    if not status["configured"] and not status["runs"]:
        return None
    parts = []
    for hook in sorted(set(status["configured"]) | set(status["runs"])):
        c = status["runs"].get(hook, {})
        parts.append(f"{hook} {c.get('queued', 0)} waiting, {c.get('running', 0)} running, "
                     f"failed {c.get('failed', 0)}")
    return "; ".join(parts)
