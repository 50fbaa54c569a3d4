"""`alfrd run`: the daemon in the foreground (what the systemd unit starts)."""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys

from alfrd_daemon.cli.common import EXIT_USAGE, Subcommands, settings_from, whole_number
from alfrd_daemon.config.parse import find_config, world_readable_secret
from alfrd_daemon.ingest.partition import Partition, parse_partition
from alfrd_daemon.logs import setup_logging

_TOKEN = re.compile(r"[0-9a-f]{2,32}")


def register(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    # How the daemon starts its other ingest processes (workers.processes); not for users.
    p.add_argument("--partition", type=partition_arg, help=argparse.SUPPRESS)
    p.add_argument("--parent-pid", type=whole_number(1, 2**22), help=argparse.SUPPRESS)
    p.add_argument("--instance-token", type=token_arg, help=argparse.SUPPRESS)
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
    if len({args.partition is None, args.parent_pid is None, args.instance_token is None}) > 1:
        print("alfrd run: --partition, --parent-pid and --instance-token go together (the "
              "daemon passes them to its own ingest processes)", file=sys.stderr)
        return EXIT_USAGE
    return Daemon(settings, config_path=args.config, partition=args.partition,
                  parent_pid=args.parent_pid, log_level=args.log_level,
                  instance_token=args.instance_token).run()


def token_arg(text: str) -> str:
    """The end of an instance id, which names the claim directory: a few hex digits."""
    if not _TOKEN.fullmatch(text):
        raise argparse.ArgumentTypeError(f"expected 2 to 32 hex digits, got {text!r}")
    return text


def partition_arg(text: str) -> Partition:
    try:
        return parse_partition(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
