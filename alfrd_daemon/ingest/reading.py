"""Reading one inbox file once: copy it into the store's private area while hashing, extract
the private copy, then adopt it into the store under its sha256.

Links are never followed and a FIFO never blocks a worker. Every OS and extraction error leaves
here classified (errors.py): Permanent, Transient or StillWriting.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alfrd_daemon.config.settings import Settings
from alfrd_daemon.extract.api import Extraction, ExtractLimits, PermanentExtractionError
from alfrd_daemon.extract.dispatch import extract
from alfrd_daemon.extract.pool import ExtractorPool, ExtractorUnavailable
from alfrd_daemon.ingest.claim import FileIdentity
from alfrd_daemon.ingest.errors import TRANSIENT_OS_ERRORS, Permanent, StillWriting, Transient
from alfrd_daemon.ingest.store import Incoming, SourceReadError, SourceTooLarge, Store
from alfrd_daemon.pgsafe import display_text

log = logging.getLogger("alfrd.ingest")


@dataclass(frozen=True)
class ReadResult:
    sha256: str
    size: int
    claim_key: str  # device, inode, mtime, size and content: one arrival of these bytes
    identity: FileIdentity  # fstat of the descriptor that was read
    incoming: Incoming  # the private copy of exactly the bytes hashed


def kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a UNIX socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISLNK, "a symbolic link (links are never followed)"),
                       (stat.S_ISDIR, "a directory")):
        if test(mode):
            return name
    return "not a regular file"


class Reader:
    def __init__(self, settings: Settings, store: Store, pool: ExtractorPool | None = None):
        self.settings = settings
        self.store = store
        self.pool = pool
        # Told each extraction's seconds (the daemon's metrics); None: nobody listens.
        self.observe: Callable[[float], None] | None = None

    @property
    def limits(self) -> ExtractLimits:
        e = self.settings.extract
        # The same threshold as OCR's: a PDF with a page under it waits for OCR (pending,
        # its text-layer pages searchable meanwhile), and OCR reads exactly those pages.
        return ExtractLimits(timeout_seconds=e.timeout_seconds, max_text_chars=e.max_text_chars,
                             max_pdf_pages=e.max_pdf_pages, memory_limit_mb=e.memory_limit_mb,
                             pdf_min_page_chars=self.settings.ocr.pdf_min_page_chars)

    def read(self, path: Path, *, sync: bool = True) -> ReadResult:
        """Copy into the store while hashing, reading the file once, never following links
        and never blocking on a FIFO."""
        st = os.lstat(path)
        if not stat.S_ISREG(st.st_mode):
            raise Permanent(f"{kind_of(st.st_mode)}: only regular files are ingested")
        limit = self.settings.workers.max_file_size
        if st.st_size > limit:
            raise Permanent(f"too large: {st.st_size} bytes, the limit (workers.max_file_size) "
                            f"is {limit}", size=st.st_size)
        if st.st_size == 0:
            raise Permanent("empty file (0 bytes)", size=0)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except PermissionError as exc:
            raise Permanent(f"unreadable: {exc.strerror}", size=st.st_size) from exc
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Permanent("a symbolic link (links are never followed)") from exc
            raise
        try:
            return self._copy_fd(fd, limit, sync=sync)
        finally:
            os.close(fd)

    def _copy_fd(self, fd: int, limit: int, *, sync: bool = True) -> ReadResult:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise Permanent(f"{kind_of(before.st_mode)}: only regular files are ingested")
        try:
            incoming = self.store.receive(fd, limit=limit,
                                          sync=sync and self.settings.store.fsync)
        except SourceTooLarge as exc:
            raise Permanent(f"too large: more than {limit} bytes (still growing)",
                            size=exc.size) from exc
        except SourceReadError as exc:
            if exc.error.errno in TRANSIENT_OS_ERRORS:
                raise Transient(f"read error: {exc.error.strerror}") from exc
            raise Permanent(f"unreadable: {exc.error.strerror}", size=exc.size) from exc
        except OSError as exc:
            raise Transient(f"cannot write the store: {exc.strerror or exc}") from exc
        after = os.fstat(fd)
        if FileIdentity.of(after) != FileIdentity.of(before) or after.st_size != incoming.size:
            self.store.discard(incoming)
            raise StillWriting("it changed while it was read")
        if incoming.size == 0:
            self.store.discard(incoming)
            raise Permanent("empty file (0 bytes)", size=0)
        sha = incoming.sha256
        key = f"{after.st_dev}:{after.st_ino}:{after.st_mtime_ns}:{incoming.size}:{sha}"
        return ReadResult(sha, incoming.size, key, FileIdentity.of(after), incoming)

    def extract(self, path: Path, name: str) -> Extraction:
        started = time.monotonic()
        try:
            extraction = extract(path, self.limits, name=name, pool=self.pool)
            if self.observe is not None:
                self.observe(time.monotonic() - started)
            return extraction
        except PermanentExtractionError as exc:
            raise Permanent(exc.reason) from exc
        except ExtractorUnavailable as exc:  # stopping, or no extractor would start: not the file
            raise Transient(f"extraction: {exc}") from exc
        except MemoryError as exc:
            raise Permanent("extraction ran out of memory") from exc
        except OSError as exc:
            if exc.errno in TRANSIENT_OS_ERRORS:
                raise Transient(f"extraction: {exc.strerror}") from exc
            raise Permanent(f"unreadable during extraction: {exc.strerror}") from exc
        except Exception as exc:  # an extractor bug must fail one file, not the daemon
            log.exception("extractor crashed on %s", display_text(name))
            raise Permanent(f"extractor error: {type(exc).__name__}: {exc}") from exc

    def adopt(self, read: ReadResult, *, sync: bool = True) -> str:
        """Link the private copy into the store under its sha256; returns the stored path."""
        try:
            return self.store.adopt(read.incoming, sync=self.settings.store.fsync and sync)
        except OSError as exc:
            raise Transient(f"cannot write the store: {exc.strerror or exc}") from exc
