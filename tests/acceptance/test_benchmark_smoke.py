"""Smoke test of `python -m benchmarks.run`: a tiny corpus, every default scenario plus search
and reindex, figures for each and the table and JSON produced. Asserts no timing at all."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from benchmarks import run as bench


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value) and value > 0


def test_benchmark_smoke(request: pytest.FixtureRequest, tmp_path: Path,
                         capsys: pytest.CaptureFixture[str]) -> None:
    admin = os.environ.get("ALFRD_TEST_DATABASE_URL") or request.getfixturevalue("pg_admin")
    out = tmp_path / "bench.json"
    rc = bench.main([
        "--database-url", admin, "--files", "200", "--pdfs", "3",
        "--latency-rates", "100", "--latency-seconds", "1",
        "--search-docs", "2000", "--search-words", "40", "--backlog", "300",
        "--json", str(out), "--workdir", str(tmp_path)])
    assert rc == 0
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())
    sc = res["scenarios"]
    assert set(sc) == {"limit", "naive", "backlog", "live", "latency", "rss", "search",
                       "reindex"}

    for name in ("limit", "naive", "backlog", "live"):
        r = sc[name]
        assert r["files"] == 203, (name, r)
        assert r["rows"] == 203 and r["failed_rows"] == 0, (name, r)
        assert _positive(r["seconds"]) and _positive(r["files_per_s"]), (name, r)
        # NaN only where the run took under a clock tick of the machine (limit, naive)
        assert 0 <= r["cpu_steal_share"] <= 1 or math.isnan(r["cpu_steal_share"]), (name, r)
    for name in ("backlog", "live"):
        assert sc[name]["committed"] == 203 and sc[name]["inbox_left"] == 0
        assert _positive(sc[name]["vmhwm_mb"])
        # the daemon hashes and commits and the server writes the rows: both did measurable
        # work (three small PDFs may take the extractor children under one clock tick)
        assert _positive(sc[name]["cpu_daemon_s"]) and _positive(sc[name]["cpu_postgres_s"])
        assert sc[name]["cpu_children_s"] >= 0
        # /proc/stat moves on while a scenario runs, so the share is a number, not NaN
        assert 0 <= sc[name]["cpu_steal_share"] <= 1, sc[name]
        assert f"{name}:" in printed and "alfrd/limit = 0." in printed

    # The backlog's PDFs start the extractor pool; its children count in the peak.
    rs = sc["rss"]
    assert rs["committed"] == rs["files"] == 303 and rs["inbox_left"] == 0
    assert rs["tree_rss_max_sampled_mb"] > rs["vmrss_max_sampled_mb"] > 0

    lat = sc["latency"]["100"]
    assert lat["committed"] == lat["files"] == 100
    assert all(_positive(lat[k]) for k in ("p50_ms", "p95_ms", "p99_ms", "achieved_rate"))
    assert 0 <= lat["steal_share"] <= 1

    s = sc["search"]
    assert s["documents"] == 2000 and s["cli_ok"] and s["rank_window"] == 200
    assert _positive(s["p50_ms"]) and _positive(s["p95_ms"])
    assert all(_positive(b["p95_ms"]) for b in s["bands"].values())
    assert s["explain"]

    ri = sc["reindex"]
    assert ri["writer_error"] is None
    assert _positive(ri["seconds"]) and _positive(ri["max_stall_s"])
    assert ri["batches"] >= 4 and ri["writer_commits_during"] > 0

    for heading in ("Throughput", "files/s", "vs limit", "vs naive", "CPU split", "steal",
                    "Close-to-commit latency",
                    "Search over 2,000 documents", "Reindex of", "Targets (issues 7, 12 and 15)"):
        assert heading in printed, heading
    assert "PASS" in printed or "MISS" in printed
