"""The content-addressed store: each distinct content once, at store/ab/cd/<sha256>.

A stored file is always a private copy (or, where the filesystem has one, a reflink) of exactly
the bytes that were hashed, never a link to an inode that someone may still write: a writer
that kept the original open must not be able to change the archive after its row commits.
Bytes arrive through `receive`, which hashes while it copies into a temporary file in the store
root, and `adopt` then gives that file its content address.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .claim import rename_noreplace

FILE_MODE = 0o640
DIR_MODE = 0o750
READ_CHUNK = 1024 * 1024
TEMP_PREFIX = ".incoming-"
# FICLONE from <linux/fs.h>: _IOW(0x94, 9, int). Shares extents copy-on-write (btrfs, XFS with
# reflink=1, bcachefs); a later write to either file leaves the other as it was.
FICLONE = 0x40049409


class SourceReadError(Exception):
    """Reading the original failed (the store itself is fine); `error` is the OSError."""

    def __init__(self, error: OSError, size: int):
        super().__init__(str(error))
        self.error = error
        self.size = size


class SourceTooLarge(Exception):
    """The original grew past the limit while it was read."""

    def __init__(self, size: int):
        super().__init__(f"more than {size} bytes")
        self.size = size


@dataclass(frozen=True)
class Incoming:
    """A private temporary copy in the store, not yet at its content address."""

    path: Path
    sha256: str
    size: int
    cloned: bool  # a reflink, not a byte copy


class Store:
    def __init__(self, root: Path, *, fsync: bool = True, instance: str | None = None):
        self.root = root
        self.fsync = fsync
        # Temporary copies carry the writer's instance id (host-pid-token), so a daemon that
        # starts can remove those that a crashed daemon of this host left behind.
        self._temp_prefix = f"{TEMP_PREFIX}{instance}." if instance else TEMP_PREFIX
        self._reflinks = True  # until the filesystem says it has none

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        os.chmod(self.root, DIR_MODE)

    @staticmethod
    def relpath(sha256: str) -> str:
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def path(self, sha256: str) -> Path:
        return self.root / self.relpath(sha256)

    # --- taking bytes in -----------------------------------------------------------------------
    def receive(self, src_fd: int, *, limit: int, sync: bool) -> Incoming:
        """Copy (or reflink) everything `src_fd` holds into a private temporary file here,
        hashing exactly the bytes that end up in it. sync=True makes the copy durable before
        returning; otherwise the caller flushes (the committer syncs a whole batch at once).

        Raises SourceReadError / SourceTooLarge for problems of the original, OSError for
        problems of the store (disk full)."""
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=self._temp_prefix)
        path = Path(tmp)
        try:
            cloned = self._try_clone(src_fd, fd)
            if cloned:
                sha, size = _hash_fd(fd, limit)
            else:
                sha, size = _copy_hashing(src_fd, fd, limit)
            os.fchmod(fd, FILE_MODE)
            if sync:
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        os.close(fd)
        return Incoming(path, sha, size, cloned)

    def _try_clone(self, src_fd: int, dst_fd: int) -> bool:
        if not self._reflinks:
            return False
        try:
            fcntl.ioctl(dst_fd, FICLONE, src_fd)
        except OSError as exc:
            # EXDEV: the inbox is another filesystem; EOPNOTSUPP/EINVAL/ENOTTY: no reflinks
            # here. Neither changes, so stop asking. Anything else: copy this one file.
            if exc.errno in (errno.EXDEV, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOTTY,
                             errno.ENOSYS):
                self._reflinks = False
            return False
        return True

    def adopt(self, incoming: Incoming, *, sync: bool) -> str:
        """Give a received copy its content address (or drop it when that content is stored
        already). Returns the store-relative path."""
        dst = self.path(incoming.sha256)
        dst.parent.parent.mkdir(exist_ok=True, mode=DIR_MODE)  # parents=True would make
        dst.parent.mkdir(exist_ok=True, mode=DIR_MODE)  # the first level 0777 & ~umask
        try:
            rename_noreplace(incoming.path, dst)
        except FileExistsError:
            if _size_of(dst) != incoming.size:
                # A crash before the committer's flush can leave a name whose data never
                # reached the disk; no committed row can point at it (rows commit only after
                # the flush), so the complete copy replaces it.
                os.replace(incoming.path, dst)
            else:
                self.discard(incoming)
        except BaseException:
            self.discard(incoming)
            raise
        if sync:
            _fsync_dir(dst.parent)
        return self.relpath(incoming.sha256)

    def remove_dead_temporaries(self, hostname: str) -> int:
        """Remove temporary copies left by crashed daemons of this host (their process is gone;
        a live one's copies exist only while it reads and extracts a file). Those of other
        hosts sharing the store are left to `alfrd check`, which moves old ones aside."""
        removed = 0
        with os.scandir(self.root) as entries:
            for entry in entries:
                owner = temp_owner(entry.name)
                if owner is None or owner[0] != hostname or _process_alive(owner[1]):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
        return removed

    @staticmethod
    def discard(incoming: Incoming | None) -> None:
        if incoming is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(incoming.path)

    def put_file(self, src: Path, *, limit: int, sync: bool | None = None) -> tuple[str, Incoming]:
        """Receive and adopt a file by path (imports and tools, not the live inbox)."""
        sync = self.fsync if sync is None else sync
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            incoming = self.receive(fd, limit=limit, sync=sync)
        finally:
            os.close(fd)
        return self.adopt(incoming, sync=sync), incoming


def temp_owner(name: str) -> tuple[str, int] | None:
    """(hostname, pid) of the daemon that made a temporary copy named `name`, if it says."""
    if not name.startswith(TEMP_PREFIX):
        return None
    instance = name[len(TEMP_PREFIX):].rpartition(".")[0]
    host = instance.rpartition("-")[0]  # host-pid-token
    host, _, pid = host.rpartition("-")
    if not host or not pid.isdigit():
        return None
    return host, int(pid)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _copy_hashing(src_fd: int, dst_fd: int, limit: int) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    while True:
        try:
            chunk = os.read(src_fd, READ_CHUNK)
        except OSError as exc:
            raise SourceReadError(exc, size) from exc
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise SourceTooLarge(limit)
        h.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst_fd, view):]
    return h.hexdigest(), size


def _hash_fd(fd: int, limit: int) -> tuple[str, int]:
    """Hash our own clone from its start (nobody else holds it, so it cannot change)."""
    h = hashlib.sha256()
    size = 0
    offset = 0
    while chunk := os.pread(fd, READ_CHUNK, offset):
        offset += len(chunk)
        size += len(chunk)
        if size > limit:
            raise SourceTooLarge(limit)
        h.update(chunk)
    return h.hexdigest(), size


def _size_of(path: Path) -> int | None:
    try:
        return os.lstat(path).st_size
    except FileNotFoundError:
        return None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
