"""The one small vocabulary every watch source speaks to the readiness tracker."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    CREATED = "created"
    MODIFIED = "modified"
    CLOSED = "closed"  # closed after writing (inotify only)
    MOVED_IN = "moved_in"  # renamed into place whole
    DELETED = "deleted"
    DIR_APPEARED = "dir_appeared"


@dataclass(frozen=True)
class Signal:
    kind: Kind
    relpath: str
