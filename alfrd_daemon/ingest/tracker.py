"""The readiness loop: turns watch signals and scans into work, each path at most once at a time.

One thread owns all state, fed by a queue, so there are no locks around the bookkeeping. It
keeps a bounded number of sightings (a 100,000-file backlog is found again by the next scan,
never held in memory at once) and hands ready paths to the pool through a non-blocking submit.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import os
import queue
import random
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from alfrd_daemon.ingest import folderdoc
from alfrd_daemon.ingest.paths import is_ignored
from alfrd_daemon.ingest.readiness import Observed, ReadinessParams, Sighting, Verdict, decide
from alfrd_daemon.ingest.signals import Kind, Signal
from alfrd_daemon.ingest.watch import scan
from alfrd_daemon.ingest.work import WorkItem
from alfrd_daemon.logs import event

log = logging.getLogger("alfrd.tracker")

RETRY_BUSY_SECONDS = 0.5
FOLDER_QUIET_MAX_SECONDS = 60.0


@dataclass
class _Retry:
    item: WorkItem


@dataclass
class NewFolder:
    """A folder that appeared while we watch: when it appeared, and its latest event below it
    (monotonic seconds)."""

    appeared: float
    last_activity: float


def folder_quiet_due(folder: NewFolder, settle_seconds: float, max_wait: float) -> float:
    """When files in a new folder may go: once nothing happened below it for settle_seconds,
    so a folder copied in whole is seen whole, but never later than max_wait after it
    appeared, so a scanner that writes into it all day still gets its pages through. Bounds
    the folder the way stale_write_seconds bounds a file that is never closed."""
    return min(folder.last_activity + settle_seconds, folder.appeared + max_wait)


@dataclass(frozen=True)
class TrackerSettings:
    inbox: Path
    params: ReadinessParams
    ignore_files: tuple[str, ...]
    ignore_dirs: tuple[str, ...]
    recursive: bool
    rescan_interval: float
    max_tracked: int
    retry_initial: float
    retry_max: float
    watch_limit: int | None = None  # the kernel's inotify watch limit, in inotify mode
    folder_quiet_max: float = FOLDER_QUIET_MAX_SECONDS


class Tracker:
    def __init__(
        self,
        settings: TrackerSettings,
        submit: Callable[[WorkItem], bool],
        intake_open: Callable[[], bool] = lambda: True,
        owns: Callable[[str], bool] = lambda _rel: True,
    ):
        self.s = settings
        self.submit = submit
        self.intake_open = intake_open
        # This process's share of the inbox (ingest/partition.py): other files are left to the
        # process that owns them, before any stat. Claimed files are always ours.
        self.owns = owns
        self.signals: queue.SimpleQueue[Signal | tuple[str, object]] = queue.SimpleQueue()
        self.sightings: dict[str, Sighting] = {}
        self.folders: set[str] = set()
        self.recent_dirs: dict[str, NewFolder] = {}
        self.in_flight: set[str] = set()
        self._heap: list[tuple[float, int, str | _Retry]] = []
        self._seq = itertools.count()
        self._scan_wanted: list[str] = [""]
        self._last_full_scan = 0.0
        self._stop = threading.Event()
        self.heartbeat = time.monotonic()
        self.backlog = False
        # Ready but not yet handed over (pool full, or intake paused): waits here in arrival
        # order instead of being re-examined on a timer. A later event for a path takes it out
        # of `ready_set`, and its stale deque entry is skipped.
        self.ready: collections.deque[str] = collections.deque()
        self.ready_set: dict[str, float] = {}  # path → since when it is ready (monotonic)
        self.ready_retries: collections.deque[WorkItem] = collections.deque()
        self._warned_watch_limit = False

    # --- called from other threads -------------------------------------------------------------
    def signal(self, sig: Signal) -> None:
        self.signals.put(sig)

    def request_scan(self, relpath: str = "") -> None:
        self.signals.put(("scan", relpath))

    def finished(self, item: WorkItem, outcome_retry: bool, busy: bool) -> None:
        """A worker is done with an item: forget it, or schedule its retry."""
        self.signals.put(("done", (item, outcome_retry, busy)))

    def writing(self, item: WorkItem) -> None:
        """A worker found a writer still holding the file: judge it again once it is closed
        (inotify reports the close) or has settled."""
        self.signals.put(("writing", item))

    def adopt(self, relpaths: list[str]) -> None:
        """Claims inherited from a dead daemon (or left by our own crash) go straight to work."""
        for rel in relpaths:
            self.signals.put(("retry", WorkItem(rel, claimed=True)))

    def wake_retries(self) -> None:
        """The obstacle is gone (database back, disk freed): retry claimed files now."""
        self.signals.put(("wake_retries", None))

    def stop(self) -> None:
        self._stop.set()
        self.signals.put(("stop", None))

    @property
    def tracked(self) -> int:
        return len(self.sightings)

    def waiting(self) -> tuple[int, float | None]:
        """(files ready but not yet handed to a worker, since when the oldest waits), read
        from another thread: the copy is taken in one C call, under the GIL."""
        since = list(self.ready_set.values())
        return len(since), min(since, default=None)

    # --- the loop ------------------------------------------------------------------------------
    def run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            self.heartbeat = now
            timeout = 0.5
            if self._heap:
                timeout = min(timeout, max(0.0, self._heap[0][0] - now))
            try:
                first = self.signals.get(timeout=timeout)
            except queue.Empty:
                first = None
            if first is not None:
                self._handle(first)
                for _ in range(10000):  # drain a burst without re-sorting the heap per signal
                    try:
                        self._handle(self.signals.get_nowait())
                    except queue.Empty:
                        break
            self._maybe_scan()
            self._run_due()
            self._hand_over()

    def _handle(self, msg: Signal | tuple[str, object]) -> None:
        now = time.monotonic()
        if isinstance(msg, Signal):
            self._on_signal(msg, now)
            return
        tag, payload = msg
        if tag == "scan":
            self._scan_wanted.append(str(payload))
        elif tag == "done":
            item, retry, busy = cast(tuple[WorkItem, bool, bool], payload)
            self._on_done(item, retry, busy, now)
        elif tag == "wake_retries":
            self._heap = [(min(due, now) if isinstance(e, _Retry) else due, n, e)
                          for due, n, e in self._heap]
            heapq.heapify(self._heap)
        elif tag == "writing":
            assert isinstance(payload, WorkItem)
            item = payload
            self.in_flight.discard(item.relpath)
            # An event that came while it was in flight (its close) already says more.
            if item.relpath not in self.sightings:
                self.sightings[item.relpath] = Sighting(last_activity=now, writing=True)
            self._push(now + self.s.params.settle_seconds, item.relpath)
        elif tag == "retry":
            assert isinstance(payload, WorkItem)
            item = payload
            self.in_flight.add(item.relpath)
            self._push(now, _Retry(item))

    def _on_signal(self, sig: Signal, now: float) -> None:
        rel = sig.relpath
        if sig.kind is Kind.DIR_APPEARED:
            if not self.s.recursive or is_ignored(rel + "/x", (), self.s.ignore_dirs):
                return
            known = self.recent_dirs.get(rel)
            if known is None:
                self.recent_dirs[rel] = NewFolder(appeared=now, last_activity=now)
            else:  # a repeated event: its wait still counts from when it first appeared
                known.last_activity = now
            self._touch_parents(rel, now)
            self._scan_wanted.append(rel)  # files moved in with a folder produce no events
            return
        if is_ignored(rel, self.s.ignore_files, self.s.ignore_dirs):
            return
        if not self.s.recursive and "/" in rel:
            return
        parent = rel.rpartition("/")[0]
        self._touch_parents(rel, now)
        if parent and (rel.endswith("/" + folderdoc.META_NAME) or parent in self.folders):
            rel = parent
            self.folders.add(parent)
        if sig.kind is Kind.DELETED or not self.owns(rel):
            return  # deleted: decide() notices on its next look
        self.ready_set.pop(rel, None)  # something happened to it: judge it again
        s = self.sightings.get(rel)
        if s is None:
            if len(self.sightings) >= self.s.max_tracked:
                self.backlog = True
                return
            s = self.sightings[rel] = Sighting(last_activity=now)
        s.last_activity = now
        s.size = None
        if sig.kind is Kind.CLOSED or sig.kind is Kind.MOVED_IN:
            s.closed, s.writing = True, False
            self._push(now + self.s.params.quiet_seconds, rel)
        elif sig.kind is Kind.MODIFIED:
            s.closed, s.writing = False, True
            self._push(now + self.s.params.settle_seconds, rel)
        else:
            s.closed = False
            self._push(now + self.s.params.settle_seconds, rel)

    def _touch_parents(self, rel: str, now: float) -> None:
        parent = rel.rpartition("/")[0]
        while parent:
            folder = self.recent_dirs.get(parent)
            if folder is not None:
                folder.last_activity = now
            parent = parent.rpartition("/")[0]

    def _on_done(self, item: WorkItem, retry: bool, busy: bool, now: float) -> None:
        if retry:
            attempt = item.attempt + 1
            delay = min(self.s.retry_max, self.s.retry_initial * 2 ** min(item.attempt, 20))
            delay *= random.uniform(0.8, 1.2)
            self._push(now + delay, _Retry(WorkItem(item.relpath, True, attempt)))
            return
        self.in_flight.discard(item.relpath)
        if busy:
            self.sightings.setdefault(item.relpath, Sighting(last_activity=now - 3600))
            self._push(now + RETRY_BUSY_SECONDS, item.relpath)

    # --- scanning ------------------------------------------------------------------------------
    def _maybe_scan(self) -> None:
        now = time.monotonic()
        if now - self._last_full_scan >= self.s.rescan_interval:
            self._scan_wanted.append("")
        if self.backlog and len(self.sightings) < self.s.max_tracked // 2:
            self.backlog = False
            self._scan_wanted.append("")
        while self._scan_wanted:
            start = self._scan_wanted.pop()
            if start == "":
                self._last_full_scan = now
                self._scan_wanted = [w for w in self._scan_wanted if w != ""]
            self._scan(start)

    def _scan(self, start: str) -> None:
        now, wall = time.monotonic(), time.time()
        dirs_seen = [0]
        for rel, st, is_folder in scan(
            self.s.inbox, start, ignore_files=self.s.ignore_files,
            ignore_dirs=self.s.ignore_dirs, recursive=self.s.recursive, dirs_seen=dirs_seen,
            owns=self.owns,
        ):
            if rel in self.sightings or rel in self.in_flight or not self.owns(rel):
                continue
            if len(self.sightings) >= self.s.max_tracked:
                self.backlog = True
                log.info("backlog: tracking %d files; the rest wait for the next scan",
                         len(self.sightings))
                return
            if is_folder:
                self.folders.add(rel)
            # The file has been still since its mtime: a catch-up scan need not wait again.
            still_for = max(0.0, wall - st.st_mtime_ns / 1e9)
            sighting = self.sightings[rel] = Sighting(last_activity=now - still_for)
            if not is_folder:  # the scan's stat is the first of the two looks
                sighting.size, sighting.mtime_ns = st.st_size, st.st_mtime_ns
            self._push(now, rel)
        if start == "":
            self._check_watch_limit(dirs_seen[0])
        for d, folder in list(self.recent_dirs.items()):
            if now >= self._folder_quiet_due(folder):
                del self.recent_dirs[d]

    def _check_watch_limit(self, dirs: int) -> None:
        """The kernel silently stops adding inotify watches at its limit, so folders past it
        get no events; say so, since only this periodic scan will find their files."""
        limit = self.s.watch_limit
        if limit is not None and dirs > limit * 0.9 and not self._warned_watch_limit:
            self._warned_watch_limit = True
            event(log, "watch_limit", f"the inbox has {dirs} folders and the inotify watch "
                  f"limit is {limit}: files in unwatched folders are found only by the rescan "
                  f"every {self.s.rescan_interval:g} s; raise fs.inotify.max_user_watches or "
                  "set watch.mode: polling", level=logging.WARNING, folders=dirs, limit=limit)

    # --- deciding ------------------------------------------------------------------------------
    def _push(self, due: float, entry: str | _Retry) -> None:
        heapq.heappush(self._heap, (due, next(self._seq), entry))

    def _run_due(self) -> None:
        now = time.monotonic()
        while self._heap and self._heap[0][0] <= now:
            _, _, entry = heapq.heappop(self._heap)
            if isinstance(entry, _Retry):
                self.ready_retries.append(entry.item)
                continue
            self._consider(entry, now)

    def _consider(self, rel: str, now: float) -> None:
        s = self.sightings.get(rel)
        if s is None or rel in self.ready_set:
            return
        if rel in self.in_flight:
            self._push(now + RETRY_BUSY_SECONDS, rel)
            return
        seen = self._observe(rel)
        if seen.directory:
            # A folder where a file was expected: polling reports a new folder that reuses a
            # deleted file's inode as that file moved. Its files are candidates, not it.
            self.sightings.pop(rel, None)
            if self.s.recursive:
                self._scan_wanted.append(rel)
            return
        verdict, due = decide(s, seen, now, self.s.params, wall_now=time.time())
        if verdict is Verdict.GONE:
            self.sightings.pop(rel, None)
            self.folders.discard(rel)
            return
        if verdict is Verdict.WAIT:
            self._push(due, rel)
            return
        quiet_due = self._dir_quiet_due(rel, now)
        if quiet_due > now:
            if quiet_due != float("inf"):
                self._push(quiet_due, rel)
            return
        if not self._folder_ready(rel, s, now):
            return
        if not self.owns(rel):
            # A page seen before its folder became a folder document: the folder is another
            # process's (its own events and scans find it).
            self.sightings.pop(rel, None)
            self.folders.discard(rel)
            return
        if rel not in self.ready_set:
            self.ready_set[rel] = now
            self.ready.append(rel)

    def _hand_over(self) -> None:
        """Submit waiting work while the pool has room: retries of claimed files first (they
        are probes while the database is away), then new files if intake is open."""
        while self.ready_retries:
            if not self.submit(self.ready_retries[0]):
                return
            self.ready_retries.popleft()
        while self.ready and self.intake_open():
            rel = self.ready[0]
            if rel not in self.ready_set or rel in self.in_flight:
                self.ready.popleft()  # stale: an event took it back, or it is already busy
                if rel in self.in_flight and rel in self.ready_set:
                    self.ready_set.pop(rel, None)
                    self._push(time.monotonic() + RETRY_BUSY_SECONDS, rel)
                continue
            if not self.submit(WorkItem(rel)):
                return
            self.ready.popleft()
            self.ready_set.pop(rel, None)
            self.in_flight.add(rel)
            self.sightings.pop(rel, None)
            self.folders.discard(rel)

    def _observe(self, rel: str) -> Observed:
        path = self.s.inbox / rel
        try:
            st = os.lstat(path)
        except (FileNotFoundError, NotADirectoryError):
            return Observed(exists=False)
        if rel in self.folders and stat.S_ISDIR(st.st_mode):
            meta = path / folderdoc.META_NAME
            try:
                mst = os.lstat(meta)
            except FileNotFoundError:
                return Observed(exists=True, regular=True, size=1, mtime_ns=st.st_mtime_ns)
            return Observed(exists=True, regular=True, size=max(1, mst.st_size),
                            mtime_ns=max(st.st_mtime_ns, mst.st_mtime_ns))
        return Observed(exists=True, regular=stat.S_ISREG(st.st_mode), size=st.st_size,
                        mtime_ns=st.st_mtime_ns, directory=stat.S_ISDIR(st.st_mode))

    def _dir_quiet_due(self, rel: str, now: float) -> float:
        """Files in a folder that just appeared wait until the folder is quiet, so a folder
        copied in whole is seen whole (and one holding meta.json becomes one document), but
        no longer than folder_quiet_max after it appeared (see folder_quiet_due)."""
        due = now
        parent = rel.rpartition("/")[0]
        while parent:
            folder = self.recent_dirs.get(parent)
            if folder is not None:
                folder_due = self._folder_quiet_due(folder)
                if now >= folder_due:
                    del self.recent_dirs[parent]  # waited on long enough: its files flow
                else:
                    due = max(due, folder_due)
            parent = parent.rpartition("/")[0]
        if due == now and rel not in self.folders:
            parent = rel.rpartition("/")[0]
            if parent and (self.s.inbox / parent / folderdoc.META_NAME).exists():
                # meta.json arrived last: the folder, not this page, is the candidate.
                self.sightings.pop(rel, None)
                self.folders.add(parent)
                self.sightings.setdefault(parent, Sighting(last_activity=now))
                self._push(now, parent)
                return float("inf")
        return due

    def _folder_quiet_due(self, folder: NewFolder) -> float:
        return folder_quiet_due(folder, self.s.params.settle_seconds, self.s.folder_quiet_max)

    def _folder_ready(self, rel: str, s: Sighting, now: float) -> bool:
        """A folder is ready when meta.json parses and every page it lists is there; after
        stale_write_seconds it goes to the worker anyway, which files it under failed/."""
        if rel not in self.folders:
            return True
        folder = self.s.inbox / rel
        try:
            meta = folderdoc.parse_meta((folder / folderdoc.META_NAME).read_bytes())
            missing = [p.file for p in meta.pages if not (folder / p.file).is_file()]
        except folderdoc.InvalidFolder:
            return True  # quiet and still unparsable: broken, not half-written
        except OSError:
            missing = [folderdoc.META_NAME]
        if not missing or now - s.last_activity >= self.s.params.stale_write_seconds:
            return True
        self._push(now + max(0.2, self.s.params.settle_seconds), rel)
        return False
