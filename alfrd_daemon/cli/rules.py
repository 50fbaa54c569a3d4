"""`alfrd rules test FILE|ID` (what the rules would do, nothing written) and `alfrd rules
apply [--all | --since DATE | ID…]` (run them again over stored documents)."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from pathlib import Path
from typing import Any

from alfrd_daemon.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_USAGE,
    Subcommands,
    bad_argument,
    database,
    document_id,
    print_json,
    settings_from,
    shown,
    whole_number,
)
from alfrd_daemon.config.settings import Settings
from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.extract.api import ExtractLimits, PermanentExtractionError
from alfrd_daemon.extract.dispatch import extract
from alfrd_daemon.ingest.paths import tags_for
from alfrd_daemon.jobs.rules_apply import (
    FIRST_ID,
    ApplyStats,
    apply_all,
    apply_batch,
    count,
    resolve_ids,
)
from alfrd_daemon.pgsafe import display_text
from alfrd_daemon.progress import Progress
from alfrd_daemon.rules.apply import Outcome, apply_rules
from alfrd_daemon.rules.model import Document, RuleSet
from alfrd_daemon.rules.stored import document_from_row
from alfrd_daemon.service.rules_check import check_rules

Q = load_named_queries("rules.sql")
_ID_PREFIX = re.compile(r"^[0-9a-f-]{1,36}$")


def since_arg(text: str) -> dt.datetime:
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        bad_argument(text, "a date such as 2024-03-05 (or 2024-03-05T14:00)")
    return value if value.tzinfo else value.astimezone()


def full_id(text: str) -> str:
    value = document_id(text)
    if len(value) != 36:
        bad_argument(text, "a whole document id (36 characters, as alfrd list prints it)")
    return value


def register(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("rules", help="test and apply the classification rules")
    rsub = p.add_subparsers(dest="rules_command", required=True, metavar="SUBCOMMAND")
    t = rsub.add_parser("test", parents=[common],
                        help="what the rules would do to a file or a stored document")
    t.add_argument("target", help="a file, or a document id (or its start)")
    t.add_argument("--folder", default="", help="the inbox subfolder to pretend a file is in")
    t.add_argument("--json", action="store_true")
    t.set_defaults(func=cmd_test)
    a = rsub.add_parser("apply", parents=[common], help="run the rules over stored documents")
    a.add_argument("ids", nargs="*", type=document_id, help="document ids (or their start)")
    a.add_argument("--all", action="store_true", help="every document")
    a.add_argument("--since", type=since_arg, help="documents ingested since this date")
    a.add_argument("--from-id", type=full_id, default=FIRST_ID,
                   help="resume after this id (printed by an interrupted run)")
    a.add_argument("--batch-size", type=whole_number(1, 10_000), default=500)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=cmd_apply)


# --- test -----------------------------------------------------------------------------------
def _explain(out: Outcome) -> dict[str, Any]:
    return {"matched": out.matched, "tags": out.tags, "rule_tags": out.rule_tags,
            "document_type": out.document_type, "correspondent": out.correspondent,
            "title": out.title, "set_by": out.set_by, "skipped": out.skipped,
            "vetoed": out.vetoed, "timed_out": out.timed_out}


def _file_document(settings: Settings, path: Path, folder: str) -> Document:
    e = settings.extract
    limits = ExtractLimits(timeout_seconds=e.timeout_seconds, max_text_chars=e.max_text_chars,
                           max_pdf_pages=e.max_pdf_pages, memory_limit_mb=e.memory_limit_mb,
                           pdf_min_page_chars=settings.ocr.pdf_min_page_chars)
    x = extract(path, limits)
    relpath = f"{folder.strip('/')}/{path.name}" if folder.strip("/") else path.name
    tags = tags_for(relpath, subdirs_as_tags=settings.inbox.subdirs_as_tags)
    return Document(text=x.text, original_name=display_text(path.name),
                    source_path=display_text(relpath), tags=tags, title=x.title,
                    ingested=dt.date.today())


def cmd_test(args: argparse.Namespace) -> int:
    path = Path(args.target)
    is_file = path.is_file()
    prefix = args.target.strip().lower()
    if not is_file and (not _ID_PREFIX.match(prefix) or not prefix.strip("-")):
        print(f"alfrd rules test: got {shown(args.target)}, expected an existing file or a "
              "document id (or its start)", file=sys.stderr)
        return EXIT_USAGE
    settings = settings_from(args)
    ruleset = check_rules(settings)
    if is_file:
        try:
            doc = _file_document(settings, path, args.folder)
        except PermanentExtractionError as exc:
            print(f"alfrd rules test: {args.target}: {exc.reason}", file=sys.stderr)
            return EXIT_PROBLEM
        what = str(path)
    else:
        with database(settings) as conn:
            rows = conn.execute(Q["rules_find_ids"], {"id": prefix, "prefix": prefix + "%"}
                                ).fetchall()
            if len(rows) != 1:
                reason = "no file or document" if not rows else "more than one document"
                print(f"alfrd rules test: {reason} matches {args.target!r}", file=sys.stderr)
                return EXIT_PROBLEM
            # Read without the lock: nothing is written.
            row = conn.execute(Q["rules_read_one"], {"id": rows[0]["id"]}).fetchone()
        assert row is not None
        doc, what = document_from_row(row), str(row["id"])
    out = apply_rules(doc, ruleset)
    result = {"target": what, "rules": len(ruleset.rules), **_explain(out)}
    if args.json:
        print_json(result)
        return EXIT_OK
    _print_test(result)
    return EXIT_OK


def _print_test(r: dict[str, Any]) -> None:
    print(f"{r['target']}: {len(r['matched'])} of {r['rules']} rules match")
    for rule, words in r["matched"].items():
        print(f"  {rule}: matched on {', '.join(repr(w) for w in words) or '(no words)'}")
    for rule, word in r["vetoed"].items():
        print(f"  {rule}: not applied: `none` word {word!r} found")
    for rule, patterns in r["timed_out"].items():
        print(f"  {rule}: ran out of time on {', '.join(patterns)} (counted as no match)")
    for key in ("document_type", "correspondent", "title", "tags"):
        value = r[key]
        if value not in (None, []):
            by = r["set_by"].get(key)
            print(f"{key:>14}: {', '.join(value) if isinstance(value, list) else value}"
                  + (f"  (rule {by!r})" if by else ""))
    for line in r["skipped"]:
        print(f"  skipped: {line}")
    print("(nothing written)")


# --- apply ----------------------------------------------------------------------------------
def cmd_apply(args: argparse.Namespace) -> int:
    chosen = sum([bool(args.ids), bool(args.all), args.since is not None])
    if chosen != 1:
        print("alfrd rules apply: name document ids, or pass --all or --since DATE (one of "
              "them)", file=sys.stderr)
        return EXIT_USAGE
    settings = settings_from(args)
    ruleset = check_rules(settings)
    with database(settings) as conn:
        conn.commit()
        conn.autocommit = True  # every batch is a transaction of its own
        if args.ids:
            ids, bad = resolve_ids(conn, args.ids)
            for prefix in bad:
                print(f"alfrd rules apply: no single document matches {prefix!r}",
                      file=sys.stderr)
            stats = ApplyStats()
            for start in range(0, len(ids), args.batch_size):
                apply_batch(conn, ids[start:start + args.batch_size], ruleset, stats)
            return _report(args, stats, EXIT_PROBLEM if bad else EXIT_OK)
        return _apply_all(args, conn, ruleset)


def _apply_all(args: argparse.Namespace, conn: Any, ruleset: RuleSet) -> int:
    progress = Progress(enabled=not args.json)
    progress.start("applying rules", count(conn, after=args.from_id, since=args.since))
    stats = ApplyStats(last_id=args.from_id)
    try:
        apply_all(conn, ruleset, since=args.since, after=args.from_id,
                  batch_size=args.batch_size, on_batch=lambda _, n: progress.advance(n),
                  stats=stats)
    except KeyboardInterrupt:
        print(f"\nalfrd rules apply: interrupted after {stats.documents} documents; resume "
              f"with --from-id {stats.last_id}", file=sys.stderr)
        return EXIT_INTERRUPTED
    progress.finish()
    return _report(args, stats, EXIT_OK)


def _report(args: argparse.Namespace, stats: ApplyStats, code: int) -> int:
    if args.json:
        print_json(stats.as_dict())
        return code
    print(f"rules applied to {stats.documents} documents, {stats.changed} changed"
          + (f", {stats.timed_out} with a pattern that ran out of time"
             if stats.timed_out else ""))
    for rule, n in sorted(stats.matched.items()):
        print(f"  {rule}: {n}")
    return code
