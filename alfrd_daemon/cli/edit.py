"""`alfrd tag`, `alfrd set`, `alfrd delete` and `alfrd restore-deleted`: the user's own edits.

Each edit locks its row (SELECT … FOR UPDATE) for its read-modify-write, so it is safe while
the daemon runs and when other hosts share the database; nothing is kept in the process. A
field the user sets is named in `user_fields`, and automatic runs (rules, date detection, OCR)
never write it again."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import Any

import psycopg
from psycopg.rows import DictRow

from alfrd_daemon.cli.common import (
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
    tag_arg,
    utf8_text,
)
from alfrd_daemon.cli.lookup import NotFound, find_document
from alfrd_daemon.db.queries import load_named_queries

Q = load_named_queries("userside.sql")

# `alfrd set` option -> documents column, which is also its name in user_fields.
FIELDS = {"title": "title", "type": "document_type", "correspondent": "correspondent",
          "date": "document_date"}
# The default of `alfrd set`'s options: None is a value there (it clears the field).
_UNSET: Any = object()


def register(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "tag", parents=[common],
        help="add (+tag) and take off (-tag) tags of a document; rules leave them so")
    p.add_argument("id", type=document_id)
    p.add_argument("changes", nargs=argparse.REMAINDER, metavar="+TAG|-TAG",
                   help="+name adds a tag, -name takes it off (-- before a tag that starts "
                        "with another dash); --json may follow")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_tag)

    p = sub.add_parser("set", parents=[common],
                       help="set a document's title, type, correspondent or date by hand")
    p.add_argument("id", type=document_id)
    p.add_argument("--title", type=clearable_text, default=_UNSET, help='"" clears it')
    p.add_argument("--type", type=clearable_text, default=_UNSET,
                   help='the document type; "" clears it')
    p.add_argument("--correspondent", type=clearable_text, default=_UNSET, help='"" clears it')
    p.add_argument("--date", type=date_or_none, default=_UNSET, metavar="YYYY-MM-DD|none",
                   help="the date on the document; none clears it")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_set)

    p = sub.add_parser("delete", parents=[common],
                       help="move documents to the trash (kept trash.keep_days, then pruned)")
    p.add_argument("ids", nargs="+", type=document_id, metavar="ID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_delete)

    p = sub.add_parser("restore-deleted", parents=[common],
                       help="take documents back out of the trash")
    p.add_argument("ids", nargs="+", type=document_id, metavar="ID")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_restore)


def clearable_text(text: str) -> str | None:
    return None if text == "" else utf8_text(text).strip()


def date_or_none(text: str) -> date | None:
    if text.strip().lower() == "none":
        return None
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        bad_argument(text, "a date YYYY-MM-DD, or none to clear it")


class Usage(Exception):
    pass


def parse_changes(tokens: list[str]) -> tuple[list[tuple[str, str]], bool, str | None]:
    """(('+'|'-', tag) in order, --json, --config) from what follows the id. argparse cannot
    take `-tag` as a value, so the words after the id are read here."""
    changes: list[tuple[str, str]] = []
    as_json, config = False, None
    it = iter(tokens)
    literal = False
    for token in it:
        if not literal and token == "--":
            literal = True
        elif not literal and token == "--json":
            as_json = True
        elif not literal and token == "--config":  # -c is the tag c taken off
            config = next(it, None)
            if config is None:
                raise Usage("--config needs a file")
        elif not literal and token.startswith("--config="):
            config = token.partition("=")[2]
        elif token[:1] in ("+", "-") and len(token) > 1:
            try:
                changes.append((token[0], tag_arg(token[1:])))
            except argparse.ArgumentTypeError as exc:
                raise Usage(f"argument +TAG|-TAG: {exc}") from None
        else:
            raise Usage(f"argument +TAG|-TAG: got {shown(token)}, expected +tag to add or "
                        "-tag to take off")
    if not changes:
        raise Usage("argument +TAG|-TAG: expected at least one +tag or -tag")
    return changes, as_json, config


def _added(values: list[str], item: str) -> list[str]:
    return values if item in values else [*values, item]


def _without(values: list[str], item: str) -> list[str]:
    return [v for v in values if v != item]


def apply_tags(row: dict[str, Any], changes: list[tuple[str, str]]) -> dict[str, Any]:
    """+x: the tag is the user's (a rule run that takes back its own tags leaves it), and no
    longer refused; -x: off, and refused to later rule runs."""
    tags, rule, removed = list(row["tags"]), list(row["rule_tags"]), \
        list(row["user_removed_tags"])
    for sign, tag in changes:
        rule = _without(rule, tag)
        if sign == "+":
            tags, removed = _added(tags, tag), _without(removed, tag)
        else:
            tags, removed = _without(tags, tag), _added(removed, tag)
    return {"id": row["id"], "tags": tags, "rule_tags": rule, "user_removed_tags": removed,
            "user_fields": _added(list(row["user_fields"]), "tags")}


def _locked_live(conn: psycopg.Connection[DictRow], ident: str, command: str) -> dict[str, Any]:
    doc = find_document(conn, ident)
    row = conn.execute(Q["lock_document"], {"id": doc["id"]}).fetchone()
    if row is None:
        raise NotFound(f"document {doc['id']} was removed meanwhile")
    if row["deleted_at"] is not None:
        raise NotFound(f"document {doc['id']} is in the trash (alfrd restore-deleted "
                       f"{doc['id']} brings it back before `alfrd {command}`)")
    return row


def cmd_tag(args: argparse.Namespace) -> int:
    try:
        changes, as_json, config = parse_changes(args.changes)
    except Usage as exc:
        print(f"alfrd tag: {exc} (see alfrd tag --help)", file=sys.stderr)
        return EXIT_USAGE
    args.json = args.json or as_json
    if config is not None:
        args.config = config
    settings = settings_from(args)
    with database(settings) as conn:
        try:
            with conn.transaction():
                row = _locked_live(conn, args.id, "tag")
                updated = conn.execute(Q["update_tags"], apply_tags(row, changes)).fetchone()
        except NotFound as exc:
            print(f"alfrd tag: {exc}", file=sys.stderr)
            return EXIT_PROBLEM
    assert updated is not None
    result = {**updated, "id": str(updated["id"])}
    if args.json:
        print_json(result)
    else:
        print(f"{result['id']}  tags: {', '.join(result['tags']) or '(none)'}")
    return EXIT_OK


def cmd_set(args: argparse.Namespace) -> int:
    given = {column: getattr(args, option) for option, column in FIELDS.items()
             if _given(args, option)}
    if not given:
        print("alfrd set: name at least one of --title, --type, --correspondent, --date (see "
              "alfrd set --help)", file=sys.stderr)
        return EXIT_USAGE
    settings = settings_from(args)
    with database(settings) as conn:
        try:
            with conn.transaction():
                row = _locked_live(conn, args.id, "set")
                fields = list(row["user_fields"])
                for column in given:
                    fields = _added(fields, column)
                updated = conn.execute(Q["update_fields"], {
                    **{c: row[c] for c in FIELDS.values()}, **given,
                    "user_fields": fields, "id": row["id"]}).fetchone()
        except NotFound as exc:
            print(f"alfrd set: {exc}", file=sys.stderr)
            return EXIT_PROBLEM
    assert updated is not None
    result = {**updated, "id": str(updated["id"]),
              "document_date": updated["document_date"].isoformat()
              if updated["document_date"] else None}
    if args.json:
        print_json(result)
    else:
        for column in FIELDS.values():
            mark = "  (set by hand)" if column in result["user_fields"] else ""
            print(f"{column:>14}: {result[column] if result[column] is not None else ''}{mark}")
    return EXIT_OK


def _given(args: argparse.Namespace, option: str) -> bool:
    return getattr(args, option) is not _UNSET


def cmd_delete(args: argparse.Namespace) -> int:
    return _trash_change(args, "delete", Q["trash_document"], "in the trash",
                         "already in the trash")


def cmd_restore(args: argparse.Namespace) -> int:
    return _trash_change(args, "restore-deleted", Q["restore_document"], "restored",
                         "not in the trash")


def _trash_change(args: argparse.Namespace, command: str, statement: str, done: str,
                  unchanged: str) -> int:
    settings = settings_from(args)
    results: list[dict[str, Any]] = []
    problems = 0
    with database(settings) as conn:
        for ident in dict.fromkeys(args.ids):
            try:
                doc = find_document(conn, ident)
            except NotFound as exc:
                results.append({"id": ident, "state": "error", "error": str(exc)})
                problems += 1
                continue
            with conn.transaction():
                changed = conn.execute(statement, {"id": doc["id"]}).fetchone()
            results.append({"id": str(doc["id"]), "name": doc["original_name"],
                            "state": done if changed else unchanged})
    if args.json:
        print_json(results)
    for r in results:
        if r["state"] == "error":
            print(f"alfrd {command}: {r['error']}", file=sys.stderr)
        elif not args.json:
            print(f"{r['id']}  {r['state']}  {r['name']}")
    return EXIT_PROBLEM if problems else EXIT_OK
