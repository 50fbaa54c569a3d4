"""Inotify events straight from watchdog's lowest layer, with only what readiness needs.

watchdog's InotifyObserver holds every unpaired rename-away event for 0.5 s to pair it with a
rename-in, and its delayed queue makes every event behind it wait: the daemon's own claim
rename produced one per file, so a p99 close-to-commit of ~0.6 s. Readiness needs no pairing
(a file renamed away is simply gone at its next look), so this source reads
`watchdog.observers.inotify_c` directly with an explicit mask: created, closed after writing,
moved in, modified, and a watched folder itself deleted or moved. Opens, reads, deletions and
renames away raise nothing, so our own hashing, copying and claim renames cost the watcher
nothing; folders the daemon ignores (the claim area `.alfrd` among them) get no watch at all.

One watch per folder. A folder that appears is watched before it is announced, so the scan the
tracker makes of it finds what was written before the watch existed.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

from watchdog.observers.inotify_c import CallbackId, InotifyEvent, InotifyFD, Mask
from watchdog.observers.inotify_c import InotifyConstants as IN

from alfrd_daemon.ingest.signals import Kind, Signal

log = logging.getLogger("alfrd.watch")

FOLDER_MASK = Mask(IN.IN_CREATE | IN.IN_CLOSE_WRITE | IN.IN_MOVED_TO | IN.IN_MODIFY
                    | IN.IN_DELETE_SELF | IN.IN_MOVE_SELF | IN.IN_ONLYDIR | IN.IN_DONT_FOLLOW
                    | IN.IN_EXCL_UNLINK)
# One callback (this source) per watch: the id only has to be unique within a watch.
CALLBACK_ID = CallbackId(1)


class InotifySource:
    """Emits Signals for the inbox (relative paths) from a thread reading one inotify instance.

    `skip_dir(relpath)` says which folders get no watch (ignored ones, the claim area);
    `on_overflow()` is called when the kernel's queue overflowed and events were lost, so the
    caller can scan. Raises OSError from start() when the kernel's watch or instance limit is
    exhausted (the caller falls back to polling and says so)."""

    def __init__(self, inbox: Path, emit: Callable[[Signal], None], *, recursive: bool,
                 skip_dir: Callable[[str], bool], on_overflow: Callable[[], None]):
        self.inbox = inbox
        self.emit = emit
        self.recursive = recursive
        self.skip_dir = skip_dir
        self.on_overflow = on_overflow
        self._fd: InotifyFD | None = None
        self._dirs: dict[int, str] = {}  # watch descriptor → folder relative to the inbox
        self._lock = threading.Lock()
        self.root_lost = False  # the inbox folder itself was deleted or moved away

    # --- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        self._fd = InotifyFD()
        try:
            self._watch_tree("")
        except OSError:
            self._fd.close()
            raise
        self._fd.start()

    def stop(self) -> None:
        if self._fd is not None:
            self._fd.stop()

    def join(self, timeout: float | None = None) -> None:
        if self._fd is not None and self._fd.is_alive():
            self._fd.join(timeout)

    def is_alive(self) -> bool:
        """The reading thread runs (whether the inbox folder is still watched: root_lost)."""
        return self._fd is not None and self._fd.is_alive()

    @property
    def watched_folders(self) -> int:
        with self._lock:
            return len(self._dirs)

    # --- watches -------------------------------------------------------------------------------
    def _watch_tree(self, top: str) -> None:
        """Watch `top` and, when recursive, every folder below it that is not skipped; symlinked
        folders are never entered."""
        stack = [top]
        while stack:
            rel = stack.pop()
            if not self._watch(rel):
                continue
            if not self.recursive:
                continue
            try:
                entries = list(os.scandir(self.inbox / rel if rel else self.inbox))
            except (FileNotFoundError, NotADirectoryError, PermissionError):
                continue
            for entry in entries:
                child = f"{rel}/{entry.name}" if rel else entry.name
                try:
                    if entry.is_dir(follow_symlinks=False) and not self.skip_dir(child):
                        stack.append(child)
                except OSError:
                    continue

    def _watch(self, rel: str) -> bool:
        assert self._fd is not None
        path = os.fsencode(self.inbox / rel if rel else self.inbox)
        try:
            with warnings.catch_warnings():
                # A folder moved within the inbox keeps its watch; adding it again under its
                # new name re-registers this same callback, which inotify_c warns about.
                warnings.simplefilter("ignore", RuntimeWarning)
                wd = self._fd.add_callback(path, FOLDER_MASK, self, id_=CALLBACK_ID)
        except FileNotFoundError:
            return False
        except OSError as exc:
            if rel and exc.errno in (errno.ENOTDIR, errno.ENOENT, errno.EACCES):
                return False  # gone again, or closed to us
            raise
        with self._lock:
            self._dirs[wd] = rel  # a folder moved within the inbox keeps its wd: new name wins
        return True

    # --- inotify_c's WatchCallback -------------------------------------------------------------
    def on_event(self, event: InotifyEvent) -> None:
        with self._lock:
            folder = self._dirs.get(event.wd)
        if folder is None:
            return
        if event.is_delete_self or event.is_move_self:
            if folder == "":
                self.root_lost = True
                log.warning("the inbox folder itself was %s; its watch is gone",
                            "deleted" if event.is_delete_self else "moved away")
            return
        if not event.name:
            return
        name = os.fsdecode(event.name)
        rel = f"{folder}/{name}" if folder else name
        if event.is_directory:
            if (event.is_create or event.is_moved_to) and self.recursive \
                    and not self.skip_dir(rel):
                try:
                    self._watch_tree(rel)
                except OSError as exc:  # the watch limit: only the rescan finds its files now
                    log.warning("cannot watch %s: %s", rel, exc)
                self.emit(Signal(Kind.DIR_APPEARED, rel))
            return
        if event.is_close_write:
            self.emit(Signal(Kind.CLOSED, rel))
        elif event.is_moved_to:
            self.emit(Signal(Kind.MOVED_IN, rel))
        elif event.is_create:
            self.emit(Signal(Kind.CREATED, rel))
        elif event.is_modify:
            self.emit(Signal(Kind.MODIFIED, rel))

    def on_watch_deleted(self, wd: int) -> None:
        with self._lock:
            folder = self._dirs.pop(wd, None)
        if folder == "":
            self.root_lost = True

    def on_queue_overflow(self) -> None:
        """The kernel dropped events, folders created meanwhile among them: watch what has no
        watch yet (adding an existing watch again only re-registers this callback)."""
        log.warning("the kernel's inotify queue overflowed: events were lost; scanning")
        try:
            self._watch_tree("")
        except OSError as exc:  # the watch limit: only the rescan finds their files now
            log.warning("cannot watch every folder again: %s", exc)

    def on_events_lost(self) -> None:
        """inotify_c calls this after every callback's on_queue_overflow, so the scan it asks
        for runs with the watches repaired: nothing written after it goes unseen."""
        self.on_overflow()
