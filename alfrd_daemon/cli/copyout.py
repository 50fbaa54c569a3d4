"""Copying a stored file out of the archive: verified against its sha256 on the way, written
under a temporary name beside its destination and renamed into place, so that a reader of
the destination never sees a partial or damaged copy, and an existing file is never replaced
unless the user asked for that."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from alfrd_daemon.ingest.claim import rename_noreplace
from alfrd_daemon.ingest.reconcile import undisplay

CHUNK = 1024 * 1024
TEMP_PREFIX = ".alfrd-get-"
NAME_MAX = 255  # bytes, every Linux filesystem
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Damaged(Exception):
    """The stored file does not hold the bytes its row recorded."""

    def __init__(self, path: Path, expected: str, got: str, size: int):
        super().__init__(f"stored file {path} does not match its sha256 (expected "
                         f"{expected[:16]}…, read {got[:16]}… over {size} bytes): the store's "
                         "copy is damaged (`alfrd check` verifies every stored file)")
        self.path = path


def safe_name(name: str, fallback: str) -> str:
    """A file name for what arrived as `name`: its original bytes (a name that was not UTF-8
    was stored with \\xNN escapes), without path separators or control characters, and not
    starting with a dot or a dash (hidden, or read as an option by the next command)."""
    text = undisplay(name)
    text = _CONTROL.sub("_", text.replace("/", "_"))
    text = text.lstrip(" .-").rstrip(" ")
    if not text or text in (".", ".."):
        text = fallback
    while len(os.fsencode(text)) > NAME_MAX:  # keep the suffix, which names the type
        stem, dot, suffix = text.rpartition(".")
        if dot and 0 < len(suffix) < 16 and len(stem) > 1:
            text = f"{stem[:-1]}.{suffix}"
        else:
            text = text[:-1]
    return text


def numbered(name: str, n: int) -> str:
    """`report.pdf` -> `report (2).pdf`, the way file managers name a second copy."""
    if n < 2:
        return name
    stem, dot, suffix = name.rpartition(".")
    if not dot or not stem:
        return f"{name} ({n})"
    return f"{stem} ({n}).{suffix}"


def hash_file(src: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open_stored(src) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def open_stored(src: Path) -> BinaryIO:
    """A stored file is never a link; one there was not put by the daemon."""
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    return os.fdopen(fd, "rb")


def copy_verified(src: Path, sha256: str, out: BinaryIO,
                  advance: Callable[[int], None] | None = None) -> int:
    """Copy src into out, hashing on the way; raises Damaged at the end if the bytes are not
    the recorded ones (the caller removes what it wrote)."""
    h = hashlib.sha256()
    size = 0
    with open_stored(src) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            out.write(chunk)
            size += len(chunk)
            if advance is not None:
                advance(len(chunk))
    if h.hexdigest() != sha256:
        raise Damaged(src, sha256, h.hexdigest(), size)
    return size


def write_out(src: Path, sha256: str, folder: Path, name: str, *, force: bool, unique: bool,
              advance: Callable[[int], None] | None = None) -> tuple[Path, int]:
    """Copy src (verified) to folder/name. force: replace an existing file; unique: take the
    next free `name (n)` instead; neither: FileExistsError. Returns (path, bytes)."""
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX)
    tmp = Path(tmp_name)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 is not what a user's new file gets
        with os.fdopen(fd, "wb") as out:
            size = copy_verified(src, sha256, out, advance)
        return place(tmp, folder, name, force=force, unique=unique), size
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def place(tmp: Path, folder: Path, name: str, *, force: bool, unique: bool) -> Path:
    if force:
        os.replace(tmp, folder / name)
        return folder / name
    n = 1
    while True:
        dst = folder / numbered(name, n)
        try:
            rename_noreplace(tmp, dst)
            return dst
        except FileExistsError:
            if not unique:
                raise FileExistsError(17, "exists (--force replaces it)", str(dst)) from None
            n += 1


def unique_folder(parent: Path, name: str) -> Path:
    """A new folder parent/name, or `name (n)` when that is taken."""
    n = 1
    while True:
        path = parent / numbered(name, n)
        try:
            path.mkdir()
            return path
        except FileExistsError:
            n += 1
