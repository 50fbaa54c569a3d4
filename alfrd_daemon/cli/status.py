"""`alfrd status`: documents and arrivals by state, the daemons, the stores, failed files and
the scheduled jobs, in one view."""

from __future__ import annotations

import argparse
from typing import Any

import psycopg
from psycopg.rows import DictRow

from alfrd_daemon.cli.common import (
    EXIT_OK,
    EXIT_UNAVAILABLE,
    Subcommands,
    database,
    local_store_id,
    print_json,
    settings_from,
)
from alfrd_daemon.config.settings import Settings
from alfrd_daemon.db import pool as dbmod
from alfrd_daemon.db.queries import QUERIES
from alfrd_daemon.ingest.failed import FailedFolder
from alfrd_daemon.logs import mask_dsn


def register(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("status", parents=[common], help="counts, daemons, failures, jobs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)


def cmd_status(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    failed_notes = FailedFolder(settings.failed_path).notes() if settings.failed_path.is_dir() \
        else []
    report: dict[str, Any] = {"config": settings.source, "inbox": str(settings.inbox.path),
                              "failed_folder": {"path": str(settings.failed_path),
                                                "files": len(failed_notes)}}
    try:
        with database(settings) as conn:
            report["database"] = {"state": "ok",
                                  "server": conn.info.parameter_status("server_version")}
            report["documents"] = {r["status"]: r["n"] for r in
                                   conn.execute(QUERIES["count_by_status"])}
            report["arrivals"] = {r["outcome"]: r["n"] for r in
                                  conn.execute(QUERIES["count_arrivals_by_outcome"])}
            report["daemons"] = [_instance_view(r) for r in
                                 conn.execute(QUERIES["list_instances"])]
            report["stores"] = _stores_view(settings, conn)
            report["jobs"] = _job_status(conn, settings)
    except (dbmod.DatabaseUnavailable, psycopg.OperationalError) as exc:
        report["database"] = {"state": "unreachable", "error": mask_dsn(str(exc))}
    if args.json:
        print_json(report)
    else:
        _print_status(report)
    return EXIT_OK if report["database"]["state"] == "ok" else EXIT_UNAVAILABLE


def _instance_view(row: DictRow) -> dict[str, Any]:
    age = row["heartbeat_age"].total_seconds()
    running = row["stopped_at"] is None and age < 60
    return {"instance": row["instance"], "hostname": row["hostname"], "pid": row["pid"],
            "running": running, "started_at": row["started_at"],
            "heartbeat_age_seconds": round(age, 1), "stopped_at": row["stopped_at"],
            **{k: v for k, v in row["state"].items()}}


def _stores_view(settings: Settings, conn: psycopg.Connection[DictRow]) -> list[dict[str, Any]]:
    local_id, _problem = local_store_id(settings)
    return [{"id": str(r["id"]) if r["id"] else None, "hostname": r["hostname"],
             "path": r["path"], "documents": r["documents"], "first_seen": r["first_seen"],
             "last_seen": r["last_seen"], "this_host": r["id"] is not None
             and str(r["id"]) == local_id}
            for r in conn.execute(QUERIES["list_stores"])
            if r["id"] is not None or r["documents"]]


def _job_status(conn: psycopg.Connection[DictRow], settings: Settings) -> list[dict[str, Any]]:
    """Scheduled-job history, once the jobs migration has created it."""
    exists = conn.execute("SELECT to_regclass('job_runs') IS NOT NULL AS e").fetchone()
    if not exists or not exists["e"]:
        return []
    from alfrd_daemon.jobs.runner import job_status  # the scheduler's code: only when needed

    return job_status(conn, settings)  # next runs come from the configured schedules


def _print_status(report: dict[str, Any]) -> None:
    dbinfo = report["database"]
    print(f"config:    {report['config']}")
    print(f"inbox:     {report['inbox']}")
    if dbinfo["state"] != "ok":
        print(f"database:  UNREACHABLE: {dbinfo['error']}")
    else:
        print(f"database:  ok (PostgreSQL {dbinfo['server']})")
        docs = ", ".join(f"{k} {v}" for k, v in report["documents"].items()) or "none yet"
        print(f"documents: {docs}")
        arr = ", ".join(f"{k} {v}" for k, v in report["arrivals"].items()) or "none yet"
        print(f"arrivals:  {arr}")
    for st in report.get("stores", []):
        if st["id"] is None:
            print(f"store:     {st['documents']} documents without a recorded store "
                  "(from before stores had an identity)")
        else:
            print(f"store:     {st['id']} on {st['hostname']} ({st['path']}): "
                  f"{st['documents']} documents"
                  + ("; this host's store" if st["this_host"] else ""))
    ff = report["failed_folder"]
    print(f"failed/:   {ff['files']} files waiting in {ff['path']}")
    for d in report.get("daemons", []):
        if d["running"]:
            print(f"daemon:    {d['instance']} running; queue {d.get('queue_depth', '?')}, "
                  f"watcher {d.get('watch_mode', '?')} "
                  f"{'ok' if d.get('watcher_alive') else 'DOWN'}, health {d.get('health')}, "
                  f"ingested {d.get('ingested', 0)}, failed {d.get('failed', 0)}"
                  + (f", WAITING: {d['last_transient']}" if d.get("last_transient") else ""))
        else:
            print(f"daemon:    {d['instance']} not running (last seen "
                  f"{d['heartbeat_age_seconds']:.0f} s ago)")
    for job in report.get("jobs", []):
        print(f"job:       {job['job']}: last {job.get('last_outcome') or 'never run'}"
              f" at {job.get('last_finished') or '-'}; next {job.get('next_run') or '-'}")
