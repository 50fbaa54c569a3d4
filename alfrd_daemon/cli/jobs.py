"""`alfrd jobs …`, `alfrd backup` and `alfrd restore`: the scheduled jobs run by hand."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from typing import Any

from alfrd_daemon.cli.common import (
    EXIT_BUSY,
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    MAX_ROWS,
    Subcommands,
    bad_argument,
    conninfo_arg,
    database,
    print_json,
    settings_from,
    text_path,
    whole_number,
)
from alfrd_daemon.config.jobs import JOB_ATTRS, canonical_job_name
from alfrd_daemon.db.target import resolve_database
from alfrd_daemon.logs import mask_dsn
from alfrd_daemon.progress import StageProgress


def _cli_instance() -> str:
    return f"cli-{socket.gethostname()[:40]}-{os.getpid()}"


def run_job(args: argparse.Namespace, name: str) -> int:
    from alfrd_daemon.jobs.runner import JobRunner

    settings = settings_from(args)
    if name == "rescan":
        print("alfrd jobs run rescan: a rescan is done by a running daemon (it scans on its "
              "own every watch.rescan_interval); nothing to do here", file=sys.stderr)
        return EXIT_USAGE
    target = resolve_database(settings, start_embedded=False)
    progress = StageProgress(name)
    with database(settings):  # starts the embedded server if need be, applies migrations
        runner = JobRunner(settings, target.conninfo, _cli_instance(), reporter=progress)
        try:
            result = runner.run(name, trigger="manual")
        finally:
            progress.close()
    if args.json:
        print_json({"job": name, "outcome": result.outcome, "message": result.message,
                    "run_id": result.run_id, "details": result.details})
    elif result.outcome == "succeeded":
        print(f"{name}: succeeded{_summary(name, result.details or {})}")
    else:
        print(f"{name}: {result.outcome}: {result.message}", file=sys.stderr)
    if result.outcome == "skipped":
        return EXIT_BUSY
    return EXIT_OK if result.outcome == "succeeded" else EXIT_PROBLEM


def _summary(name: str, d: dict[str, Any]) -> str:
    if name == "backup":
        return (f": {d.get('file')} ({d.get('bytes', 0)} bytes; dump {d.get('dump_seconds')} s,"
                f" verify {d.get('verify_seconds')} s; roles {d.get('roles', {}).get('status')})")
    if name == "reindex":
        return (f": {d.get('rewritten', 0)} documents recomputed in {d.get('batches', 0)} "
                f"batches" + (f"; index rebuilt ({d['rebuild_reason']})"
                              if d.get("rebuild_reason") else ""))
    if name == "prune":
        return (f": {d.get('arrivals_deleted', 0)} arrivals and {d.get('job_runs_deleted', 0)} "
                f"job runs older than {d.get('keep_days')} days deleted")
    if name == "retry-failed":
        return f": {d.get('moved', 0)} files back in the inbox"
    if name == "restore-test":
        return f": {d.get('backup')} restored into a scratch database and verified"
    return ""


def job_name(text: str) -> str:
    """A job's name as `alfrd jobs` takes it ('retry_failed' and 'retry-failed' alike)."""
    name = canonical_job_name(text)
    if name is None:
        bad_argument(text, "one of " + ", ".join(JOB_ATTRS))
    return name


def cmd_jobs_run(args: argparse.Namespace) -> int:
    return run_job(args, args.name)


def cmd_jobs_list(args: argparse.Namespace) -> int:
    from alfrd_daemon.jobs.runner import job_status

    settings = settings_from(args)
    with database(settings) as conn:
        jobs = job_status(conn, settings)
    if args.json:
        print_json(jobs)
        return EXIT_OK
    for j in jobs:
        when = f"{j['last_finished']:%Y-%m-%d %H:%M}" if j["last_finished"] else "-"
        nxt = f"{j['next_run']:%Y-%m-%d %H:%M %Z}" if j.get("next_run") else (
            "disabled" if j.get("enabled") is False else "-")
        flag = "  OVERDUE" if j.get("overdue") else ""
        print(f"{j['job']:<13} {j.get('schedule', ''):<22} last {j['last_outcome'] or 'never'}"
              f" {when}  next {nxt}{flag}")
    return EXIT_OK


