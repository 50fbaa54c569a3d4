"""The daemon's watch on the inbox: armed at start, noticed when it goes deaf, re-armed.

The watch dies silently with the directory it watches, and our claim lock with it, when the
inbox is deleted and re-created (a sync tool, `rm -rf inbox && mkdir inbox`). The main loop
calls `check` every tick; it says so, and re-arms once an inbox is there again."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from alfrd_daemon.config.settings import Settings
from alfrd_daemon.ingest.claim import ClaimArea
from alfrd_daemon.ingest.paths import is_ignored_dir
from alfrd_daemon.ingest.signals import Kind, Signal
from alfrd_daemon.ingest.tracker import Tracker
from alfrd_daemon.ingest.watch import (
    InboxState,
    Watcher,
    choose_mode,
    directory_identity,
    judge_inbox,
    start_watcher,
    watching,
)
from alfrd_daemon.logs import event
from alfrd_daemon.service.monitor import ErrorThrottle

log = logging.getLogger("alfrd.daemon")


class InboxWatch:
    """`observer` is None until armed (and while a re-arm is pending); `mode` is the watch
    mode in use ("inotify" or "polling"; "?" before the first arm); `problem` is set while the
    inbox is missing or the watch could not be re-armed (health reports it)."""

    def __init__(self, *, settings: Callable[[], Settings], tracker: Tracker,
                 claims: ClaimArea, errors: ErrorThrottle,
                 mode_changed: Callable[[], None]):
        self.settings = settings  # read on each use: a reload may change them
        self.tracker = tracker
        self.claims = claims
        self.errors = errors
        self.mode_changed = mode_changed  # the readiness rules depend on the mode
        self.observer: Watcher | None = None
        self.mode = "?"
        self.problem: str | None = None
        self._identity: tuple[int, int] | None = None  # of the inbox we armed the watch on

    def arm(self) -> None:
        s = self.settings()
        self._identity = directory_identity(s.inbox.path)
        self.observer, self.mode = start_watcher(
            choose_mode(s.watch.mode, s.inbox.path), s.inbox.path, self._emit,
            recursive=s.inbox.recursive, poll_interval=s.watch.poll_interval,
            skip_dir=self._skipped, on_overflow=lambda: self.tracker.request_scan(""))

    def _emit(self, sig: Signal) -> None:
        """Hand a watch event to the tracker, unless it is about a file at the top of the
        inbox that another ingest process takes (workers.processes): its own watch reports it
        to it, and every process would otherwise queue every event of the inbox. Deeper paths
        go on: which unit they belong to (a folder document) is the tracker's to say."""
        if sig.kind is not Kind.DIR_APPEARED and "/" not in sig.relpath \
                and not self.tracker.owns(sig.relpath):
            return
        self.tracker.signal(sig)

    def _skipped(self, relpath: str) -> bool:
        """Folders the watch need not enter: the ones the settings ignore now."""
        return is_ignored_dir(relpath, self.settings().inbox.ignore_dirs)

    def alive(self) -> bool | None:
        """Whether the observer thread runs; None while there is no observer."""
        return self.observer.is_alive() if self.observer is not None else None

    def stop(self) -> None:
        if self.observer is not None:
            self.observer.stop()

    def join(self, timeout: float) -> None:
        if self.observer is not None:
            with contextlib.suppress(RuntimeError):  # never started
                self.observer.join(timeout=timeout)

    def check(self) -> None:
        if self.observer is not None and not self.observer.is_alive():
            return  # the observer thread itself died: fatal, not re-armed
        inbox = self.settings().inbox.path
        # Our open claim lock pins the old directory: its inode number cannot be reused, so
        # comparing identities is reliable, and the kernel holds back IN_DELETE_SELF until we
        # let go of it, so the watch alone would never tell.
        state = judge_inbox(self._identity, directory_identity(inbox))
        if state is InboxState.MISSING:
            if self.problem is None or not self.problem.startswith("inbox missing"):
                event(log, "inbox_missing", f"the inbox {inbox} is gone; waiting for it to be "
                      "created again", level=logging.WARNING, path=str(inbox))
            self.problem = f"inbox missing: {inbox}"
            return
        reasons = [why for why, lost in (
            ("the inbox was replaced", state is InboxState.REPLACED),
            ("the watch on the inbox ended", not watching(self.observer)),
            ("our claim lock left the inbox", self.claims.lost()),
        ) if lost]
        if reasons:
            self.rearm("; ".join(reasons))
        elif self.problem is not None:
            self.problem = None
            event(log, "watch_rearmed", f"the inbox {inbox} is back", path=str(inbox))

    def rearm(self, reason: str) -> None:
        """Stop the old observer, lock a fresh claim area, watch the inbox now at the path, and
        scan it whole: files that arrived meanwhile raised no event we saw."""
        inbox = self.settings().inbox.path
        old_mode = self.mode
        old, self.observer = self.observer, None  # None until re-armed: retried each tick
        if old is not None:
            with contextlib.suppress(Exception):
                old.stop()
                old.join(timeout=2)
        try:
            if self.claims.lost():  # not when only the observer failed to start last time
                self.claims.reopen()
            self.arm()
        except OSError as exc:
            # Gone again already, or unreadable: unhealthy, and tried again on the next tick.
            self.problem = f"file watcher lost ({reason}); cannot re-arm: {exc}"
            self.errors.report("re-arming the watch", exc)
            return
        if self.mode != old_mode:
            self.mode_changed()
        self.tracker.request_scan("")
        self.problem = None
        event(log, "watch_rearmed", f"{reason}: watching {inbox} again ({self.mode}), "
              "claim area re-created, scanning it whole", level=logging.WARNING,
              path=str(inbox), reason=reason, watch_mode=self.mode)
