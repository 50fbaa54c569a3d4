"""`alfrd ocr --again ID…|--all`: read documents with OCR once more (after adding a language,
or a better engine). They go back to pending and into the queue; their current text stays
searchable until the new one replaces it."""

from __future__ import annotations

import argparse
import sys

from alfrd_daemon.cli.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    Subcommands,
    database,
    document_id,
    print_json,
    settings_from,
)
from alfrd_daemon.db.queries import load_named_queries


def register(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("ocr", parents=[common], help="read documents with OCR again")
    p.add_argument("ids", nargs="*", type=document_id, help="document ids (or their start)")
    p.add_argument("--again", action="store_true", required=True,
                   help="queue the documents for OCR once more")
    p.add_argument("--all", action="store_true", help="every document OCR has read")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_ocr)


def cmd_ocr(args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.all):
        print("alfrd ocr: name document ids or pass --all (not both)", file=sys.stderr)
        return EXIT_USAGE
    settings = settings_from(args)
    queries = load_named_queries("ocr.sql")
    with database(settings) as conn, conn.transaction():
        rows = conn.execute(queries["ocr_again"], {
            "all": bool(args.all), "prefixes": [i + "%" for i in args.ids]}).fetchall()
    queued = [{"id": str(r["id"]), "name": r["original_name"]} for r in rows]
    missing = [i for i in args.ids if not any(q["id"].startswith(i) for q in queued)]
    for i in missing:
        print(f"alfrd ocr: no document of a type OCR reads matches {i!r}", file=sys.stderr)
    if args.json:
        print_json(queued)
    else:
        for q in queued:
            print(f"queued for OCR: {q['id']}  {q['name']}")
        if args.all and not queued:
            print("no documents to read again")
    return EXIT_PROBLEM if missing else EXIT_OK
