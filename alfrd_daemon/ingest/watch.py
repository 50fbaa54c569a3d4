"""Where candidates come from: inotify (our raw source) or watchdog's polling observer, and
directory scans.

Every source speaks one small vocabulary (`signals.Signal`) to the readiness tracker, so the
same tests hold for each. Sources only translate; deciding what is ready happens elsewhere.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Protocol

from watchdog import events as wd
from watchdog.observers.api import BaseObserver

from alfrd_daemon.ingest import folderdoc
from alfrd_daemon.ingest.inotify_source import InotifySource
from alfrd_daemon.ingest.paths import is_ignored, is_ignored_dir
from alfrd_daemon.ingest.signals import Kind, Signal

log = logging.getLogger("alfrd.watch")

CLAIM_DIR = ".alfrd"
NETWORK_FILESYSTEMS = ("nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "fuse", "fuse.sshfs",
                       "ceph", "glusterfs", "virtiofs")


# Only what readiness needs. Leaving out opens, reads (close-no-write) and deletions means our
# own hashing, extraction and cleanup of claimed files raise no inotify events at all.
WANTED_EVENTS = [wd.FileCreatedEvent, wd.DirCreatedEvent, wd.FileModifiedEvent,
                 wd.FileClosedEvent, wd.FileMovedEvent, wd.DirMovedEvent]


class EventTranslator(wd.FileSystemEventHandler):
    """watchdog events → Signals for paths inside the inbox (never our claim area)."""

    def __init__(self, inbox: Path, emit: Callable[[Signal], None]):
        self.inbox = os.fsdecode(inbox)
        self.prefix = self.inbox.rstrip("/") + "/"
        self.emit = emit

    def _rel(self, path: str | bytes) -> str | None:
        path = os.fsdecode(path)
        if not path.startswith(self.prefix):
            return None
        rel = path[len(self.prefix):]
        if not rel or rel == CLAIM_DIR or rel.startswith(CLAIM_DIR + "/"):
            return None
        return rel

    def _send(self, kind: Kind, path: str | bytes) -> None:
        rel = self._rel(path)
        if rel is not None:
            self.emit(Signal(kind, rel))

    def dispatch(self, event: wd.FileSystemEvent) -> None:
        t = type(event)
        if t is wd.FileClosedEvent:
            self._send(Kind.CLOSED, event.src_path)
        elif t is wd.FileCreatedEvent:
            self._send(Kind.CREATED, event.src_path)
        elif t is wd.FileModifiedEvent:
            self._send(Kind.MODIFIED, event.src_path)
        elif t is wd.FileMovedEvent:
            self._send(Kind.DELETED, event.src_path)
            self._send(Kind.MOVED_IN, event.dest_path)
        elif t is wd.FileDeletedEvent:
            self._send(Kind.DELETED, event.src_path)
        elif t is wd.DirCreatedEvent:
            self._send(Kind.DIR_APPEARED, event.src_path)
        elif t is wd.DirMovedEvent:
            self._send(Kind.DIR_APPEARED, event.dest_path)


def filesystem_type(path: Path) -> str:
    """The mount's type from /proc/self/mounts (longest matching mount point)."""
    best, fstype = "", "unknown"
    target = os.path.realpath(path)
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as mounts:
            for line in mounts:
                parts = line.split()
                if len(parts) < 3:
                    continue
                point = parts[1].replace("\\040", " ")
                inside = target == point or target.startswith(point.rstrip("/") + "/")
                if inside and len(point) > len(best):
                    best, fstype = point, parts[2]
    except OSError:
        pass
    return fstype


def choose_mode(configured: str, inbox: Path) -> str:
    """auto → polling on network filesystems, where inotify sees no remote writes."""
    if configured != "auto":
        return configured
    fstype = filesystem_type(inbox)
    if fstype in NETWORK_FILESYSTEMS or fstype.startswith("fuse."):
        log.info("inbox is on %s: watching by polling", fstype)
        return "polling"
    return "inotify"


class Watcher(Protocol):
    """What the daemon needs of a watch source: our inotify reader or watchdog's observer."""

    def stop(self) -> None: ...
    def join(self, timeout: float | None = None) -> None: ...
    def is_alive(self) -> bool: ...


