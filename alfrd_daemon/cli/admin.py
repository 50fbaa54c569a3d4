"""`alfrd migrate`: bring the database schema up to date."""

from __future__ import annotations

import argparse

from alfrd_daemon.cli.common import EXIT_OK, Subcommands, database, settings_from
from alfrd_daemon.db.migrations import pending_migrations


def register(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("migrate", parents=[common], help="apply database migrations")
    p.set_defaults(func=cmd_migrate)


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with database(settings) as conn:  # opening the connection applies the migrations
        print("schema is up to date" if not pending_migrations(conn) else "pending")
    return EXIT_OK
