"""The content-addressed store: each distinct content once, at store/ab/cd/<sha256>.

Each store has an identity: a random id in `<store>/.alfrd-store`, made once by the first
daemon that opens the store and read by every later one. Rows record the id of the store that
holds their file, so daemons on several hosts can share one database, each with its own store,
and `alfrd check` on one host does not take the other hosts' files for lost. A store shared over
NFS by several hosts has one id file, so its rows are local to every one of them.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Any

from .db import QUERIES

log = logging.getLogger("alfrd.store")

FILE_MODE = 0o640
DIR_MODE = 0o750
IDENTITY_NAME = ".alfrd-store"
# Named like the store's other half-written files, so `alfrd check` moves a leftover one away.
IDENTITY_TEMP_PREFIX = ".incoming-identity-"


class StoreIdentityError(OSError):
    """The store's identity file exists but does not hold an id: fix or restore it, since a
    new id would make every row this store holds look like another store's."""


def parse_identity(text: str) -> str | None:
    """The canonical id in an identity file's text, or None if it does not hold one."""
    try:
        return str(uuid.UUID(text.strip()))
    except ValueError:
        return None


class Store:
    def __init__(self, root: Path, *, fsync: bool = True):
        self.root = root
        self.fsync = fsync
        self.id: str | None = None  # set by open()

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
        os.chmod(self.root, DIR_MODE)
        self.id = self.read_identity() or self._create_identity()

    @property
    def identity_path(self) -> Path:
        return self.root / IDENTITY_NAME

    def read_identity(self) -> str | None:
        """The store's id, or None while it has none (no daemon opened it yet). Never writes:
        the CLI may run as another user than the daemon that owns the store."""
        try:
            text = self.identity_path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return None
        found = parse_identity(text)
        if found is None:
            raise StoreIdentityError(
                errno.EINVAL, f"store identity file holds {text.strip()[:60]!r}, expected a "
                "UUID (restore it from a backup of the store, or from the stores table)",
                str(self.identity_path))
        return found

    def _create_identity(self) -> str:
        """Write a fresh id under a temporary name and link it into place: link(2) fails if
        another daemon (on this host or, over NFS, another) got there first, and then its id
        is the store's. Either way the file on disk decides."""
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=IDENTITY_TEMP_PREFIX)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(f"{uuid.uuid4()}\n")
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, FILE_MODE)
            # Made by root (an admin's CLI run), it must still be readable by the daemon's
            # user: it belongs to whoever owns the store.
            owner = os.stat(self.root)
            with contextlib.suppress(OSError):
                os.chown(tmp, owner.st_uid, owner.st_gid)
            try:
                os.link(tmp, self.identity_path)
            except FileExistsError:
                pass
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                self._create_identity_exclusively(Path(tmp).read_text("utf-8"))
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        _fsync_dir(self.root)
        found = self.read_identity()
        if found is None:  # removed again at once; nothing sensible to carry on with
            raise StoreIdentityError(errno.ENOENT, "store identity file vanished",
                                     str(self.identity_path))
        return found

    def _create_identity_exclusively(self, text: str) -> None:
        """For filesystems without hard links: O_EXCL still lets only one creator win."""
        try:
            fd = os.open(self.identity_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC,
                         FILE_MODE)
        except FileExistsError:
            return
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())

    def register(self, cur: Any, hostname: str | None = None) -> None:
        """Record this store (host, path, when seen) in the database, so other hosts can say
        who holds the rows that are not theirs. Warns when another id was registered for the
        same place: the identity file was lost or replaced, and the rows of the old id now
        look like another store's."""
        assert self.id is not None, "open() the store first"
        place = {"id": self.id, "hostname": hostname or socket.gethostname(),
                 "path": str(self.root.resolve())}
        cur.execute(QUERIES["register_store"], place)
        for row in cur.execute(QUERIES["other_stores_at_path"], place).fetchall():
            log.warning("store %s on %s was registered before with id %s: its %s was lost or "
                        "replaced, so rows held under the old id count as another store's; "
                        "put back the old file (it holds just the id) to reclaim them",
                        place["path"], place["hostname"], row["id"], IDENTITY_NAME)

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