def start_watcher(
    mode: str, inbox: Path, emit: Callable[[Signal], None], *, recursive: bool,
    poll_interval: float, skip_dir: Callable[[str], bool], on_overflow: Callable[[], None],
) -> tuple[Watcher, str]:
    """Start watching; an inotify failure (watch or instance limit) falls back to polling and
    says so, rather than silently missing files. `skip_dir(relpath)` names folders inotify
    need not watch (ignored ones and the claim area)."""
    if mode == "inotify":
        source = InotifySource(inbox, emit, recursive=recursive,
                               skip_dir=lambda rel: rel == CLAIM_DIR or skip_dir(rel),
                               on_overflow=on_overflow)
        try:
            source.start()
            return source, "inotify"
        except OSError as exc:
            log.warning("inotify unavailable (%s: the kernel's watch or instance limit, "
                        "fs.inotify.max_user_watches, may be exhausted); watching by polling",
                        exc)
    from watchdog.observers.polling import PollingObserver

    observer = PollingObserver(timeout=poll_interval)
    observer.schedule(EventTranslator(inbox, emit), os.fsdecode(inbox), recursive=recursive,
                      event_filter=WANTED_EVENTS)
    observer.start()
    return observer, "polling"


class InboxState(Enum):
    WATCHED = "watched"  # the directory we armed the watch on is still the one at the path
    MISSING = "missing"  # nothing (or no directory) at the inbox path
    REPLACED = "replaced"  # another directory now: our watch and claim area went with the old


def directory_identity(path: Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the directory at path, None when there is none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISDIR(st.st_mode) else None


def judge_inbox(armed: tuple[int, int] | None, current: tuple[int, int] | None) -> InboxState:
    """Is the inbox we watch still the one at its path? `armed` is its identity when the watch
    was armed, `current` what is there now (see directory_identity)."""
    if current is None:
        return InboxState.MISSING
    if armed is not None and current != armed:
        return InboxState.REPLACED
    return InboxState.WATCHED


def watching(watcher: Watcher | None) -> bool:
    """Events flow. watchdog's observer thread stays alive when the directory it watches is
    deleted, but its emitter (polling) stops; our inotify reader says when the inbox folder
    itself went away."""
    if watcher is None or not watcher.is_alive():
        return False
    if isinstance(watcher, InotifySource):
        return not watcher.root_lost
    emitters = watcher.emitters if isinstance(watcher, BaseObserver) else ()
    return bool(emitters) and all(e.is_alive() for e in emitters)


def inotify_watch_limit() -> int | None:
    try:
        return int(Path("/proc/sys/fs/inotify/max_user_watches").read_text())
    except (OSError, ValueError):
        return None


def scan(
    inbox: Path, start: str = "", *, ignore_files: tuple[str, ...],
    ignore_dirs: tuple[str, ...], recursive: bool = True, dirs_seen: list[int] | None = None,
    owns: Callable[[str], bool] | None = None,
) -> Iterator[tuple[str, os.stat_result, bool]]:
    """(relpath, lstat, is_folder_document) for every candidate below inbox/start. A directory
    holding meta.json is one candidate; symlinked directories are never entered. dirs_seen[0]
    counts the directories entered. Files `owns` rejects (another ingest process's) are
    skipped before their stat; folders are always entered."""
    top = inbox / start if start else inbox
    stack = [top]
    while stack:
        here = stack.pop()
        if dirs_seen is not None:
            dirs_seen[0] += 1
        rel_here = os.path.relpath(here, inbox)
        rel_here = "" if rel_here == "." else rel_here
        if rel_here and os.path.lexists(here / folderdoc.META_NAME):
            try:
                folder_st = os.lstat(here)
            except FileNotFoundError:
                continue
            yield rel_here, folder_st, True
            continue
        try:
            # Read as it goes, not listed first: a backlog of 100,000 files would be held
            # whole at each scan, though the tracker takes only so many of them.
            entries = os.scandir(here)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with entries:
            yield from _entries(entries, rel_here, stack, ignore_files=ignore_files,
                                ignore_dirs=ignore_dirs, recursive=recursive, owns=owns)


def _entries(entries: Iterator[os.DirEntry[str]], rel_here: str, stack: list[Path], *,
             ignore_files: tuple[str, ...], ignore_dirs: tuple[str, ...], recursive: bool,
             owns: Callable[[str], bool] | None) -> Iterator[tuple[str, os.stat_result, bool]]:
    """The files of one folder for scan(); its sub-folders go on `stack`."""
    for entry in entries:
        rel = f"{rel_here}/{entry.name}" if rel_here else entry.name
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
            if is_dir:
                if recursive and rel != CLAIM_DIR and not is_ignored_dir(rel, ignore_dirs):
                    stack.append(Path(entry.path))
                continue
            if (owns is not None and not owns(rel)) or is_ignored(rel, ignore_files,
                                                                  ignore_dirs):
                continue
            yield rel, entry.stat(follow_symlinks=False), False
        except FileNotFoundError:
            continue
