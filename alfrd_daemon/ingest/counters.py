"""The daemon's running totals of outcomes, and since when files have failed transiently:
written by the workers and the committer, read by health checks and `alfrd status`."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from alfrd_daemon.ingest.work import Outcome


@dataclass
class Counters:
    ingested: int = 0
    duplicates: int = 0
    failed: int = 0
    retries: int = 0
    gone: int = 0
    in_progress: int = 0
    last_transient: str | None = None
    transient_since: float | None = None
    # Since when files have failed transiently with no file going through; unlike
    # transient_since, a passing probe does not clear it (a probe can pass while files fail).
    failing_since: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, outcome: Outcome) -> None:
        with self.lock:
            if outcome is Outcome.INGESTED:
                self.ingested += 1
            elif outcome is Outcome.DUPLICATE:
                self.duplicates += 1
            elif outcome is Outcome.FAILED:
                self.failed += 1
            elif outcome is Outcome.RETRY:
                self.retries += 1
            elif outcome is Outcome.GONE:
                self.gone += 1
            if outcome not in (Outcome.RETRY, Outcome.BUSY):
                self.transient_since = None
                self.last_transient = None
                self.failing_since = None

    def transient(self, reason: str) -> None:
        with self.lock:
            self.last_transient = reason
            if self.transient_since is None:
                self.transient_since = time.monotonic()
            if self.failing_since is None:
                self.failing_since = time.monotonic()

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "ingested": self.ingested,
                "duplicates": self.duplicates,
                "failed": self.failed,
                "retries": self.retries,
                "gone": self.gone,
                "in_progress": self.in_progress,
                "last_transient": self.last_transient,
            }
