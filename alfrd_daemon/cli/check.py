"""`alfrd check [--repair] [--json]`: run the reconciliation of ingest/reconcile.py against this
host's state directory and the database, and report what it found and repaired."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from alfrd_daemon.cli.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    Subcommands,
    database,
    print_json,
    seconds_arg,
    settings_from,
)
from alfrd_daemon.ingest.reconcile import EXAMPLES, INFO, PROBLEMS, Checker, Report
from alfrd_daemon.ingest.store import Store

DEFAULT_GRACE = 900.0
MAX_GRACE = 366 * 86400.0  # --grace beyond a year would call every orphan in flight


def register(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "check", parents=[common],
        help="find (and --repair) half-finished work: claims, orphans, missing files")
    p.add_argument("--repair", action="store_true",
                   help="return dead claims to the inbox, move orphans to <state>/orphans, "
                        "note missing files in their rows (never deletes anything)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help="do not re-hash stored files (structure only)")
    p.add_argument("--grace", type=seconds_arg(0, MAX_GRACE), default=DEFAULT_GRACE,
                   metavar="SECONDS",
                   help="store files younger than this are in flight, not orphans "
                        f"(default {DEFAULT_GRACE:g})")
    p.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    try:
        store_id = Store(settings.store_path).read_identity()
    except OSError as exc:
        print(f"alfrd check: cannot read the store's identity: "
              f"{exc.filename or settings.store_path}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_PROBLEM
    checker = Checker(inbox=settings.inbox.path, store=settings.store_path,
                      failed=settings.failed_path, orphans=settings.state_dir / "orphans",
                      repair=args.repair, verify=not args.quick, grace=args.grace,
                      store_id=store_id)
    with database(settings) as conn:
        report = checker.run(conn)
    if args.json:
        print_json(report.as_json())
    else:
        print_report(report)
    return EXIT_OK if report.ok else EXIT_PROBLEM


def print_report(report: Report) -> None:
    print(f"store:   {report.store}: {report.store_files} files"
          f"{', contents verified' if report.verified_hashes else ''}; "
          f"{report.references} references from rows")
    print(f"         id {report.store_id}" if report.store_id else
          "         no identity yet (a daemon gives it one at start)")
    for kind, text in (*PROBLEMS.items(), *INFO.items()):
        s = report[kind]
        if not s.count:
            continue
        fixed = f" ({s.repaired} repaired)" if report.repair and s.repaired else ""
        print(f"{s.count:>7}  {text}{fixed}")
        for example in s.examples[:10]:
            print("         " + _example_text(kind, example))
        if s.count > 10 and kind != "held_by_other_stores":  # its examples are per store
            print(f"         … and {s.count - 10} more (--json lists {EXAMPLES})")
    print("ok: nothing half-finished" if report.ok else
          "problems found" + ("" if report.repair else "; alfrd check --repair fixes what it "
                              "safely can"), file=sys.stdout)


def _example_text(kind: str, example: dict[str, Any]) -> str:
    if kind == "held_by_other_stores":
        return (f"held by store {example['store_id']} on host {example['hostname']} "
                f"(path {example['path']}): {example['rows']} rows")
    return ", ".join(f"{k}={v}" for k, v in example.items())
