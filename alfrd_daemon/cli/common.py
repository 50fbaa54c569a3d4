"""What every `alfrd` command shares: the exit codes, the argument types, JSON output, the
settings and one database connection."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import NoReturn, TypeAlias
from uuid import UUID

import psycopg
from psycopg.rows import DictRow, dict_row

from alfrd_daemon.config.parse import load_settings
from alfrd_daemon.config.settings import Settings
from alfrd_daemon.db import pool as dbmod
from alfrd_daemon.db.migrations import migrate
from alfrd_daemon.db.target import resolve_database, stop_embedded_if_unused
from alfrd_daemon.ingest.store import Store
from alfrd_daemon.logs import mask_dsn
from alfrd_daemon.pgsafe import display_text

# Exit codes of every `alfrd` command, defined here once; README.md has the same table.
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


# --- argument types: each refuses what would fail later, with one line naming the argument ---
class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors and EXIT_USAGE (argparse's own code, 2, is taken by
    EXIT_UNAVAILABLE). Subparsers inherit the class."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


# What `add_subparsers` returns: each command module adds its commands to it. argparse names
# the class only privately, and it is generic only to the type checker, hence the string.
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"

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


# --- output ---------------------------------------------------------------------------------
def _json_default(value: object) -> object:
    if isinstance(value, date):  # datetime too
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


# --- settings and the database --------------------------------------------------------------
def settings_from(args: argparse.Namespace) -> Settings:
    return load_settings(getattr(args, "config", None))


@contextlib.contextmanager
def database(settings: Settings) -> Iterator[psycopg.Connection[DictRow]]:
    """One connection for a CLI command; starts (then stops) the embedded server if the
    daemon is not running it."""
    target = resolve_database(settings, start_embedded=False)
    started_here = False
    if target.cluster is not None and not target.cluster.running():
        target.cluster.start()
        target.cluster.ensure_database("alfrd")
        started_here = True
    try:
        with dbmod.connect(target.conninfo, connect_timeout=settings.database.connect_timeout,
                           row_factory=dict_row) as conn:
            migrate(conn)
            yield conn
    finally:
        if started_here:
            stop_embedded_if_unused(target)


def local_store_id(settings: Settings) -> tuple[str | None, str | None]:
    """(this host's store id or None if it has none yet, why it could not be read)."""
    try:
        return Store(settings.store_path).read_identity(), None
    except OSError as exc:
        return None, f"{exc.filename or settings.store_path}: {exc.strerror or exc}"
