"""The `alfrd` command: run the daemon, and query or repair the archive from another shell."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NoReturn
from uuid import UUID

import psycopg
from psycopg.rows import dict_row

from alfrd_daemon import __version__
from alfrd_daemon.config.parse import (
    ConfigError,
    check_paths,
    find_config,
    load_settings,
)
from alfrd_daemon.config.parse import world_readable_secret as config_world_readable
from alfrd_daemon.config.settings import Settings
from alfrd_daemon.db import pool as dbmod
from alfrd_daemon.db.cluster import ClusterError
from alfrd_daemon.db.search import DEFAULT_RANK_WINDOW, search
from alfrd_daemon.ingest.failed import FailedFolder
from alfrd_daemon.logs import mask_dsn, setup_logging
from alfrd_daemon.pgsafe import display_text

# Exit codes of every `alfrd` command, defined here once (jobcli and duckdb_io import them);
# README.md has the same table.
EXIT_OK = 0           # done
EXIT_PROBLEM = 1      # ran and found or hit a problem: invalid config, no such document, file
#                       or backup, a check that found problems, a failed job or import
EXIT_UNAVAILABLE = 2  # the database (or an optional component such as duckdb) is not there
EXIT_USAGE = 64       # a bad argument (sysexits EX_USAGE; argparse's own 2 is taken above)
EXIT_BUSY = 75        # another run holds the job's lock: try again later (EX_TEMPFAIL)
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_CODES = {
    EXIT_OK: "done",
    EXIT_PROBLEM: "the command ran and found or hit a problem (invalid configuration, no such "
                  "document, file or backup, a check that found problems, a failed job or "
                  "import)",
    EXIT_UNAVAILABLE: "the database, or an optional component the command needs, is not "
                      "available",
    EXIT_USAGE: "a bad argument",
    EXIT_BUSY: "another run holds the job's lock",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C)",
}

# Arguments that become SQL LIMITs or text lengths: positive, and within PostgreSQL's int4.
MAX_ROWS = 1_000_000
MAX_TEXT_CHARS = 1_000_000_000

Command = Callable[[argparse.Namespace], int]


# --- argument types: each refuses what would fail later, with one line naming the argument ---
class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors and EXIT_USAGE (argparse's own code, 2, is taken by
    EXIT_UNAVAILABLE). Subparsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


_ESCAPED_BYTE = re.compile(r"\\udc([89a-f][0-9a-f])")


def shown(text: str) -> str:
    """An argument as it appears in a message: quoted, control characters escaped, bytes that
    are not UTF-8 (surrogate escapes in Python's argv) as \\xNN, passwords masked."""
    return mask_dsn(_ESCAPED_BYTE.sub(r"\\x\1", repr(text)))


def bad_argument(text: str, expected: str) -> NoReturn:
    raise argparse.ArgumentTypeError(f"got {shown(text)}, expected {expected}")


def whole_number(minimum: int, maximum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:  # also past int()'s digit limit
            bad_argument(text, f"a whole number from {minimum} to {maximum}")
        if not minimum <= value <= maximum:
            bad_argument(text, f"a whole number from {minimum} to {maximum}")
        return value

    return parse


def seconds_arg(minimum: float, maximum: float) -> Callable[[str], float]:
    expected = f"a number of seconds from {minimum:.0f} to {maximum:.0f}"

    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            bad_argument(text, expected)
        if not minimum <= value <= maximum:  # NaN fails both comparisons
            bad_argument(text, expected)
        return value

    return parse


def utf8_text(text: str) -> str:
    """Text PostgreSQL can receive: argv that is not UTF-8 reaches Python as surrogate escapes,
    which no driver can encode."""
    if not text.strip():
        bad_argument(text, "some text")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        byte = os.fsencode(text[exc.start])[0]
        bad_argument(text, f"UTF-8 text (byte 0x{byte:02x} at character {exc.start + 1} is not; "
                      "set your terminal or locale to UTF-8)")
    return text


def tag_arg(text: str) -> str:
    """A tag as the daemon stores it: folder names that are not UTF-8 keep their bytes as
    \\xNN, and tags are NFC, so `--tag` finds the folder whose name was typed."""
    tag = unicodedata.normalize("NFC", display_text(text)).strip()
    if not tag:
        bad_argument(text, "a tag (a folder name)")
    return tag


_DOCUMENT_ID = re.compile(r"^[0-9a-f-]{1,36}$")


def document_id(text: str) -> str:
    value = text.strip().lower()
    if not _DOCUMENT_ID.match(value) or value.strip("-") == "":
        bad_argument(text, "a document id or the start of one (hex digits and dashes)")
    return value


def path_arg(text: str) -> Path:
    """Any non-empty path; names that are not UTF-8 are valid file names and stay as they are
    (argv cannot hold NUL)."""
    if not text:
        bad_argument(text, "a path")
    return Path(text)


def text_path(text: str) -> str:
    """path_arg for commands that take the path as text (names in the failed folder, a backup
    name or path, --config)."""
    return str(path_arg(text))


def conninfo_arg(text: str) -> str:
    """A libpq URL or key=value string that libpq can parse (an empty one would silently mean
    libpq's defaults)."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    utf8_text(text)
    try:
        conninfo_to_dict(text)
    except ProgrammingError:
        bad_argument(text, "a PostgreSQL URL such as postgresql://user@host/db")
    return text


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, UUID | Path):
        return str(value)
    raise TypeError(type(value).__name__)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def print_json(data: object) -> None:
    """JSON on stdout. A file name that is not UTF-8 holds surrogate escapes; they are written
    as \\udcNN escapes, which keeps the output valid UTF-8 and json.loads gives the name back."""
    text = json.dumps(data, default=_json_default, ensure_ascii=False, indent=2)
    text = _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    sys.stdout.write(text + "\n")


def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[psycopg.Connection]:
    """One connection for a CLI command; starts (then stops) the embedded server if the
    daemon is not running it."""
    from alfrd_daemon.db.target import resolve_database, stop_embedded_if_unused

    target = resolve_database(settings, start_embedded=False)
    started_here = False
    if target.cluster is not None and not target.cluster.running():
        target.cluster.start()
        target.cluster.ensure_database("alfrd")
        started_here = True
    try:
        with dbmod.connect(target.conninfo, connect_timeout=settings.database.connect_timeout,
                           row_factory=dict_row) as conn:
            dbmod.migrate(conn)
            yield conn
    finally:
        if started_here:
            stop_embedded_if_unused(target)


# --- commands ------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace) -> int:
    from alfrd_daemon.service.daemon import Daemon

    settings = settings_from(args)
    setup_logging(args.log_level or settings.logging.level)
    path = find_config(args.config, os.environ)
    if config_world_readable(path):
        import logging

        logging.getLogger("alfrd").warning(
            "%s holds a database password and is readable by every user: chmod 640 it, or "
            "move the password to ALFRD_DATABASE_URL or a systemd credential", path)
    return Daemon(settings, config_path=args.config).run()


def cmd_search(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with database(settings) as conn:
        rows, broad = search(conn, args.query, config=settings.search.language, tag=args.tag,
                             limit=args.limit)
    results = [{"id": str(r["id"]), "name": r["original_name"], "tags": r["tags"],
                "status": r["status"], "rank": round(float(r["rank"]), 6),
                "snippet": " ".join(r["snippet"].split()), "created_at": r["created_at"]}
               for r in rows]
    if args.json:
        print_json(results)
        return EXIT_OK
    if not results:
        print(f"no documents match {args.query!r}")
    if broad:
        print(f"(more than {DEFAULT_RANK_WINDOW} documents match: ranked among the newest "
              f"{DEFAULT_RANK_WINDOW}; add words or --tag to narrow it)", file=sys.stderr)
    for r in results:
        tags = f"  [{', '.join(r['tags'])}]" if r["tags"] else ""
        print(f"{r['id']}  {r['rank']:.4f}  {r['name']}{tags}")
        print(f"    {r['snippet']}")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with database(settings) as conn:
        rows = conn.execute(dbmod.QUERIES["list_documents"], {
            "status": args.status, "tag": args.tag, "limit": args.limit}).fetchall()
    if args.json:
        print_json([{**r, "id": str(r["id"])} for r in rows])
        return EXIT_OK
    for r in rows:
        extra = f"  ({r['error']})" if r["error"] else ""
        tags = f"  [{', '.join(r['tags'])}]" if r["tags"] else ""
        print(f"{r['id']}  {r['created_at']:%Y-%m-%d %H:%M}  {r['status']:<9}  "
              f"{r['original_name']}{tags}{extra}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with database(settings) as conn:
        rows = conn.execute(dbmod.QUERIES["show_document"], {
            "id": args.id, "prefix": args.id + "%", "text_limit": args.text_limit,
        }).fetchall()
        if len(rows) != 1:
            reason = "no document" if not rows else "more than one document"
            print(f"alfrd show: {reason} matches {args.id!r}", file=sys.stderr)
            return EXIT_PROBLEM
        doc = rows[0]
        arrivals = conn.execute(dbmod.QUERIES["document_arrivals"], {"id": doc["id"]}).fetchall()
    store = _holding_store(settings, doc)
    doc = {**{k: v for k, v in doc.items() if k not in _STORE_COLUMNS}, "id": str(doc["id"]),
           "store": store, "arrivals": arrivals}
    if args.json:
        print_json(doc)
        return EXIT_OK
    for key in ("id", "original_name", "source_path", "status", "tags", "mime_type",
                "size_bytes", "sha256", "stored_path", "title", "extractor", "error",
                "created_at", "updated_at"):
        if doc.get(key) not in (None, [], ""):
            print(f"{key:>14}: {doc[key]}")
    print(f"{'store':>14}: {_store_text(store)}")
    print(f"{'arrivals':>14}: {len(arrivals)}")
    for a in arrivals:
        print(f"{'':>16}{a['arrived_at']:%Y-%m-%d %H:%M:%S}  {a['outcome']:<9}  "
              f"{a['source_path']}")
    if doc["text"]:
        more = "" if doc["text_length"] <= args.text_limit else (
            f"\n… ({doc['text_length']} characters in all)")
        print(f"\n{doc['text']}{more}")
    return EXIT_OK


_STORE_COLUMNS = ("store_id", "store_hostname", "store_path")


def _local_store_id(settings: Settings) -> tuple[str | None, str | None]:
    """(this host's store id or None if it has none yet, why it could not be read)."""
    from alfrd_daemon.ingest.store import Store

    try:
        return Store(settings.store_path).read_identity(), None
    except OSError as exc:
        return None, f"{exc.filename or settings.store_path}: {exc.strerror or exc}"


def _holding_store(settings: Settings, doc: dict[str, Any]) -> dict[str, Any]:
    """Which store (host, path) holds a row's file, and whether it is this host's. A row from
    before stores had an identity belongs to whichever store has its file."""
    from alfrd_daemon.ingest.reconcile import stored_file_exists

    local_id, problem = _local_store_id(settings)
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


def _stores_view(settings: Settings, conn: psycopg.Connection) -> list[dict[str, Any]]:
    local_id, _problem = _local_store_id(settings)
    return [{"id": str(r["id"]) if r["id"] else None, "hostname": r["hostname"],
             "path": r["path"], "documents": r["documents"], "first_seen": r["first_seen"],
             "last_seen": r["last_seen"], "this_host": r["id"] is not None
             and str(r["id"]) == local_id}
            for r in conn.execute(dbmod.QUERIES["list_stores"])
            if r["id"] is not None or r["documents"]]


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
                                   conn.execute(dbmod.QUERIES["count_by_status"])}
            report["arrivals"] = {r["outcome"]: r["n"] for r in
                                  conn.execute(dbmod.QUERIES["count_arrivals_by_outcome"])}
            report["daemons"] = [_instance_view(r) for r in
                                 conn.execute(dbmod.QUERIES["list_instances"])]
            report["stores"] = _stores_view(settings, conn)
            report["jobs"] = _job_status(conn, settings)
    except (dbmod.DatabaseUnavailable, psycopg.OperationalError) as exc:
        report["database"] = {"state": "unreachable", "error": mask_dsn(str(exc))}
    if args.json:
        print_json(report)
    else:
        _print_status(report)
    return EXIT_OK if report["database"]["state"] == "ok" else EXIT_UNAVAILABLE


def _instance_view(row: dict[str, Any]) -> dict[str, Any]:
    age = row["heartbeat_age"].total_seconds()
    running = row["stopped_at"] is None and age < 60
    return {"instance": row["instance"], "hostname": row["hostname"], "pid": row["pid"],
            "running": running, "started_at": row["started_at"],
            "heartbeat_age_seconds": round(age, 1), "stopped_at": row["stopped_at"],
            **{k: v for k, v in row["state"].items()}}


def _job_status(conn: psycopg.Connection, settings: Settings) -> list[dict[str, Any]]:
    """Scheduled-job history, once the jobs migration has created it."""
    exists = conn.execute("SELECT to_regclass('job_runs') IS NOT NULL AS e").fetchone()
    if not exists or not exists["e"]:
        return []
    from alfrd_daemon.jobs.runner import job_status

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
        if d["running"]:
            print(f"daemon:    {d['instance']} running; queue {d.get('queue_depth', '?')}, "
                  f"watcher {d.get('watch_mode', '?')} "
                  f"{'ok' if d.get('watcher_alive') else 'DOWN'}, health {d.get('health')}, "
                  f"ingested {d.get('ingested', 0)}, failed {d.get('failed', 0)}"
                  + (f", WAITING: {d['last_transient']}" if d.get("last_transient") else ""))
        else:
            print(f"daemon:    {d['instance']} not running (last seen "
                  f"{d['heartbeat_age_seconds']:.0f} s ago)")
    for job in report.get("jobs", []):
        print(f"job:       {job['job']}: last {job.get('last_outcome') or 'never run'}"
              f" at {job.get('last_finished') or '-'}; next {job.get('next_run') or '-'}")


def cmd_config_check(args: argparse.Namespace) -> int:
    path = args.path or getattr(args, "config", None)
    try:
        settings = load_settings(path)
    except ConfigError as exc:
        if args.json:
            print_json({"valid": False, "source": exc.source, "problems": exc.problems})
        else:
            for p in exc.problems:
                print(f"{exc.source}: {p}")
        return EXIT_PROBLEM
    problems = check_paths(settings)
    if args.json:
        print_json({"valid": not problems, "source": settings.source, "problems": problems})
    else:
        for p in problems:
            print(f"{settings.source}: {p}")
        if not problems:
            print(f"{settings.source}: ok")
    return EXIT_PROBLEM if problems else EXIT_OK


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


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with database(settings) as conn:
        print("schema is up to date" if not dbmod.pending_migrations(conn) else "pending")
    return EXIT_OK


# --- parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="alfrd", description=__doc__)
    parser.add_argument("--version", action="version", version=f"alfrd-daemon {__version__}")
    common = ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", type=text_path, help="YAML file (default: "
                        "$ALFRD_CONFIG, /etc/alfrd/alfrd.yaml, ./config/alfrd.yaml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("search", parents=[common], help="full-text search")
    p.add_argument("query", type=utf8_text)
    p.add_argument("--limit", type=whole_number(1, MAX_ROWS), default=20)
    p.add_argument("--tag", type=tag_arg)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("list", parents=[common], help="newest documents first")
    p.add_argument("--limit", type=whole_number(1, MAX_ROWS), default=50)
    p.add_argument("--status", choices=["pending", "extracted", "processing", "completed",
                                        "failed"])
    p.add_argument("--tag", type=tag_arg)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("show", parents=[common], help="one document (id or id prefix)")
    p.add_argument("id", type=document_id)
    p.add_argument("--text-limit", type=whole_number(0, MAX_TEXT_CHARS), default=2000)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_show)

    p = sub.add_parser("status", parents=[common], help="counts, daemons, failures, jobs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    c = csub.add_parser("check", parents=[common], help="validate a YAML file")
    c.add_argument("path", nargs="?", type=text_path)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_config_check)

    p = sub.add_parser("retry", parents=[common], help="put failed files back into the inbox")
    p.add_argument("names", nargs="*", type=text_path, help="paths inside the failed folder")
    p.add_argument("--all", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_retry)

    p = sub.add_parser("migrate", parents=[common], help="apply database migrations")
    p.set_defaults(func=cmd_migrate)

    for register in extra_commands():
        register(sub, common)
    return parser


def extra_commands() -> list[Callable[[Any, argparse.ArgumentParser], None]]:
    """Subcommands that live in their own modules (jobs, checks, DuckDB import/export)."""
    found = []
    for module in ("check", "jobs", "duckdb_io"):
        name = f"alfrd_daemon.{module}"
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a missing dependency inside the module is a real error
                raise
            continue
        if hasattr(mod, "register_cli"):
            found.append(mod.register_cli)
    return found


def _safe_output() -> None:
    """A name that is not UTF-8 printed to stdout must not end the command with a traceback."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):  # not a TextIOWrapper (tests)
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]


def main(argv: Sequence[str] | None = None) -> int:
    _safe_output()
    args = build_parser().parse_args(argv)
    command = "alfrd " + " ".join(
        str(getattr(args, key)) for key in ("command", "config_command", "jobs_command")
        if getattr(args, key, None))
    try:
        return int(args.func(args))
    except ConfigError as exc:
        for p in exc.problems:
            print(f"{exc.source}: {p}", file=sys.stderr)
        return EXIT_PROBLEM
    except dbmod.DatabaseUnavailable as exc:
        print(f"{command}: database unavailable: {mask_dsn(_one_line(exc))}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except BrokenPipeError:
        return EXIT_OK
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (psycopg.OperationalError, ClusterError, OSError) as exc:
        if args.func is cmd_run:  # the daemon reports its own start-up errors
            raise
        return _expected_failure(command, exc)


def _expected_failure(command: str, exc: Exception) -> int:
    """The database going away mid-command, the embedded server failing to start, a folder the
    user may not read: one line, not a traceback."""
    if isinstance(exc, psycopg.OperationalError):
        print(f"{command}: database unavailable: {mask_dsn(_one_line(exc))}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    if isinstance(exc, ClusterError):
        print(f"{command}: embedded PostgreSQL: {_one_line(exc)}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    assert isinstance(exc, OSError)
    named = isinstance(exc.filename, str | bytes | os.PathLike)
    where = f"{shown(os.fsdecode(exc.filename))}: " if named else ""
    print(f"{command}: {where}{exc.strerror or exc}", file=sys.stderr)
    return EXIT_PROBLEM


def _one_line(exc: Exception) -> str:
    """libpq's messages span lines (the error, then a hint); one line keeps logs greppable."""
    return " ".join(str(exc).split()) or type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
