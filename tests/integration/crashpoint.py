"""Run `alfrd` with one function patched to kill -9 the process at an exact point.

    python -m tests.integration.crashpoint MODULE:ATTR[.ATTR] NTH before|after ALFRD-ARGS...

On the NTH call of the method (counted across all threads) the process sends itself SIGKILL,
either before the real call runs or right after it returned: a crash in a precise window of the
ingest pipeline (after the store link but before the commit, after the commit but before the
claimed copy is removed, ...), which random kills hit only by luck. Nothing in the daemon knows
about this; the patch lives only in this test process.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import os
import signal
import sys
import threading


def patch(target: str, nth: int, when: str) -> None:
    module_name, _, attrs = target.partition(":")
    *path, name = attrs.split(".")
    owner: object = importlib.import_module(module_name)
    for attr in path:
        owner = getattr(owner, attr)
    original = getattr(owner, name)
    counter = itertools.count(1)
    lock = threading.Lock()

    @functools.wraps(original)
    def wrapper(*args: object, **kwargs: object) -> object:
        with lock:
            n = next(counter)
        if n == nth and when == "before":
            os.kill(os.getpid(), signal.SIGKILL)
        result = original(*args, **kwargs)
        if n == nth and when == "after":
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    setattr(owner, name, wrapper)


def main() -> int:
    target, nth, when, *rest = sys.argv[1:]
    assert when in ("before", "after"), when
    patch(target, int(nth), when)
    from alfrd_daemon.cli.main import main as alfrd_main

    return alfrd_main(rest)


if __name__ == "__main__":
    sys.exit(main())
