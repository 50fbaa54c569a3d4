"""`alfrd retry`: put failed files back into the inbox, so the daemon judges them anew."""

from __future__ import annotations

import argparse
import sys

from alfrd_daemon.cli.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    Subcommands,
    database,
    print_json,
    settings_from,
    shown,
    text_path,
)
from alfrd_daemon.ingest.failed import FailedFolder


def register(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("retry", parents=[common], help="put failed files back into the inbox")
    p.add_argument("names", nargs="*", type=text_path, help="paths inside the failed folder")
    p.add_argument("--all", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_retry)


def cmd_retry(args: argparse.Namespace) -> int:
    """Put failed files back into the inbox; their failed rows go, so they are judged anew."""
    settings = settings_from(args)
    failed = FailedFolder(settings.failed_path)
    notes = dict(failed.notes()) if settings.failed_path.is_dir() else {}
    names = list(notes) if args.all else args.names
    if not names:
        print("alfrd retry: name failed files (see alfrd status) or pass --all",
              file=sys.stderr)
        return EXIT_USAGE
    from alfrd_daemon.jobs.retry import take_back_failed  # shared with the retry-failed job

    with database(settings) as conn:
        outcome = take_back_failed(settings, conn, names)
    for name in outcome.missing:
        print(f"alfrd retry: {shown(name)} is not in {settings.failed_path}", file=sys.stderr)
    moved = outcome.moved
    if args.json:
        print_json(moved)
    else:
        for m in moved:
            print(f"back in the inbox: {m['inbox_path']}")
    return EXIT_OK if len(moved) == len(names) else EXIT_PROBLEM
