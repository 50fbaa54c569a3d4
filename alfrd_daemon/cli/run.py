"""`alfrd run`: the daemon in the foreground (what the systemd unit starts)."""

from __future__ import annotations

import argparse
import logging
import os

from alfrd_daemon.cli.common import Subcommands, settings_from
from alfrd_daemon.config.parse import find_config, world_readable_secret
from alfrd_daemon.logs import setup_logging


def register(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    # The daemon's wiring loads everything (watcher, extractors, jobs): only for `run`.
    from alfrd_daemon.service.daemon import Daemon

    settings = settings_from(args)
    setup_logging(args.log_level or settings.logging.level)
    path = find_config(args.config, os.environ)
    if world_readable_secret(path):
        logging.getLogger("alfrd").warning(
            "%s holds a database password and is readable by every user: chmod 640 it, or "
            "move the password to ALFRD_DATABASE_URL or a systemd credential", path)
    return Daemon(settings, config_path=args.config).run()
