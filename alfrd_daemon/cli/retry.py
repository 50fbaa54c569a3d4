"""`alfrd retry`: put failed files back into the inbox, so the daemon judges them anew."""

from __future__ import annotations

import argparse
import re
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
from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.ingest.failed import FailedFolder

_DOCUMENT_ID = re.compile(r"^[0-9a-f][0-9a-f-]{3,35}$")  # at least 4 characters of an id


def register(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("retry", parents=[common],
                       help="put failed files back into the inbox; queue failed OCR again")
    p.add_argument("names", nargs="*", type=text_path,
                   help="paths inside the failed folder, or ids of documents whose OCR failed")
    p.add_argument("--all", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_retry)


def cmd_retry(args: argparse.Namespace) -> int:
    """Put failed files back into the inbox; their failed rows go, so they are judged anew.
    Documents whose OCR failed stay in the store: they are queued for OCR again (a name that
    is no file of the failed folder may be such a document's id)."""
    settings = settings_from(args)
    failed = FailedFolder(settings.failed_path)
    notes = dict(failed.notes()) if settings.failed_path.is_dir() else {}
    names = list(notes) if args.all else [n for n in args.names if n in notes]
    others = [] if args.all else [n for n in args.names if n not in notes]
    if not args.all and not args.names:
        print("alfrd retry: name failed files (see alfrd status) or pass --all",
              file=sys.stderr)
        return EXIT_USAGE
    from alfrd_daemon.jobs.retry import take_back_failed  # shared with the retry-failed job

    with database(settings) as conn:
        outcome = take_back_failed(settings, conn, names) if names else None
        ids = [n.strip().lower() for n in others if _DOCUMENT_ID.match(n.strip().lower())]
        with conn.transaction():
            ocr_rows = conn.execute(load_named_queries("ocr.sql")["ocr_retry_failed"], {
                "all": bool(args.all), "prefixes": [i + "%" for i in ids]}).fetchall() \
                if args.all or ids else []
    moved = outcome.moved if outcome is not None else []
    missing = list(outcome.missing) if outcome is not None else []
    requeued = [{"id": str(r["id"]), "name": r["original_name"]} for r in ocr_rows]
    missing += [n for n in others if not any(q["id"].startswith(n.strip().lower())
                                             for q in requeued)]
    for name in missing:
        print(f"alfrd retry: {shown(name)} is not in {settings.failed_path} nor a document "
              "whose OCR failed", file=sys.stderr)
    if args.json:
        print_json(moved + [{"ocr_again": q["id"], "name": q["name"]} for q in requeued])
    else:
        for m in moved:
            print(f"back in the inbox: {m['inbox_path']}")
        for q in requeued:
            print(f"queued for OCR again: {q['id']}  {q['name']}")
        if args.all and not moved and not requeued:
            print("nothing to retry: the failed folder is empty and no OCR failed")
    return EXIT_OK if not missing else EXIT_PROBLEM
