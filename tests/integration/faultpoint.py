"""Run `alfrd` with one function patched to misbehave at an exact point.

    python -m tests.integration.faultpoint MODULE:ATTR[.ATTR] kill-before NTH ALFRD-ARGS...
    python -m tests.integration.faultpoint MODULE:ATTR[.ATTR] kill-after NTH ALFRD-ARGS...
    python -m tests.integration.faultpoint MODULE:ATTR[.ATTR] pause FLAGDIR ALFRD-ARGS...
    python -m tests.integration.faultpoint MODULE:ATTR[.ATTR] raise-if TEXT ALFRD-ARGS...

kill-before / kill-after: on the NTH call (counted across all threads) the process sends itself
SIGKILL before the real call runs or right after it returned: a crash in a precise window of
the ingest pipeline, which random kills hit only by luck. pause: the first call writes
FLAGDIR/paused and waits (at most 60 s) for FLAGDIR/go, so a test can act inside a window the
pipeline would otherwise pass in microseconds. raise-if: every call whose arguments mention
TEXT raises RuntimeError, as a bug would. Nothing in the daemon knows about this; the patch
lives only in this test process.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

MODES = ("kill-before", "kill-after", "pause", "raise-if")


def patch(target: str, mode: str, arg: str) -> None:
    module_name, _, attrs = target.partition(":")
    *path, name = attrs.split(".")
    owner: object = importlib.import_module(module_name)
    for attr in path:
        owner = getattr(owner, attr)
    original = getattr(owner, name)
    setattr(owner, name, functools.wraps(original)(_wrapper(original, name, mode, arg)))


def _wrapper(original: Callable[..., Any], name: str, mode: str, arg: str
             ) -> Callable[..., Any]:
    counter = itertools.count(1)
    lock = threading.Lock()
    first = threading.Event()

    def wrapper(*args: object, **kwargs: object) -> object:
        if mode in ("kill-before", "kill-after"):
            with lock:
                n = next(counter)
            if n == int(arg) and mode == "kill-before":
                os.kill(os.getpid(), signal.SIGKILL)
            result = original(*args, **kwargs)
            if n == int(arg):
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        if mode == "pause" and not first.is_set():
            first.set()
            flags = Path(arg)
            (flags / "paused").touch()
            deadline = time.monotonic() + 60
            while not (flags / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.02)
        elif mode == "raise-if" and any(arg in str(a) for a in (*args, *kwargs.values())):
            raise RuntimeError(f"injected fault in {name}")
        return original(*args, **kwargs)

    return wrapper


def main() -> int:
    target, mode, arg, *rest = sys.argv[1:]
    assert mode in MODES, mode
    patch(target, mode, arg)
    from alfrd_daemon.cli.main import main as alfrd_main

    return alfrd_main(rest)


if __name__ == "__main__":
    sys.exit(main())