def cmd_jobs_history(args: argparse.Namespace) -> int:
    from alfrd_daemon.jobs.runner import Q

    settings = settings_from(args)
    with database(settings) as conn:
        rows = conn.execute(Q["job_history"], {"job": args.name, "limit": args.limit}).fetchall()
    if args.json:
        print_json(rows)
        return EXIT_OK
    for r in rows:
        took = (f"{(r['finished_at'] - r['started_at']).total_seconds():.1f} s"
                if r["finished_at"] else "running")
        error = f"  {r['details'].get('error')}" if r["details"].get("error") else ""
        print(f"{r['started_at']:%Y-%m-%d %H:%M:%S}  {r['job']:<13} {r['outcome']:<10} "
              f"{r['trigger']:<9} {took:>9}  {r['instance']}{error}")
    return EXIT_OK


def cmd_backup(args: argparse.Namespace) -> int:
    if not args.list:
        return run_job(args, "backup")
    from alfrd_daemon.jobs.backup import list_backups

    settings = settings_from(args)
    listing = []
    for b in reversed(list_backups(settings.backups_path)):
        manifest = b.manifest() or {}
        listing.append({"name": b.name, "path": str(b.path), "created": b.created,
                        "bytes": b.path.stat().st_size,
                        "documents": manifest.get("tables", {}).get("documents"),
                        "server_version": manifest.get("server_version"),
                        "roles": manifest.get("roles", {}).get("status")})
    if args.json:
        print_json(listing)
    elif not listing:
        print(f"no backups in {settings.backups_path}")
    for item in [] if args.json else listing:
        print(f"{item['name']}  {item['bytes']:>12} bytes  documents {item['documents']}  "
              f"roles {item['roles']}")
    return EXIT_OK


def cmd_restore(args: argparse.Namespace) -> int:
    from alfrd_daemon.jobs.backup import find_backup
    from alfrd_daemon.jobs.context import JobContext, JobFailed
    from alfrd_daemon.jobs.restore import RestoreRefused, restore_backup

    settings = settings_from(args)
    progress = StageProgress("restore")
    ctx = JobContext(name="restore", settings=settings, conninfo=args.to,
                     instance=_cli_instance(), reporter=progress,
                     connect_timeout=settings.database.connect_timeout)
    try:
        backup = find_backup(settings.backups_path, args.backup)
        details = restore_backup(ctx, backup, args.to, keep_owners=args.keep_owners,
                                 store_root=settings.store_path,
                                 failed_root=settings.failed_path)
    except JobFailed as exc:
        progress.close()
        print(f"alfrd restore: {mask_dsn(str(exc))}", file=sys.stderr)
        return EXIT_USAGE if isinstance(exc, RestoreRefused) else EXIT_PROBLEM
    progress.close()
    if args.json:
        print_json(details)
        return EXIT_OK
    counts = ", ".join(f"{t} {n}" for t, n in details["tables"].items())
    print(f"restored {backup.name} into {mask_dsn(args.to)}: {counts}")
    print("verified against the manifest: row counts and "
          f"{len(details['searches'])} searches match" if details["verified"]
          else f"not verified: {details.get('warning')}")
    store = details.get("content_store", {})
    if store.get("checked"):
        print(f"content store {store['store']}: {store['needed']} stored files referenced, "
              f"{store['missing']} missing" + (f" (list: {store['list']})"
                                               if store["missing"] else ""))
    return EXIT_OK


def register(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("jobs", help="scheduled jobs: run one now, list, history")
    jsub = p.add_subparsers(dest="jobs_command", required=True, metavar="SUBCOMMAND")
    j = jsub.add_parser("run", parents=[common], help="run a job now (under its lock)")
    j.add_argument("name", type=job_name, help=", ".join(JOB_ATTRS))
    j.add_argument("--json", action="store_true")
    j.set_defaults(func=cmd_jobs_run)
    j = jsub.add_parser("list", parents=[common], help="each job's schedule, last and next run")
    j.add_argument("--json", action="store_true")
    j.set_defaults(func=cmd_jobs_list)
    j = jsub.add_parser("history", parents=[common], help="recent runs")
    j.add_argument("name", nargs="?", type=job_name)
    j.add_argument("--limit", type=whole_number(1, MAX_ROWS), default=20)
    j.add_argument("--json", action="store_true")
    j.set_defaults(func=cmd_jobs_history)

    p = sub.add_parser("backup", parents=[common],
                       help="take a verified backup now (= alfrd jobs run backup)")
    p.add_argument("--list", action="store_true", help="list the backups instead")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", parents=[common],
                       help="restore a backup into an empty database and verify it")
    p.add_argument("backup", type=text_path,
                   help="'latest', an archive name in the backups folder, or a path")
    p.add_argument("--to", required=True, type=conninfo_arg, metavar="URL",
                   help="an empty database")
    p.add_argument("--keep-owners", action="store_true",
                   help="restore ownership and privileges (the roles must exist)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_restore)
