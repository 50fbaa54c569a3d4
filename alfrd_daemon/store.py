"""The content-addressed store: each distinct content once, at store/ab/cd/<sha256>."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from pathlib import Path

FILE_MODE = 0o640
DIR_MODE = 0o750


class Store:
    def __init__(self, root: Path, *, fsync: bool = True):
        self.root = root
        self.fsync = fsync

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        os.chmod(self.root, DIR_MODE)

    @staticmethod
    def relpath(sha256: str) -> str:
        return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def path(self, sha256: str) -> Path:
        return self.root / self.relpath(sha256)

    def put(self, src: Path, sha256: str, *, data_synced: bool = False,
            sync: bool | None = None) -> str:
        """Make `src`'s content durable in the store; `src` itself stays where it is (the
        claimed copy is removed only after the database row is committed). A hard link when
        the store shares the inbox's filesystem and the file has no other name, else a copy.
        Returns the store-relative path. sync=False leaves flushing to the caller (the
        committer makes a whole batch durable with one syncfs)."""
        sync = self.fsync if sync is None else sync
        dst = self.path(sha256)
        if dst.exists():
            return self.relpath(sha256)
        dst.parent.parent.mkdir(exist_ok=True, mode=DIR_MODE)  # parents=True would make
        dst.parent.mkdir(exist_ok=True, mode=DIR_MODE)  # the first level 0777 & ~umask
        if os.lstat(src).st_nlink > 1:
            # The file has other names (a hard link from outside the inbox): linking would
            # share the inode with them, so chmod would change the user's file and a later
            # edit of it would change the archive.
            self._copy(src, dst, sync)
            if sync:
                _fsync_dir(dst.parent)
            return self.relpath(sha256)
        try:
            os.link(src, dst, follow_symlinks=False)
            os.chmod(dst, FILE_MODE)
            if sync and not data_synced:
                _fsync_file(dst)
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                raise
            self._copy(src, dst, sync)
        if sync:
            _fsync_dir(dst.parent)
        return self.relpath(sha256)

    def _copy(self, src: Path, dst: Path, sync: bool) -> None:
        fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
                shutil.copyfileobj(inp, out, 1024 * 1024)
                out.flush()
                if sync:
                    os.fsync(out.fileno())
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, dst)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
