"""The `hooks:` section of the YAML: the commands run after a document is committed
(post_ingest) and after its OCR is written (post_ocr), and how they run.

A command is an argv list, or a string split like a shell would split words (shlex) but
never run through a shell, so a document's name can never become shell syntax. The program
must exist and be executable when the configuration is loaded: a typo shows up at start and
in `alfrd config check`, not as a failure recorded on every document.
"""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass

from alfrd_daemon.config.reader import Reader, integer, number

HOOK_NAMES = ("post_ingest", "post_ocr")
COMMAND_EXPECTED = ("a command (a list of arguments, or a string split into words like a "
                    "shell would, never run by one)")


@dataclass(frozen=True)
class HooksSettings:
    post_ingest: tuple[str, ...] | None = None
    post_ocr: tuple[str, ...] | None = None
    timeout_seconds: float = 60.0
    workers: int = 1  # threads of the daemon that run hooks, each one command at a time
    retries: int = 0  # more runs after a failure (0: a failure is recorded, not retried)

    def commands(self) -> dict[str, tuple[str, ...]]:
        """The configured hooks by name."""
        found = {"post_ingest": self.post_ingest, "post_ocr": self.post_ocr}
        return {name: argv for name, argv in found.items() if argv}


def command(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            argv = shlex.split(value)
        except ValueError as exc:  # an unclosed quote
            raise ValueError(f"{COMMAND_EXPECTED}; it does not split: {exc}") from exc
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        argv = list(value)
    else:
        raise ValueError(COMMAND_EXPECTED)
    if not argv or not argv[0] or any("\0" in a for a in argv):
        raise ValueError(COMMAND_EXPECTED)
    program = argv[0]
    if os.sep in program:
        if not os.path.isabs(program):
            raise ValueError("an absolute path to the program, or a name found in PATH")
        if not os.path.isfile(program):
            raise ValueError("an executable file (it does not exist)")
        if not os.access(program, os.X_OK):
            raise ValueError("an executable file (it is not executable)")
    else:
        found = shutil.which(program)
        if found is None:
            raise ValueError("a program found in PATH, or an absolute path to one")
    return tuple(argv)


def parse_hooks(h: Reader) -> HooksSettings:
    hooks = HooksSettings(
        post_ingest=h.get("post_ingest", command),
        post_ocr=h.get("post_ocr", command),
        timeout_seconds=h.get("timeout_seconds", number(0.1, 86400), "seconds"),
        workers=h.get("workers", integer(1, 64)),
        retries=h.get("retries", integer(0, 100)),
    )
    h.finish()
    return hooks
