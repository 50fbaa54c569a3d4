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
from alfrd_daemon.cli.hooks_view import hook_status, hook_status_line
from alfrd_daemon.config.settings import Settings
from alfrd_daemon.db import pool as dbmod
from alfrd_daemon.db.queries import QUERIES, load_named_queries
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
            report["ocr"] = _ocr_status(conn, settings, report["daemons"])
            report["hooks"] = hook_status(conn)
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


RATE_WINDOW_SECONDS = 900


def _ocr_status(conn: psycopg.Connection[DictRow], settings: Settings,
                daemons: list[dict[str, Any]]) -> dict[str, Any]:
    """The OCR queue, its recent rate and failures, and whether OCR can run: here (this
    host's engine and languages) and in each running worker (as its heartbeat says)."""
    q = load_named_queries("ocr.sql")
    summary = dict(conn.execute(q["ocr_queue_summary"]).fetchone() or {})
    rate = conn.execute(q["ocr_recent_rate"], {"window_seconds": RATE_WINDOW_SECONDS}).fetchone()
    seconds = float(rate["seconds"]) if rate and rate["seconds"] else 0.0
    failures = [{"id": str(r["document_id"]), "name": r["original_name"],
                 "reason": r["last_error"], "attempts": r["attempts"]}
                for r in conn.execute(q["ocr_recent_failures"], {"limit": 5})]
    workers = [{"instance": d["instance"], **(d.get("ocr") or {})}
               for d in daemons if d["running"] and d.get("ocr")]
    return {**summary,
            "pages_per_second": round(int(rate["pages"]) / seconds, 3) if rate and seconds
            else None,
            "rate_window_seconds": RATE_WINDOW_SECONDS,
            "recent_failures": failures, "workers": workers,
            "engine": _local_engine(settings)}


def _local_engine(settings: Settings) -> dict[str, Any]:
    from alfrd_daemon.ocr.reader import OcrUnavailable, check_languages, engine_version

    languages = list(settings.ocr.languages)
    try:
        check_languages(languages)
        return {"available": True, "version": engine_version(), "languages": languages}
    except OcrUnavailable as exc:
        return {"available": False, "reason": str(exc), "languages": languages}


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
        if d.get("role") == "ocr-worker":  # `alfrd worker`: its OCR state is under ocr:
            state = "running" if d["running"] else (
                f"not running (last seen {d['heartbeat_age_seconds']:.0f} s ago)")
            print(f"worker:    {d['instance']} (OCR only) {state}")
        elif d["running"]:
            print(f"daemon:    {d['instance']} running; queue {d.get('queue_depth', '?')}, "
                  f"watcher {d.get('watch_mode', '?')} "
                  f"{'ok' if d.get('watcher_alive') else 'DOWN'}, health {d.get('health')}, "
                  f"ingested {d.get('ingested', 0)}, failed {d.get('failed', 0)}"
                  + (f", WAITING: {d['last_transient']}" if d.get("last_transient") else ""))
        else:
            print(f"daemon:    {d['instance']} not running (last seen "
                  f"{d['heartbeat_age_seconds']:.0f} s ago)")
    if "ocr" in report:
        _print_ocr(report["ocr"])
    hooks_line = hook_status_line(report["hooks"]) if "hooks" in report else None
    if hooks_line:
        print(f"hooks:     {hooks_line}")
    for job in report.get("jobs", []):
        print(f"job:       {job['job']}: last {job.get('last_outcome') or 'never run'}"
              f" at {job.get('last_finished') or '-'}; next {job.get('next_run') or '-'}")


def _print_ocr(ocr: dict[str, Any]) -> None:
    oldest = ocr.get("oldest_waiting")
    since = f", the oldest since {oldest:%Y-%m-%d %H:%M:%S}" if oldest else ""
    rate = ocr.get("pages_per_second")
    rate_text = (f"{rate:g} pages/s over the last {ocr['rate_window_seconds'] // 60} min"
                 if rate is not None else "no pages read in the last "
                 f"{ocr['rate_window_seconds'] // 60} min")
    print(f"ocr:       {ocr.get('documents_waiting', 0)} documents ({ocr.get('pages_waiting', 0)}"
          f" pages) waiting for OCR{since}; {ocr.get('running', 0)} being read; {rate_text}; "
          f"failed {ocr.get('failed', 0)}")
    engine = ocr["engine"]
    langs = "+".join(engine["languages"])
    if engine["available"]:
        print(f"ocr:       engine on this host: {engine['version']}, languages {langs}")
    else:
        print(f"ocr:       engine on this host UNAVAILABLE (documents wait as pending): "
              f"{engine['reason']}")
    for w in ocr["workers"]:
        head = "ok" if w.get("available") else f"UNAVAILABLE: {w.get('unavailable')}"
        print(f"ocr:       {w['instance']}: {w.get('workers', '?')} workers, "
              f"{w.get('busy', 0)} busy, OCR {head}")
    if not ocr["workers"] and ocr.get("documents_waiting"):
        print("ocr:       no OCR worker is running: documents wait (enable ocr in a daemon or "
              "start `alfrd worker`)")
    for f in ocr["recent_failures"]:
        print(f"ocr:       failed {f['id']} {f['name']}: {f['reason']} (alfrd retry {f['id']})")
