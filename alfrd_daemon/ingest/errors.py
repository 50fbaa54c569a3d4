"""How a problem with one file is classified: permanent (the file goes to failed/), transient
(the machine's fault: it stays claimed and is retried) or still being written (read again)."""

from __future__ import annotations

import errno

# Disk full and friends: the file is fine, the machine is not; try again later.
TRANSIENT_OS_ERRORS = {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOMEM,
                       errno.EMFILE, errno.ENFILE}


class Permanent(Exception):
    """This file can never be ingested as it is; `reason` says why."""

    def __init__(self, reason: str, sha256: str | None = None, size: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.sha256 = sha256
        self.size = size


class Transient(Exception):
    """Not the file's fault (database away, disk full): keep it claimed and retry."""


class StillWriting(Exception):
    """The claimed file changed while it was read, or a writer still holds it: nothing is
    wrong with the machine, so intake goes on; this file is read again after a pause."""
