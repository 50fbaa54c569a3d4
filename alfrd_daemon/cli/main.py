"""The `alfrd` entry point: assembles the parser from the command modules beside it (each adds
its own subcommands through `register`) and turns the errors any command may meet into one
line and an exit code (cli/common.py defines the codes)."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

import psycopg

from alfrd_daemon import __version__
from alfrd_daemon.cli import (
    admin,
    check,
    config,
    documents,
    duckdb,
    edit,
    files,
    jobs,
    ocr,
    retry,
    rules,
    run,
    status,
    worker,
)
from alfrd_daemon.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_UNAVAILABLE,
    ArgumentParser,
    shown,
    text_path,
)
from alfrd_daemon.config.parse import ConfigError
from alfrd_daemon.db import pool as dbmod
from alfrd_daemon.db.cluster import ClusterError
from alfrd_daemon.logs import mask_dsn

DESCRIPTION = ("The `alfrd` command: run the daemon, and query or repair the archive from "
               "another shell.")
# In the order `alfrd --help` lists them.
COMMAND_MODULES = (run, worker, documents, files, edit, status, config, rules, retry, ocr,
                   admin, check, jobs, duckdb)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="alfrd", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"alfrd-daemon {__version__}")
    common = ArgumentParser(add_help=False)
    common.add_argument("--config", "-c", type=text_path, help="YAML file (default: "
                        "$ALFRD_CONFIG, /etc/alfrd/alfrd.yaml, ./config/alfrd.yaml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub, common)
    return parser


def _safe_output() -> None:
    """A name that is not UTF-8 printed to stdout must not end the command with a traceback."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):  # not a TextIOWrapper (tests)
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]


def main(argv: Sequence[str] | None = None) -> int:
    _safe_output()
    args = build_parser().parse_args(argv)
    command = "alfrd " + " ".join(
        str(getattr(args, key)) for key in ("command", "config_command", "jobs_command",
                                            "rules_command")
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
        if args.func in (run.cmd_run, worker.cmd_worker):  # they report their own start-up errors
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
