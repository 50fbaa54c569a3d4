"""Does anyone still have this file open for writing? Asked of the kernel, where it can tell.

A read lease (fcntl F_SETLEASE, F_RDLCK) is granted only while no process holds the file open
for writing, so trying to take one and letting it go at once answers the question for local
filesystems. It needs the file's owner or CAP_LEASE (the systemd unit grants it), and NFS, SMB
and FUSE do not support leases: there the answer is "unknown" and the caller falls back to close
events, settle times and the check that a claimed file is unchanged since it was read.

While a lease is held, a process that opens the file for writing makes the kernel send SIGIO
to the lease holder, whose default action ends the process: `ignore_lease_breaks` must be called
from the main thread before any lease is taken, and leases are refused until it was.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import signal
import threading
from collections.abc import Iterator

_ready = False


def ignore_lease_breaks() -> bool:
    """Ignore SIGIO (only the main thread may set a handler). True when leases may be used."""
    global _ready
    if signal.getsignal(signal.SIGIO) == signal.SIG_IGN:
        _ready = True
    elif threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGIO, signal.SIG_IGN)
        _ready = True
    return _ready


def writer_open(fd: int) -> bool | None:
    """True when some process has the file of `fd` (opened read-only) open for writing, False
    when none has, None when the kernel cannot tell us."""
    with read_lease(fd) as held:
        return None if held is None else not held


@contextlib.contextmanager
def read_lease(fd: int) -> Iterator[bool | None]:
    """Hold a read lease on `fd` for the block: True (no writer can be or become active while
    it is held: an open for writing waits for us), False (a writer has it open), None (leases
    unavailable here)."""
    if not _ready:
        yield None
        return
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        # EAGAIN: open for writing somewhere. EACCES: neither owner nor CAP_LEASE. EINVAL:
        # the filesystem has no leases (NFS, FUSE) or fd is not read-only.
        yield False if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK) else None
        return
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
