"""Advisory-lock keys: one stable number per name, the same in every process and on every host,
so daemons sharing a database agree on which lock guards what."""

from __future__ import annotations

import hashlib


def advisory_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for a name."""
    digest = hashlib.sha256(f"alfrd:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
