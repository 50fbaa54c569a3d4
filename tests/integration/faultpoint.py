"""Run `alfrd` with one function patched to pause, or to fail, at an exact point.

    python -m tests.integration.faultpoint MODULE:ATTR pause FLAGDIR ALFRD-ARGS...
    python -m tests.integration.faultpoint MODULE:ATTR raise-if TEXT ALFRD-ARGS...

pause: the first call writes FLAGDIR/paused and waits (at most 60 s) for FLAGDIR/go before the
real call runs, so a test can act inside a window the pipeline would otherwise pass in
microseconds (between a commit and the release of the claimed copy, say). raise-if: every call
whose arguments mention TEXT raises RuntimeError, as a bug would. Nothing in the daemon knows
about this; the patch lives only in this test process.
"""

from __future__ import annotations

import functools
import importlib
import sys
import threading
import time
from pathlib import Path


def patch(target: str, mode: str, arg: str) -> None:
    module_name, _, attrs = target.partition(":")
    *path, name = attrs.split(".")
    owner: object = importlib.import_module(module_name)
    for attr in path:
        owner = getattr(owner, attr)
    original = getattr(owner, name)
    first = threading.Event()

    @functools.wraps(original)
    def wrapper(*args: object, **kwargs: object) -> object:
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

    setattr(owner, name, wrapper)


def main() -> int:
    target, mode, arg, *rest = sys.argv[1:]
    assert mode in ("pause", "raise-if"), mode
    patch(target, mode, arg)
    from alfrd_daemon.cli.main import main as alfrd_main

    return alfrd_main(rest)


if __name__ == "__main__":
    sys.exit(main())
