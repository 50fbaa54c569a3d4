"""The run's figures for people and for files: side-by-side tables, the targets met or missed
(issues 7, 12 and 15), and the JSON of every figure."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# Targets of issue 7, raised by issue 12 (≥ 0.5 of the limit, was 0.4) and 15 (every band).
TARGET_VS_LIMIT = 0.50
TARGET_VS_NAIVE = 2.0
TARGET_P99_MS_AT_200 = 250.0
TARGET_RSS_MB = 200.0
TARGET_SEARCH_P95_MS = 50.0
TARGET_STALL_S = 1.0

THROUGHPUT_ROWS = (("limit", "limit: read+hash, one COPY (1 thread)"),
                   ("naive", "naive peer: INSERT+commit+mv per file, no fsync (1 thread)"),
                   ("backlog", "alfrd backlog (catch-up scan)"),
                   ("live", "alfrd live drop (rename in)"),
                   ("nofsync", "alfrd backlog, store.fsync: false"),
                   ("rss", "alfrd big backlog"))


def fmt(v: Any, nd: int = 1) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "n/a"
        return f"{v:,.{nd}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    for r in cells:
        lines.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
                     + " |")
    return "\n".join(lines)


def report(res: dict[str, Any]) -> str:
    sc = res["scenarios"]
    sections = (throughput(sc), latency(sc), search(sc), reindex(sc), targets(sc))
    return "\n".join(s for s in sections if s)


def _rate(sc: dict[str, Any], name: str) -> float | None:
    return sc.get(name, {}).get("files_per_s")


def throughput(sc: dict[str, Any]) -> str:
    lim, nai = _rate(sc, "limit"), _rate(sc, "naive")
    rows = []
    for key, label in THROUGHPUT_ROWS:
        r = sc.get(key)
        if not r or "files_per_s" not in r:
            continue
        fps = r["files_per_s"]
        rows.append([label, r["files"], r["seconds"], fps,
                     f"{fps / lim:.0%}" if lim else "n/a",
                     f"{fps / nai:.2f}x" if nai else "n/a", steal_text(r.get("cpu_steal_share"))])
    if not rows:
        return ""
    return ("Throughput (same corpus, same server, fresh database each; steal: the share of the "
            "machine's CPU time the hypervisor gave to others meanwhile)\n"
            + table(["scenario", "files", "seconds", "files/s", "vs limit", "vs naive", "steal"],
                    rows)
            + ratios(sc) + cpu_split(sc))


ALFRD_SCENARIOS = ("backlog", "live", "nofsync", "rss")


def ratios(sc: dict[str, Any]) -> str:
    """One line per daemon scenario in a form a script can read (issue 12)."""
    lim, nai = _rate(sc, "limit"), _rate(sc, "naive")
    lines = []
    for key in ALFRD_SCENARIOS:
        fps = _rate(sc, key)
        if fps is None or not lim or not nai:
            continue
        lines.append(f"    {key + ':':9s}alfrd/limit = {fps / lim:.2f}  "
                     f"alfrd/naive = {fps / nai:.2f}")
    return "\n\n" + "\n".join(lines) if lines else ""


def cpu_split(sc: dict[str, Any]) -> str:
    """CPU seconds (and µs per committed file) of the daemon, its extractor children and every
    PostgreSQL process, from the first file available to the last commit."""
    rows = []
    for key in ALFRD_SCENARIOS:
        r = sc.get(key)
        if not r or "cpu_daemon_s" not in r or not r.get("committed"):
            continue
        n = r["committed"]
        parts = [r["cpu_daemon_s"], r["cpu_children_s"], r["cpu_postgres_s"]]
        rows.append([key, *("n/a" if math.isnan(v) else f"{v:.1f} s ({v / n * 1e6:,.0f} µs/file)"
                            for v in parts),
                     f"{sum(parts) / r['seconds']:.2f}", steal_text(r.get("cpu_steal_share"))])
    if not rows:
        return ""
    return ("\n\nCPU split (user + system; daemon: every ingest process of it (workers.processes); "
            "children: their extractors and tools; PostgreSQL: the server's postmaster and every "
            "process under it; steal: the machine's CPU time the hypervisor gave to others)\n"
            + table(["scenario", "daemon", "children", "PostgreSQL", "cores busy", "steal"],
                    rows))


def steal_text(share: float | None) -> str:
    return "n/a" if share is None or math.isnan(share) else f"{share:.0%}"


def latency(sc: dict[str, Any]) -> str:
    lat = sc.get("latency")
    if not lat:
        return ""
    rows = [[f"{v['target_rate']}/s", v["achieved_rate"], v["files"], v["committed"],
             v["p50_ms"], v["p95_ms"], v["p99_ms"], v["max_ms"], steal_text(v.get("steal_share"))]
            for v in lat.values() if isinstance(v, dict)]
    return ("\nClose-to-commit latency (ms; commit = NOTIFY receipt)\n"
            + table(["rate", "achieved/s", "files", "committed", "p50", "p95", "p99", "max",
                     "steal"], rows))


def search(sc: dict[str, Any]) -> str:
    s = sc.get("search")
    if not s:
        return ""
    rows = [[b, v["queries"], v["example_matching_docs"], v["p50_ms"], v["p95_ms"],
             v["max_ms"]] for b, v in s["bands"].items()]
    return (f"\nSearch over {s['documents']:,} documents (ms, in-process, "
            f"alfrd_daemon.db.search.search LIMIT 20; GIN index used for a rare term: "
            f"{s['gin_index_used']}; BitmapAnd for a mid word's prefix: "
            f"{s.get('mid_prefix_bitmap_and')})\n"
            + table(["query band", "queries", "docs matching e.g.", "p50", "p95", "max"], rows)
            + f"\noverall (all bands): p50 {fmt(s['p50_ms'])} ms, "
            f"p95 {fmt(s['p95_ms'])} ms; CLI end to end once: "
            f"{fmt(s['cli_seconds'], 2)} s (of which Python import "
            f"{fmt(s['cli_import_seconds'], 2)} s)")


def reindex(sc: dict[str, Any]) -> str:
    ri = sc.get("reindex")
    if not ri:
        return ""
    return (f"\nReindex of {ri['documents']:,} rows in batches of {ri['batch']}: "
            f"{fmt(ri['seconds'])} s ({fmt(ri['rows_per_s'], 0)} rows/s), slowest batch "
            f"{fmt(ri['slowest_batch_s'], 3)} s; concurrent writer max gap "
            f"{fmt(ri['max_stall_s'], 3)} s (before reindex "
            f"{fmt(ri['baseline_max_gap_s'], 3)} s), {ri['writer_commits_during']} "
            "writer commits during")


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def targets(sc: dict[str, Any]) -> str:
    lim, nai = _rate(sc, "limit"), _rate(sc, "naive")
    rows = []
    for key in ("backlog", "live"):
        fps = _rate(sc, key)
        if fps is not None and lim:
            rows.append([f"alfrd {key} ≥ {TARGET_VS_LIMIT:.0%} of COPY limit", f"{fps / lim:.0%}",
                         _verdict(fps / lim >= TARGET_VS_LIMIT)])
        if fps is not None and nai:
            rows.append([f"alfrd {key} ≥ 2x naive peer", f"{fps / nai:.2f}x",
                         _verdict(fps / nai >= TARGET_VS_NAIVE)])
    lat = sc.get("latency")
    if lat and "200" in lat:
        v = lat["200"]["p99_ms"]
        rows.append(["p99 close-to-commit < 250 ms at 200 files/s", f"{v:.0f} ms",
                     _verdict(v < TARGET_P99_MS_AT_200)])
    rs = sc.get("rss")
    if rs:
        # The extractor pool counts: the daemon plus its children, sampled 4 times a second.
        v = max(rs["vmhwm_mb"], rs.get("tree_rss_max_sampled_mb", 0.0))
        rows.append([f"peak RSS < 200 MB with {rs['files']:,}-file backlog, extractors "
                     f"counted", f"{v:.0f} MB (daemon alone {rs['vmhwm_mb']:.0f})",
                     _verdict(v < TARGET_RSS_MB)])
    s = sc.get("search")
    if s:
        worst = max(s["bands"], key=lambda band: s["bands"][band]["p95_ms"])
        v = s["bands"][worst]["p95_ms"]
        rows.append([f"search p95 < 50 ms in every band at {s['documents']:,} docs",
                     f"{v:.1f} ms ({worst})", _verdict(v < TARGET_SEARCH_P95_MS)])
    ri = sc.get("reindex")
    if ri:
        v = ri["max_stall_s"]
        rows.append(["reindex never stalls ingest > 1 s", f"{v:.2f} s",
                     _verdict(v <= TARGET_STALL_S)])
    if not rows:
        return ""
    return "\nTargets (issues 7, 12 and 15)\n" + table(["target", "measured", "result"], rows)


def write_json(res: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(res, indent=2, default=str))


def write_profiles(res: dict[str, Any], profile_dir: Path) -> None:
    """Each profiled scenario's summary beside its raw stacks."""
    for name in ("backlog", "nofsync", "rss"):
        figures = res["scenarios"].get(name, {})
        if "profile" in figures:
            (profile_dir / f"{name}-summary.json").write_text(
                json.dumps(figures["profile"], indent=2))
