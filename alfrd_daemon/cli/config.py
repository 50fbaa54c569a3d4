"""`alfrd config check`: validate a configuration file the way a daemon start reads it."""

from __future__ import annotations

import argparse

from alfrd_daemon.cli.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    Subcommands,
    print_json,
    text_path,
)
from alfrd_daemon.config.parse import ConfigError, check_paths, load_settings
from alfrd_daemon.service.rules_check import check_rules


def register(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("config", help="configuration tools")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    c = csub.add_parser("check", parents=[common], help="validate a YAML file")
    c.add_argument("path", nargs="?", type=text_path)
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=cmd_config_check)


def cmd_config_check(args: argparse.Namespace) -> int:
    path = args.path or getattr(args, "config", None)
    try:
        settings = load_settings(path)
        check_rules(settings)
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
