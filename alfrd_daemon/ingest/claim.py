"""The claim area: a file is ours once we renamed it into our own claim directory.

rename(2) is atomic, so when several daemons race for one inbox file exactly one rename
succeeds and the others see ENOENT. Each daemon owns `.alfrd/claimed/<instance>/` and holds an
flock on `<instance>.lock` for its lifetime; a claim directory whose lock can be taken belongs
to a daemon that died, and its files are adopted. The relative path is kept inside the claim
directory, so a claimed file still knows where it came from after a crash.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

from alfrd_daemon.ingest.folderdoc import META_NAME
from alfrd_daemon.ingest.writers import read_lease

_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)


def rename_noreplace(src: Path, dst: Path) -> None:
    """rename(2) that fails with FileExistsError instead of replacing dst."""
    if _renameat2 is not None:
        rc = _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst),
                        _RENAME_NOREPLACE)
        if rc == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(err, os.strerror(err), str(src), None, str(dst))
    # Filesystems without RENAME_NOREPLACE: dst lives in a directory only we write to.
    if os.path.lexists(dst):
        raise FileExistsError(errno.EEXIST, "File exists", str(dst))
    os.rename(src, dst)


@dataclass(frozen=True)
class FileIdentity:
    """What fstat says of a file at one moment: any write, truncate, chmod or replacement
    since changes at least one field (ctime moves on every change of the inode)."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileIdentity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Release(Enum):
    RELEASED = "released"
    CHANGED = "changed"  # not the bytes that were read: ingest it again
    WRITER_OPEN = "writer_open"  # unchanged so far, but a writer may still change it


class ClaimBusy(Exception):
    """The same relative path is still claimed by us (an earlier file waiting for a retry)."""


class ClaimArea:
    def __init__(self, inbox: Path, instance: str):
        self.inbox = inbox
        self.root = inbox / ".alfrd" / "claimed"
        self.instance = instance
        self.dir = self.root / instance
        self._lock_fd: int | None = None
        self._made_dirs: set[Path] = set()

    @property
    def lock_path(self) -> Path:
        return self.root / f"{self.instance}.lock"

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._lock_and_make_dir()

    def _lock_and_make_dir(self) -> int:
        # Lock first, directory second: another daemon that sees our directory must find its
        # lock held, or it would take us for dead and adopt (and remove) our claim directory.
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.dir.mkdir(parents=True, exist_ok=True)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def lost(self) -> bool:
        """Our lock file or claim directory is no longer where others look for it (the inbox
        was deleted or replaced under us): a daemon starting now would take us for dead."""
        if self._lock_fd is None:
            return False
        try:
            held = os.fstat(self._lock_fd)
            there = os.stat(self.lock_path)
        except OSError:
            return True
        same = (held.st_dev, held.st_ino) == (there.st_dev, there.st_ino)
        return held.st_nlink == 0 or not same or not self.dir.is_dir()

    def reopen(self) -> None:
        """Take a fresh lock and claim directory in the inbox now at our path. Never creates
        the inbox itself (FileNotFoundError while it is missing): that is the operator's."""
        (self.inbox / ".alfrd").mkdir(exist_ok=True)
        self.root.mkdir(exist_ok=True)
        fd = self._lock_and_make_dir()
        old, self._lock_fd = self._lock_fd, fd
        self._made_dirs.clear()  # they went with the old inbox
        if old is not None:
            os.close(old)

    def close(self) -> None:
        """Forget an empty claim directory; leave one that still holds files for adoption."""
        self.prune_empty_dirs(self.dir)
        with contextlib.suppress(OSError):
            self.dir.rmdir()
            self.lock_path.unlink()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def path(self, relpath: str) -> Path:
        return self.dir / relpath

    def claim(self, relpath: str) -> Path | None:
        """Move inbox/relpath into our claim directory. None when it is gone (another daemon
        claimed it, or the user removed it)."""
        target = self.dir / relpath
        parent = target.parent
        if parent not in self._made_dirs:
            parent.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(parent)
        try:
            rename_noreplace(self.inbox / relpath, target)
        except FileNotFoundError:
            if not parent.is_dir():  # pruned under us: make it again next time
                self._made_dirs.discard(parent)
            return None
        except FileExistsError as exc:
            raise ClaimBusy(relpath) from exc
        return target

    def release_unchanged(self, relpath: str, read: FileIdentity) -> Release:
        """Forget a claimed file only if it is still exactly what was read. Where the kernel
        grants a read lease, nobody can open the file for writing between the check and the
        unlink (the open waits for the lease), so no later write can be lost with it."""
        target = self.dir / relpath
        try:
            fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return Release.RELEASED
        try:
            with read_lease(fd) as held:
                if FileIdentity.of(os.fstat(fd)) != read:
                    return Release.CHANGED
                if held is False:
                    return Release.WRITER_OPEN
                os.unlink(target)
                return Release.RELEASED
        finally:
            os.close(fd)

    def release(self, relpath: str) -> None:
        """The claimed file is recorded and stored: forget it."""
        target = self.dir / relpath
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()

    def claimed(self) -> Iterator[str]:
        """Relative paths of everything in our claim directory (files, and folder documents
        as one entry each)."""
        yield from walk_claims(self.dir)

    def dead_instances(self) -> list[Path]:
        """Claim directories whose owner no longer holds its lock."""
        dead: list[Path] = []
        if not self.root.is_dir():
            return dead
        for entry in self.root.iterdir():
            if entry.name == self.instance or not entry.is_dir():
                continue
            lock = self.root / f"{entry.name}.lock"
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            dead.append(entry)
            os.close(fd)
        return dead

    def adopt(self, dead_dir: Path) -> list[str]:
        """Move a dead daemon's claims into ours; returns what we now hold. A path we already
        hold stays where it is and is adopted on a later pass."""
        adopted = []
        for rel in list(walk_claims(dead_dir)):
            target = self.dir / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                rename_noreplace(dead_dir / rel, target)
            except (FileExistsError, FileNotFoundError):
                continue
            adopted.append(rel)
        self.prune_empty_dirs(dead_dir)
        with contextlib.suppress(OSError):
            dead_dir.rmdir()
            (self.root / f"{dead_dir.name}.lock").unlink()
        return adopted

    @staticmethod
    def prune_empty_dirs(top: Path) -> None:
        for dirpath, _dirs, _files in os.walk(top, topdown=False):
            if Path(dirpath) != top:
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)


def walk_claims(top: Path) -> Iterator[str]:
    """Relative paths of the claims below `top` (one claim directory): files, symbolic links,
    and folder documents (a folder holding meta.json) as one entry each."""
    for dirpath, dirs, files in os.walk(top):
        here = Path(dirpath)
        if here != top and META_NAME in files:
            dirs.clear()
            yield str(here.relative_to(top))
            continue
        for name in files:
            yield str((here / name).relative_to(top))
        for name in list(dirs):
            if (here / name).is_symlink():
                dirs.remove(name)
                yield str((here / name).relative_to(top))
