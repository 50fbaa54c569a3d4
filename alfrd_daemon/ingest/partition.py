"""Which inbox files one of several ingest processes takes (workers.processes).

Each process watches the whole inbox but hands over only the files whose relative path hashes
to its index, so the processes never race for a claim (the claim's rename would settle a race
anyway: a second claimer sees the file gone). The hash is CRC-32 of the path's bytes: the same
in every process and across restarts, unlike Python's salted hash().
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass

from alfrd_daemon.config.settings import MAX_INGEST_PROCESSES as MAX_PROCESSES


@dataclass(frozen=True)
class Partition:
    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_PROCESSES or not 0 <= self.index < self.count:
            raise ValueError(f"partition {self.index}/{self.count}: expected 0 <= index < "
                             f"count <= {MAX_PROCESSES}")

    def owns(self, relpath: str) -> bool:
        """Whether this process ingests `relpath` (a file, or a folder document's folder)."""
        if self.count == 1:
            return True
        return zlib.crc32(os.fsencode(relpath)) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_partition(text: str) -> Partition:
    """`K/N` (the form `alfrd run --partition` takes) → Partition; ValueError naming the form."""
    index, sep, count = text.partition("/")
    try:
        if not sep:
            raise ValueError(text)
        return Partition(int(index), int(count))
    except ValueError:
        raise ValueError(f"expected K/N with 0 <= K < N <= {MAX_PROCESSES}, "
                         f"got {text!r}") from None
