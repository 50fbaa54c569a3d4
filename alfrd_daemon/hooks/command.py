"""Running one hook command: its environment, a time limit enforced on its whole process
group, and the tail of its output, bounded.

The command runs in a session of its own (setsid), so at the time limit one killpg takes
every process it started, grandchildren included, unless one of them left the session on
purpose; the output reader then stops waiting for them after a short grace.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

OUTPUT_MAX_BYTES = 4000  # the tail of stdout and stderr kept in the log and hook_runs
_READ_CHUNK = 65536
_AFTER_KILL_SECONDS = 2.0  # how long the output reader may take once the group is killed
# Carries the run's lease token into the hook's environment, so the processes of a run whose
# daemon was killed can be found (and ended) before the run is taken again.
LEASE_VARIABLE = "ALFRD_HOOK_LEASE"


@dataclass(frozen=True)
class HookResult:
    exit_code: int | None  # None: it did not start, or was killed at the time limit
    error: str | None  # None: it succeeded
    output: str  # the tail of stdout and stderr together
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


def hook_environment(base: Mapping[str, str], hook: str, doc: Mapping[str, object],
                     path: str) -> dict[str, str]:
    """The daemon's environment plus what the hook is about; a field the document lacks is
    an empty string, so a script can test it without `set -u` tripping."""

    def text(value: object) -> str:
        if value is None:
            return ""
        if isinstance(value, date):
            return value.isoformat()
        return str(value)

    tags = doc.get("tags") or []
    assert isinstance(tags, list | tuple)
    env = dict(base)
    env.update({
        "ALFRD_HOOK": hook,
        "ALFRD_DOCUMENT_ID": text(doc.get("document_id")),
        "ALFRD_DOCUMENT_PATH": path,
        "ALFRD_DOCUMENT_NAME": text(doc.get("original_name")),
        "ALFRD_DOCUMENT_TITLE": text(doc.get("title")),
        "ALFRD_DOCUMENT_TAGS": ",".join(str(t) for t in tags),
        "ALFRD_DOCUMENT_TYPE": text(doc.get("document_type")),
        "ALFRD_DOCUMENT_CORRESPONDENT": text(doc.get("correspondent")),
        "ALFRD_DOCUMENT_DATE": text(doc.get("document_date")),
        "ALFRD_DOCUMENT_MIME": text(doc.get("mime_type")),
        "ALFRD_DOCUMENT_STATUS": text(doc.get("status")),
    })
    # The environment cannot hold NUL; a name with one (never valid UTF-8 text in PostgreSQL
    # anyway) is cut there rather than failing the run.
    return {k: v.split("\0", 1)[0] for k, v in env.items()}


class _Tail:
    """Reads a pipe to its end, keeping only the last OUTPUT_MAX_BYTES."""

    def __init__(self, fd: int):
        self.data = bytearray()
        self.thread = threading.Thread(target=self._read, args=(fd,), daemon=True,
                                       name="alfrd-hook-output")
        self.thread.start()

    def _read(self, fd: int) -> None:
        with contextlib.suppress(OSError):
            while chunk := os.read(fd, _READ_CHUNK):
                self.data += chunk
                if len(self.data) > 2 * OUTPUT_MAX_BYTES:
                    del self.data[:-OUTPUT_MAX_BYTES]

    def text(self) -> str:
        tail = bytes(self.data[-OUTPUT_MAX_BYTES:])
        return tail.decode("utf-8", errors="replace").replace("\0", "")


def run_hook(argv: Sequence[str], env: Mapping[str, str], timeout: float,
             stop: threading.Event | None = None) -> HookResult:
    """Run `argv` to its end or to `timeout`, whichever comes first. `stop` cuts it short
    too (the daemon stopping): the result then has error 'interrupted'."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=dict(env), cwd="/",
                                start_new_session=True, close_fds=True)
    except OSError as exc:
        return HookResult(None, f"cannot start {argv[0]}: {exc.strerror or exc}", "",
                          time.monotonic() - started)
    assert proc.stdout is not None
    tail = _Tail(proc.stdout.fileno())
    deadline = started + timeout
    error: str | None = None
    pause = 0.005
    while not _exited(proc.pid):
        if stop is not None and stop.is_set():
            error = "interrupted: the daemon stopped while the hook ran"
            break
        left = deadline - time.monotonic()
        if left <= 0:
            error = f"killed after the time limit of {timeout:g} s"
            break
        time.sleep(min(pause, left))
        pause = min(2 * pause, 0.1)
    # The hook at its limit, or what it left behind when it exited: its whole group. The
    # leader is not reaped yet, so the group's id cannot have been reused by anyone else.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    tail.thread.join(_AFTER_KILL_SECONDS)
    if not tail.thread.is_alive():  # else a process that left the group holds the pipe
        with contextlib.suppress(OSError):
            proc.stdout.close()
    code = proc.returncode
    if error is None and code != 0:
        error = (f"exited with status {code}" if code > 0
                 else f"killed by signal {signal.Signals(-code).name}"
                 if -code in signal.valid_signals() else f"exited with status {code}")
    return HookResult(code if error is None or code >= 0 else None, error, tail.text(),
                      time.monotonic() - started)


def kill_leftovers(lease: str, proc_root: Path = Path("/proc")) -> int:
    """End the process groups of processes that still run for the run `lease` (a hook of a
    daemon that was killed: its session outlived it). Found by the lease token in their
    environment, which only that run's processes carry, so a reused pid is never hit.
    Returns how many processes matched."""
    needle = f"{LEASE_VARIABLE}={lease}".encode()
    found = 0
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if needle not in environ.split(b"\0"):
            continue
        found += 1
        with contextlib.suppress(ProcessLookupError, PermissionError):
            group = os.getpgid(int(entry.name))
            if group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)
    return found


def _exited(pid: int) -> bool:
    """True once the child has exited, leaving it unreaped (WNOWAIT)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True
