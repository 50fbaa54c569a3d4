"""`alfrd worker`: run only the OCR workers, against the daemon's database and store (the
same configuration file; what the systemd unit alfrd-worker.service starts)."""

from __future__ import annotations

import argparse

from alfrd_daemon.cli.common import Subcommands, bad_argument, settings_from
from alfrd_daemon.config.reader import LISTEN_EXPECTED, split_listen
from alfrd_daemon.logs import setup_logging


def register(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("worker", parents=[common],
                       help="run only the OCR workers (another host, same database and store)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--metrics-listen", metavar="HOST:PORT", type=_listen,
                   help="serve the OCR metrics for Prometheus here (metrics.listen is the "
                   "daemon's)")
    p.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    from alfrd_daemon.service.ocr_worker import OcrWorker  # loads the OCR stage: only here

    settings = settings_from(args)
    setup_logging(args.log_level or settings.logging.level)
    return OcrWorker(settings, metrics_listen=args.metrics_listen).run()


def _listen(text: str) -> str:
    try:
        split_listen(text)
    except ValueError:
        bad_argument(text, LISTEN_EXPECTED.removeprefix("expected "))
    return text
