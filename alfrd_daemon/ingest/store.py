"""The content-addressed store: each distinct content once, at store/ab/<sha256>.

Stores written before 2026-12 hold their files one level deeper, at store/ab/cd/<sha256>
(65,536 folders, most of them made for a single file: a new folder costs ~230 µs on ext4, an
existing one 3 µs). Those files stay where they are: rows record each file's path, a duplicate
of one of them is recognised there, and `alfrd check` reads both layouts.

A stored file is always a private copy (or, where the filesystem has one, a reflink) of exactly
the bytes that were hashed, never a link to an inode that someone may still write: a writer
that kept the original open must not be able to change the archive after its row commits.
Bytes arrive through `receive`, which hashes while it copies into a temporary file in the store
root, and `adopt` then gives that file its content address.

Each store has an identity: a random id in `<store>/.alfrd-store`, made once by the first
daemon that opens the store and read by every later one. Rows record the id of the store that
holds their file, so daemons on several hosts can share one database, each with its own store,
and `alfrd check` on one host does not take the other hosts' files for lost. A store shared over
NFS by several hosts has one id file, so its rows are local to every one of them.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import itertools
import logging
import os
import socket
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg.rows import DictRow

from alfrd_daemon.db.queries import QUERIES
from alfrd_daemon.ingest.claim import rename_noreplace

log = logging.getLogger("alfrd.store")

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
    def __init__(self, root: Path, *, fsync: bool = True, instance: str | None = None):
        self.root = root
        self.fsync = fsync
        # Temporary copies carry the writer's instance id (host-pid-token), so a daemon that
        # starts can remove those that a crashed daemon of this host left behind.
        self._temp_prefix = f"{TEMP_PREFIX}{instance}." if instance else TEMP_PREFIX
        # With an instance id the names are ours alone, so a counter makes them (mkstemp
        # draws a random name for each file, in Python).
        self._temp_numbers = itertools.count() if instance else None
        self._reflinks = True  # until the filesystem says it has none
        self._made_dirs: set[str] = set()  # fan-out folders known to exist
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

    def register(self, cur: psycopg.Cursor[DictRow], hostname: str | None = None) -> None:
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
        return f"{sha256[:2]}/{sha256}"

    @staticmethod
    def nested_relpath(sha256: str) -> str:
        """Where a store written before 2026-12 holds the content."""
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
        fd, tmp = self._create_temporary()
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

    def _create_temporary(self) -> tuple[int, str]:
        if self._temp_numbers is not None:
            tmp = os.path.join(self.root, f"{self._temp_prefix}{next(self._temp_numbers)}")
            try:
                return os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                               | os.O_CLOEXEC, 0o600), tmp
            except FileExistsError:  # left by an earlier process that had our id: never reused
                pass
        return tempfile.mkstemp(dir=self.root, prefix=self._temp_prefix)

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
        nested = self.nested_relpath(incoming.sha256)
        if os.path.lexists(self.root / nested):
            # Stored before the layout changed: the content's row (sha256 is unique) keeps
            # pointing there, so a copy in the new layout would be an orphan. A torn file there
            # is replaced in place, as below.
            if _holds(self.root / nested, incoming.size, incoming.sha256):
                _mark_arrived(self.root / nested)
                self.discard(incoming)
            else:
                os.replace(incoming.path, self.root / nested)
            if sync:
                _fsync_dir((self.root / nested).parent)
            return nested
        dst = self.path(incoming.sha256)
        folder = incoming.sha256[:2]
        if folder not in self._made_dirs:
            dst.parent.mkdir(exist_ok=True, mode=DIR_MODE)
            self._made_dirs.add(folder)
        try:
            try:
                rename_noreplace(incoming.path, dst)
            except FileNotFoundError:
                if not os.path.lexists(incoming.path):
                    raise
                # Its fan-out folder was removed since we made it (by hand, or another host
                # sharing the store): make it again.
                dst.parent.mkdir(exist_ok=True, mode=DIR_MODE)
                rename_noreplace(incoming.path, dst)
        except FileExistsError:
            if not _holds(dst, incoming.size, incoming.sha256):
                # A crash before the committer's flush can leave a name whose data never
                # reached the disk (empty, or zeros): a row about to point at it must not, so
                # the verified copy replaces it. Costs one read per duplicate.
                os.replace(incoming.path, dst)
            else:
                _mark_arrived(dst)
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


def _holds(path: Path, size: int, sha256: str) -> bool:
    """Does the file at `path` hold exactly `size` bytes hashing to `sha256`?"""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if os.fstat(fd).st_size != size:
            return False
        return _hash_fd(fd, size)[0] == sha256
    except (OSError, SourceTooLarge):
        return False
    finally:
        os.close(fd)


def _mark_arrived(path: Path) -> None:
    """A stored file whose content arrived again gets a new mtime: the prune job, emptying
    the trash, then sees that a row for it may be about to commit and keeps the file
    (jobs/trash.py), instead of removing it between this adoption and that commit."""
    with contextlib.suppress(OSError):
        os.utime(path, follow_symlinks=False)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
