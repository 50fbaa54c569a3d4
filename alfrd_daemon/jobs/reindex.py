"""Search maintenance: bring every document to the configured text-search language, read the
documents stored before their type had a reader (`ingest.reextract`), rebuild the GIN index
when it has bloated, and VACUUM ANALYZE.

`documents.search_vector` is generated from `search_config`, so setting `search_config`
recomputes the vector. That happens in small batches in id order, each its own short
transaction, so ingest keeps writing and no writer waits long. Rows an old-language writer
adds meanwhile are caught by a further pass.

REINDEX INDEX CONCURRENTLY needs an autocommit connection and waits for every older
transaction, pg_dump's snapshot included, which is why reindex and backup share a lock group
and never overlap.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import DictRow

from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.ingest.reextract import reextract_stale
from alfrd_daemon.jobs.context import JobContext, JobFailed

Q = load_named_queries("jobs.sql")

INDEX = "documents_search_vector_idx"
MAX_PASSES = 5


def needs_rebuild(*, rewritten: int, rows: int, index_bytes: int,
                  baseline_bytes_per_row: float | None, rebuild_fraction: float,
                  bloat_factor: float) -> str | None:
    """Why the index should be rebuilt now, or None.

    Every rewritten row leaves a dead entry in the GIN index that VACUUM frees but never
    returns, so a large rewrite is itself the bloat; otherwise compare the index's size per
    row with what it was right after the last rebuild."""
    if rows and rewritten and rewritten >= rebuild_fraction * rows:
        return f"rewrote {rewritten} of {rows} rows"
    if rows and baseline_bytes_per_row and index_bytes > (
            bloat_factor * baseline_bytes_per_row * rows):
        ratio = index_bytes / (baseline_bytes_per_row * rows)
        return f"index is {ratio:.1f}x its size after the last rebuild"
    return None


def run_reindex(ctx: JobContext) -> dict[str, Any]:
    job = ctx.settings.jobs.reindex
    language = ctx.settings.search.language
    d = ctx.details
    d["language"] = language
    with ctx.connection(autocommit=True) as conn:
        if conn.execute(Q["reindex_config_exists"], {"config": language}).fetchone() is None:
            raise JobFailed(f"search.language {language!r} is not a text search configuration "
                            "on this server (psql: \\dF lists them)")
        for leftover in conn.execute(Q["reindex_invalid_leftovers"]).fetchall():
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                sql.Identifier(leftover["name"])))
            d.setdefault("dropped_invalid_indexes", []).append(leftover["name"])
        stale = conn.execute(Q["reindex_count_stale"], {"config": language}).fetchone()
        assert stale is not None
        d["stale_before"] = stale["stale"]
        _rewrite(ctx, conn, language, job.batch_size, stale["stale"])
        ctx.progress("reading documents stored before their type had a reader")
        d.update(reextract_stale(ctx.settings, conn, batch_size=job.batch_size,
                                 check=ctx.check))
        stats = conn.execute(Q["reindex_index_stats"]).fetchone()
        assert stats is not None
        baseline = conn.execute(Q["reindex_last_baseline"]).fetchone()
        reason = needs_rebuild(
            rewritten=d["rewritten"], rows=stats["rows"], index_bytes=stats["index_bytes"],
            baseline_bytes_per_row=baseline["bytes_per_row"] if baseline else None,
            rebuild_fraction=job.rebuild_fraction, bloat_factor=job.bloat_factor)
        d["index_bytes_before"] = stats["index_bytes"]
        if reason:
            ctx.progress("rebuilding the search index")
            d["rebuild_reason"] = reason
            started = time.monotonic()
            conn.execute(sql.SQL("SET statement_timeout = {}").format(
                sql.Literal(int(job.timeout * 1000))))
            conn.execute(sql.SQL("REINDEX INDEX CONCURRENTLY {}").format(sql.Identifier(INDEX)))
            conn.execute("RESET statement_timeout")
            d["reindex_seconds"] = round(time.monotonic() - started, 3)
        ctx.check()
        ctx.progress("vacuum analyze")
        started = time.monotonic()
        conn.execute("VACUUM (ANALYZE) documents")
        d["vacuum_seconds"] = round(time.monotonic() - started, 3)
        after = conn.execute(Q["reindex_index_stats"]).fetchone()
        assert after is not None
        d["index_bytes_after"] = after["index_bytes"]
        if after["rows"] and (reason or not baseline):
            d["baseline_bytes_per_row"] = after["index_bytes"] / after["rows"]
    return d


def _rewrite(ctx: JobContext, conn: psycopg.Connection[DictRow], language: str,
             batch_size: int, stale: int) -> None:
    """Passes over the table in id order until no row has another configuration."""
    d = ctx.details
    d.update(rewritten=0, batches=0, passes=0, slowest_batch_seconds=0.0)
    total_seconds = 0.0
    remaining = stale
    while remaining and d["passes"] < MAX_PASSES:
        d["passes"] += 1
        after = UUID(int=0)
        while True:
            ctx.check()
            started = time.monotonic()
            with conn.transaction():
                row = conn.execute(Q["reindex_batch"], {
                    "after": after, "limit": batch_size, "config": language}).fetchone()
            assert row is not None  # scalar subqueries only: always one row
            # A batch fills the GIN index's pending list; whichever insert finds it full must
            # merge it, and that would be an ingest commit stalling for seconds. Merging it
            # here, after every batch, keeps that cost on the reindex.
            conn.execute(Q["reindex_clean_pending_list"])
            seconds = time.monotonic() - started
            if not row["scanned"]:
                break
            after = row["last_id"]
            d["batches"] += 1
            d["rewritten"] += row["changed"]
            total_seconds += seconds
            d["slowest_batch_seconds"] = round(max(d["slowest_batch_seconds"], seconds), 4)
            ctx.progress("recomputing search vectors", d["rewritten"], max(stale, d["rewritten"]))
        count = conn.execute(Q["reindex_count_stale"], {"config": language}).fetchone()
        assert count is not None
        remaining = count["stale"]
    d["stale_after"] = remaining
    if d["batches"]:
        d["mean_batch_seconds"] = round(total_seconds / d["batches"], 4)
    if remaining:
        raise JobFailed(f"{remaining} documents still use another text search configuration "
                        f"after {MAX_PASSES} passes: something keeps writing them with the old "
                        "search.language (a daemon not yet reloaded?)")
