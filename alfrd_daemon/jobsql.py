"""Named queries of the scheduled jobs, kept in sql/jobs.sql (the queries.sql format)."""

from __future__ import annotations

import re
from importlib import resources


def load_named_queries(filename: str) -> dict[str, str]:
    """Blocks starting `-- name: x` in sql/<filename> → {x: statement}."""
    text = resources.files("alfrd_daemon").joinpath("sql", filename).read_text("utf-8")
    queries: dict[str, str] = {}
    for block in re.split(r"^-- name: ", text, flags=re.MULTILINE)[1:]:
        name, _, body = block.partition("\n")
        queries[name.strip()] = body.strip().rstrip(";")
    return queries


Q = load_named_queries("jobs.sql")
