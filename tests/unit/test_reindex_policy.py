"""When the search index is rebuilt: after a large rewrite, or when it has bloated."""

from __future__ import annotations

from alfrd_daemon.jobs.reindex import needs_rebuild

POLICY = {"rebuild_fraction": 0.2, "bloat_factor": 2.0}


def test_large_rewrite_rebuilds() -> None:
    assert needs_rebuild(rewritten=1000, rows=1000, index_bytes=1, baseline_bytes_per_row=None,
                         **POLICY) == "rewrote 1000 of 1000 rows"
    assert needs_rebuild(rewritten=200, rows=1000, index_bytes=1, baseline_bytes_per_row=None,
                         **POLICY)


def test_small_rewrite_without_bloat_does_not() -> None:
    assert needs_rebuild(rewritten=199, rows=1000, index_bytes=100_000,
                         baseline_bytes_per_row=100.0, **POLICY) is None
    assert needs_rebuild(rewritten=0, rows=0, index_bytes=8192, baseline_bytes_per_row=None,
                         **POLICY) is None


def test_bloat_against_the_last_rebuild() -> None:
    reason = needs_rebuild(rewritten=0, rows=1000, index_bytes=250_000,
                           baseline_bytes_per_row=100.0, **POLICY)
    assert reason == "index is 2.5x its size after the last rebuild"
    assert needs_rebuild(rewritten=0, rows=1000, index_bytes=199_000,
                         baseline_bytes_per_row=100.0, **POLICY) is None
