"""What flows through the ingest pipeline: a path to work on, and how its attempt ended."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Outcome(Enum):
    INGESTED = "ingested"
    DUPLICATE = "duplicate"
    FAILED = "failed"
    GONE = "gone"
    RETRY = "retry"
    BUSY = "busy"
    PENDING = "pending"  # handed to the committer; finished later through on_complete
    WRITING = "writing"  # a writer still has it open: not claimed, judged again later


@dataclass(frozen=True)
class WorkItem:
    relpath: str
    claimed: bool = False
    attempt: int = 0
