"""`alfrd search`, `alfrd list` and `alfrd show`: the archive's documents, read-only."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from typing import Any

from alfrd_daemon.cli.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    MAX_ROWS,
    MAX_TEXT_CHARS,
    Subcommands,
    bad_argument,
    database,
    document_id,
    local_store_id,
    print_json,
    settings_from,
    tag_arg,
    utf8_text,
    whole_number,
)
from alfrd_daemon.cli.hooks_view import hook_run_lines, hook_runs_of
from alfrd_daemon.config.settings import Settings
from alfrd_daemon.db.queries import QUERIES, load_named_queries
from alfrd_daemon.db.search import DEFAULT_RANK_WINDOW, list_documents, search
from alfrd_daemon.db.search_filters import Filters, parse_day, parse_period
from alfrd_daemon.ingest.reconcile import stored_file_exists

STATUSES = ["pending", "extracted", "processing", "completed", "failed"]
_STORE_COLUMNS = ("store_id", "store_hostname", "store_path")


def register(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("search", parents=[common], help="full-text search",
                       description='Every word also finds the words it begins (invoic finds '
                       'invoices); "quoted words" match as a phrase, -word excludes, and '
                       '"a or b" accepts either.')
    p.add_argument("query", type=utf8_text)
    p.add_argument("--limit", type=whole_number(1, MAX_ROWS), default=20)
    _filter_arguments(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("list", parents=[common], help="newest documents first")
    p.add_argument("--limit", type=whole_number(1, MAX_ROWS), default=50)
    _filter_arguments(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", parents=[common], help="one document (id or id prefix)")
    p.add_argument("id", type=document_id)
    p.add_argument("--text-limit", type=whole_number(0, MAX_TEXT_CHARS), default=2000)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)


def _period_arg(text: str) -> tuple[date, date]:
    try:
        return parse_period(text)
    except ValueError:
        bad_argument(text, "a year, month or day: 2024, 2024-03 or 2024-03-05")


def _day_arg(text: str) -> date:
    try:
        return parse_day(text)
    except ValueError:
        bad_argument(text, "a date YYYY-MM-DD")


def _filter_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filters (all given must hold; trashed documents never show)")
    g.add_argument("--tag", type=tag_arg, action="append", default=[],
                   help="has this tag (repeat: has every one)")
    g.add_argument("--status", choices=STATUSES)
    g.add_argument("--type", type=utf8_text, help="document type (any case)")
    g.add_argument("--correspondent", type=utf8_text, help="correspondent (any case)")
    g.add_argument("--date", type=_period_arg, metavar="2024|2024-03|2024-03-05",
                   help="the document's date is in this year, month or day")
    # --from/--to: the same bounds under the names the date-range issue used for them.
    for name, alias, what in (("after", "from", "on or after"), ("before", "to", "on or before")):
        g.add_argument(f"--{name}", f"--{alias}", dest=name, type=_day_arg, metavar="YYYY-MM-DD",
                       help=f"the document's date (else its ingest date) is {what} this day")
        g.add_argument(f"--ingested-{name}", type=_day_arg, metavar="YYYY-MM-DD",
                       help=f"ingested {what} this day")


def _filters(args: argparse.Namespace) -> Filters:
    return Filters(tags=tuple(args.tag), status=args.status, document_type=args.type,
                   correspondent=args.correspondent, period=args.date, after=args.after,
                   before=args.before, ingested_after=args.ingested_after,
                   ingested_before=args.ingested_before)


def cmd_search(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with database(settings) as conn:
        found = search(conn, args.query, config=settings.search.language,
                       filters=_filters(args), limit=args.limit)
    results = [{"id": str(r["id"]), "name": r["original_name"], "tags": r["tags"],
                "status": r["status"], "rank": round(float(r["rank"]), 6),
                "document_type": r["document_type"], "correspondent": r["correspondent"],
                "document_date": r["document_date"], "created_at": r["created_at"],
                "snippet": r["snippet"].text,
                "matches": [list(m) for m in r["snippet"].matches]}
               for r in found.rows]
    if args.json:
        print_json(results)
        return EXIT_OK
    if not found.tsquery:
        print(f"nothing to search for in {args.query!r} (only punctuation or operators)",
              file=sys.stderr)
    elif not results:
        print(f"no documents match {args.query!r}")
    if found.broad:
        print(f"(more than {DEFAULT_RANK_WINDOW} documents match: ranked among the newest "
              f"{DEFAULT_RANK_WINDOW}; add words or filters to narrow it)", file=sys.stderr)
    bold = sys.stdout.isatty()
    for r, row in zip(results, found.rows, strict=True):
        tags = f"  [{', '.join(r['tags'])}]" if r["tags"] else ""
        print(f"{r['id']}  {r['rank']:.4f}  {r['name']}{tags}")
        snippet = row["snippet"]
        print(f"    {snippet.highlighted() if bold else snippet.text}")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with database(settings) as conn:
        rows = list_documents(conn, filters=_filters(args), limit=args.limit)
    if args.json:
        print_json([{**r, "id": str(r["id"])} for r in rows])
        return EXIT_OK
    for r in rows:
        extra = f"  ({r['error']})" if r["error"] else ""
        if r["status"] == "pending" and r["ocr_state"] in ("queued", "running"):
            extra = "  (waiting for OCR)" if r["ocr_state"] == "queued" else "  (OCR running)"
        tags = f"  [{', '.join(r['tags'])}]" if r["tags"] else ""
        print(f"{r['id']}  {r['created_at']:%Y-%m-%d %H:%M}  {r['status']:<9}  "
              f"{r['original_name']}{tags}{extra}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with database(settings) as conn:
        rows = conn.execute(QUERIES["show_document"], {
            "id": args.id, "prefix": args.id + "%", "text_limit": args.text_limit,
        }).fetchall()
        if len(rows) != 1:
            reason = "no document" if not rows else "more than one document"
            print(f"alfrd show: {reason} matches {args.id!r}", file=sys.stderr)
            return EXIT_PROBLEM
        row = rows[0]
        arrivals = conn.execute(QUERIES["document_arrivals"], {"id": row["id"]}).fetchall()
        ocr_job = conn.execute(load_named_queries("ocr.sql")["ocr_job_of"],
                               {"id": row["id"]}).fetchone()
        hooks = hook_runs_of(conn, row["id"])
    store = _holding_store(settings, row)
    doc = {**{k: v for k, v in row.items() if k not in _STORE_COLUMNS}, "id": str(row["id"]),
           "store": store, "arrivals": arrivals, "ocr_job": ocr_job,
           "hooks": hooks}
    if args.json:
        print_json(doc)
        return EXIT_OK
    if doc["deleted_at"] is not None:
        print(f"{'trash':>14}: deleted {doc['deleted_at']:%Y-%m-%d %H:%M}, removed "
              f"{settings.trash.keep_days} days after that; alfrd restore-deleted "
              f"{doc['id']} brings it back")
    manual = set(doc["user_fields"] or [])
    for key in ("id", "original_name", "source_path", "status", "tags", "mime_type",
                "size_bytes", "sha256", "stored_path", "title", "document_type",
                "correspondent", "document_date", "extractor", "error", "created_at",
                "updated_at"):
        if doc.get(key) not in (None, [], ""):
            mark = "  (set by hand)" if key in manual else ""
            print(f"{key:>14}: {doc[key]}{mark}")
    for key, text in (("rule_tags", "tags by rules"), ("user_removed_tags", "tags taken off")):
        if doc.get(key):
            print(f"{text:>14}: {', '.join(doc[key])}")
    _print_rules(doc.get("metadata") or {})
    for line in _date_lines(doc, manual):
        print(line)
    print(f"{'store':>14}: {_store_text(store)}")
    if ocr_job is not None:
        print(f"{'ocr':>14}: {_ocr_job_text(ocr_job)}")
    for line in hook_run_lines(hooks):
        print(f"{'hook':>14}: {line}" if not line.startswith("  |") else f"{'':>16}{line}")
    print(f"{'arrivals':>14}: {len(arrivals)}")
    for a in arrivals:
        print(f"{'':>16}{a['arrived_at']:%Y-%m-%d %H:%M:%S}  {a['outcome']:<9}  "
              f"{a['source_path']}")
    if doc["text"]:
        more = "" if doc["text_length"] <= args.text_limit else (
            f"\n… ({doc['text_length']} characters in all)")
        print(f"\n{doc['text']}{more}")
    return EXIT_OK


def _date_lines(doc: dict[str, Any], manual: set[str]) -> list[str]:
    """Where the document's date was read (unless the user set it) and the other candidates
    date detection kept."""
    meta = doc.get("metadata") or {}
    found = meta.get("date_found") if isinstance(meta, dict) else None
    suggestions = meta.get("date_suggestions") if isinstance(meta, dict) else None
    lines = []
    if (doc.get("document_date") is not None and "document_date" not in manual
            and isinstance(found, dict)):
        lines.append(f"{'date read':>14}: from the {found.get('source', 'text')}, "
                     f"{found.get('text')!r}")
    for i, s in enumerate(suggestions if isinstance(suggestions, list) else []):
        if isinstance(s, dict):
            label = "other dates" if i == 0 else ""
            lines.append(f"{label:>14}{':' if label else ' '} {s.get('date')} "
                         f"({s.get('precision')}, {s.get('source')}: {s.get('text')!r})")
    return lines


def _print_rules(meta: dict[str, Any]) -> None:
    """Which rules matched, on which words, and what they left undone."""
    matched = meta.get("rules")
    if not isinstance(matched, dict):
        return
    if not matched:
        print(f"{'rules':>14}: none matched")
    for i, (rule, words) in enumerate(matched.items()):
        shown = ", ".join(repr(w) for w in words) if isinstance(words, list) else ""
        print(f"{'rules' if i == 0 else '':>14}{':' if i == 0 else ' '} {rule} (on {shown})")
    for line in meta.get("rules_skipped") or []:
        print(f"{'':>16}skipped: {line}")
    for rule in meta.get("rules_timed_out") or {}:
        print(f"{'':>16}{rule}: a pattern ran out of time (counted as no match)")


def _holding_store(settings: Settings, doc: dict[str, Any]) -> dict[str, Any]:
    """Which store (host, path) holds a row's file, and whether it is this host's. A row from
    before stores had an identity belongs to whichever store has its file."""
    local_id, problem = local_store_id(settings)
    view: dict[str, Any] = {
        "id": str(doc["store_id"]) if doc["store_id"] else None,
        "hostname": doc["store_hostname"], "path": doc["store_path"],
        "recorded": doc["store_id"] is not None, "this_host": None}
    if view["recorded"] and problem is not None:
        view["error"] = f"cannot read this host's store identity: {problem}"
    elif view["recorded"]:
        view["this_host"] = view["id"] == local_id
    elif doc["stored_path"]:
        view["this_host"] = stored_file_exists(settings.store_path, settings.failed_path,
                                               doc["stored_path"])
    return view


def _store_text(store: dict[str, Any]) -> str:
    here = store["this_host"]
    if store["recorded"]:
        where = f"{store['id']} on host {store['hostname']} (path {store['path']})"
        whose = {True: "this host's store", False: "another host's store, not this host's",
                 None: "this host's store id is unknown"}[here]
    else:
        where = "not recorded (a row from before stores had an identity)"
        whose = {True: "its file is in this host's store",
                 False: "its file is not in this host's store", None: "no file recorded"}[here]
    return f"{where}; {whose}" + (f" ({store['error']})" if store.get("error") else "")


def _ocr_job_text(job: dict[str, Any]) -> str:
    state = {"queued": "waiting for OCR", "running": "being read by OCR", "done": "read by OCR",
             "failed": "OCR failed"}.get(job["state"], job["state"])
    parts = [state]
    if job["state"] == "running" and job["pages_total"]:
        parts.append(f"page {job['pages_done']} of {job['pages_total']}")
    if job["attempts"]:
        parts.append(f"attempts {job['attempts']}")
    if job["last_error"] and job["state"] != "done":
        parts.append(f"last error: {job['last_error']}")
    return "; ".join(parts)
