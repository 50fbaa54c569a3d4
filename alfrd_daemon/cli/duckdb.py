"""`alfrd import-duckdb` and `alfrd export-duckdb`: the commands, their arguments and reports.

duckdb is an optional extra, imported only when one of these commands runs, so `alfrd` works
without it and says how to install it when asked for these two.
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg

from alfrd_daemon.cli.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    Subcommands,
    database,
    path_arg,
    print_json,
    settings_from,
    shown,
    whole_number,
)
from alfrd_daemon.progress import Progress

# --batch-size is rows per committed transaction, which runs next to the daemon: keep it short.
MAX_BATCH = 100_000
MAX_ROWS = 10**12  # --limit: beyond any ALFRD database, and within a BIGINT
INSTALL_HINT = ("needs the duckdb package, which is not installed: "
                "pip install 'alfrd-daemon[duckdb]'")


def register(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("import-duckdb", parents=[common],
                       help="import an ALFRD DuckDB database (idempotent, resumable)")
    p.add_argument("path", type=path_arg, help="ALFRD's .duckdb file (opened read-only)")
    p.add_argument("--dry-run", action="store_true",
                   help="do everything in a transaction that is rolled back; copy no files")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--timezone", default="UTC",
                   help="zone ALFRD's zone-less timestamps were written in (default UTC)")
    p.add_argument("--files-root", type=path_arg,
                   help="where ALFRD's files are now, if they moved from the paths it recorded")
    p.add_argument("--batch-size", type=whole_number(1, MAX_BATCH), default=200,
                   help="rows per committed transaction (default 200)")
    p.add_argument("--limit", type=whole_number(1, MAX_ROWS),
                   help="stop after reading this many rows (run again for the rest)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("export-duckdb", parents=[common],
                       help="write the archive to a DuckDB file in ALFRD's schema")
    p.add_argument("path", type=path_arg, help="DuckDB file to create")
    p.add_argument("--force", action="store_true", help="replace the file if it exists")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--timezone", default="UTC",
                   help="zone to write ALFRD's zone-less timestamps in (default UTC)")
    p.set_defaults(func=cmd_export)


def load_duckdb(command: str) -> ModuleType | None:
    try:
        import duckdb
    except ImportError:
        print(f"alfrd {command} {INSTALL_HINT}", file=sys.stderr)
        return None
    return duckdb


def _zone(name: str, command: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        print(f"alfrd {command}: argument --timezone: unknown time zone {shown(name)} (use a "
              "name such as UTC or Europe/Berlin)", file=sys.stderr)
        return None


# --- import ------------------------------------------------------------------------------------
def cmd_import(args: argparse.Namespace) -> int:
    from alfrd_daemon.legacy.importer import ImporterError, ImportOptions, run_import

    duckdb = load_duckdb("import-duckdb")
    if duckdb is None:
        return EXIT_UNAVAILABLE
    zone = _zone(args.timezone, "import-duckdb")
    if zone is None:
        return EXIT_USAGE
    source = args.path.expanduser().absolute()
    if not source.is_file():
        print(f"alfrd import-duckdb: argument path: got {shown(str(source))}, expected a "
              "DuckDB file", file=sys.stderr)
        return EXIT_USAGE
    if args.files_root is not None and not args.files_root.expanduser().is_dir():
        print(f"alfrd import-duckdb: argument --files-root: got {shown(str(args.files_root))}, "
              "expected a directory", file=sys.stderr)
        return EXIT_USAGE
    settings = settings_from(args)
    try:
        duck = duckdb.connect(str(source), read_only=True)
    except duckdb.Error as exc:
        print(f"alfrd import-duckdb: cannot open {source}: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    options = ImportOptions(
        source=source, zone=zone, search_config=settings.search.language,
        files_root=args.files_root.expanduser().absolute() if args.files_root else None,
        batch_size=args.batch_size, limit=args.limit, dry_run=args.dry_run)
    try:
        with database(settings) as conn:
            conn.autocommit = True
            report = run_import(conn, duck, options, settings, Progress())
    except ImporterError as exc:
        print(f"alfrd import-duckdb: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    except psycopg.OperationalError as exc:
        print(f"alfrd import-duckdb: interrupted by a database error ({exc}); what was "
              "committed stays, run the same command again to continue", file=sys.stderr)
        return EXIT_UNAVAILABLE
    finally:
        duck.close()
    if args.json:
        print_json(report.to_dict())
    else:
        print_import_report(report.to_dict())
    return EXIT_OK if report.verified else EXIT_PROBLEM


def print_import_report(r: dict[str, Any]) -> None:
    what = "dry run (nothing written)" if r["dry_run"] else "import"
    print(f"{what} of {r['source']}: {r['rows_read']} rows read in {r['seconds']:.1f} s "
          f"({r['rows_per_second'] or 0:,.0f} rows/s); ALFRD times read as {r['timezone']}")
    if not r["complete"]:
        print("stopped at --limit: run again to import the rest")
    print(f"{'table':<28}{'read':>8}{'imported':>10}{'already':>9}{'duplicate':>11}"
          f"{'merged':>8}{'bad id':>8}")
    for name, t in r["tables"].items():
        print(f"{name:<28}{t['read']:>8}{t['imported']:>10}{t['already_imported']:>9}"
              f"{t['duplicates']:>11}{t['merged']:>8}{t['rejected']:>8}")
    if r["missing_tables"]:
        print(f"tables not in the source: {', '.join(r['missing_tables'])}")
    print(f"files stored: {r['files_stored']}; files missing: {r['files_missing']}")
    for m in r["missing_files"]:
        print(f"  missing  {m['id']}  {m['path']}")
    for d in r["duplicates"]:
        print(f"  duplicate  {d['id']}  same content as {d['duplicate_of']}")
    for b in r["rejects"]:
        print(f"  bad id   {b['table']}  {b['id']!r}: {b['reason']} (kept in legacy_rejects)")
    for status, n in r["unknown_statuses"].items():
        print(f"  unknown ALFRD status {status!r} on {n} documents: imported as pending")
    print("verification:", "ok" if r["verified"] else "FAILED")
    for c in r["verification"]:
        mark = "ok" if c["ok"] else "FAILED"
        print(f"  {c['table']:<28}{c['found']}/{c['expected']} rows, checksum "
              f"{c['source_checksum'][:12]} / {c['destination_checksum'][:12]}, "
              f"rejects {c['rejected_found']}/{c['rejected_expected']}  {mark}")
        for row_id in c["missing_ids"]:
            print(f"    missing   {row_id}")
        for row_id in c["different_ids"]:
            print(f"    different {row_id}")


# --- export ------------------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from alfrd_daemon.legacy.exporter import Exporter, ExportRefused

    duckdb = load_duckdb("export-duckdb")
    if duckdb is None:
        return EXIT_UNAVAILABLE
    zone = _zone(args.timezone, "export-duckdb")
    if zone is None:
        return EXIT_USAGE
    target = args.path.expanduser().absolute()
    if target.exists() and not args.force:
        print(f"alfrd export-duckdb: {target} exists; pass --force to replace it",
              file=sys.stderr)
        return EXIT_PROBLEM
    settings = settings_from(args)
    try:
        with database(settings) as conn:
            conn.autocommit = True
            report = Exporter(conn, duckdb, zone=zone, store_root=settings.store_path,
                              progress=Progress()).export(target, force=args.force)
    except ExportRefused as exc:
        print(f"alfrd export-duckdb: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    except (duckdb.Error, OSError) as exc:
        print(f"alfrd export-duckdb: cannot write {target}: {exc}", file=sys.stderr)
        return EXIT_PROBLEM
    result = report.to_dict()
    if args.json:
        print_json(result)
    else:
        print(f"exported to {result['path']} in {result['seconds']:.1f} s; ALFRD times "
              f"written as {result['timezone']}")
        for name, t in result["tables"].items():
            extra = f", {t['from_rejects']} rejected rows restored" if t["from_rejects"] else ""
            extra += f", {t['skipped']} skipped (duplicate type_name)" if t["skipped"] else ""
            print(f"  {name:<28}{t['rows']:>8} rows{extra}  {'ok' if t['ok'] else 'FAILED'}")
        print("verification:", "ok" if result["verified"] else
              f"FAILED ({target} was not written)")
    return EXIT_OK if report.verified else EXIT_PROBLEM
