"""One function per scenario: each takes the run's `Bench` and returns its figures.

Each scenario works in its own freshly created and migrated database, dropped at the end,
except search and reindex, which share the database of generated documents.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import math
import os
import random
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg.rows import dict_row

from alfrd_daemon.db.queries import QUERIES
from alfrd_daemon.db.search import plan_search, search_params
from alfrd_daemon.db.search import search as alfrd_search
from benchmarks.corpus import TextMaker, copy_corpus, generate_documents, make_corpus, vocabulary
from benchmarks.harness import (
    COPY_COLUMNS,
    BenchDaemon,
    CpuSplit,
    Listener,
    Server,
    StealMeter,
    copy_limit,
    db_summary,
    log,
    naive_peer,
    scalar,
)
from benchmarks.profiling import Profiler
from tests.helpers import REPO, alfrd_env, run_cli


@dataclass
class Bench:
    """What every scenario may use: the options, the server, a scratch dir and the corpus."""

    args: argparse.Namespace
    server: Server
    work: Path
    stack: contextlib.ExitStack
    corpus: list[Path] = field(default_factory=list)
    generated: tuple[str, float] | None = None  # (url, seconds it took) once made

    def generated_documents(self) -> tuple[str, float]:
        """The database of --search-docs generated rows; made once, dropped at the run's end."""
        if self.generated is None and self.args.search_url:
            self.generated = (self.args.search_url, 0.0)
        if self.generated is None:
            url = self.stack.enter_context(self.server.database("search"))
            self.generated = (url, generate_documents(url, self.args.search_docs,
                                                      self.args.search_words))
        return self.generated


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# --- the reference points ------------------------------------------------------------------------

def limit(b: Bench) -> dict[str, Any]:
    """Read + sha256 + text of every file, then ONE COPY into documents (single thread)."""
    files = copy_corpus(b.corpus, b.work / "limit")
    with b.server.database("limit") as url:
        steal = StealMeter()
        timing = copy_limit(files, url)
        stolen = steal.share()
        summary = db_summary(url)
    return {"files": len(files), "seconds": timing["seconds"],
            "files_per_s": len(files) / timing["seconds"],
            "read_hash_seconds": timing["read_hash_seconds"], "cpu_steal_share": stolen,
            **summary}


def naive(b: Bench) -> dict[str, Any]:
    """Per file: read, sha256, text, INSERT, commit, rename to done/ (single thread)."""
    files = copy_corpus(b.corpus, b.work / "naive" / "in")
    with b.server.database("naive") as url:
        steal = StealMeter()
        secs = naive_peer(files, b.work / "naive" / "done", url)
        stolen = steal.share()
        summary = db_summary(url)
    return {"files": len(files), "seconds": secs, "files_per_s": len(files) / secs,
            "cpu_steal_share": stolen, **summary}


# --- the daemon's throughput ---------------------------------------------------------------------

def backlog(b: Bench) -> dict[str, Any]:
    """The daemon with the corpus already in the inbox (catch-up scan)."""
    return _ingest(b, b.corpus, "backlog", live=False, profile=True)


def live(b: Bench) -> dict[str, Any]:
    """The daemon running; the corpus renamed into the inbox from a staging dir."""
    return _ingest(b, b.corpus, "live", live=True, profile=True)


def nofsync(b: Bench) -> dict[str, Any]:
    """The backlog with store.fsync: false (report only)."""
    return _ingest(b, b.corpus, "nofsync", live=False, profile=True, fsync=False)


def rss(b: Bench) -> dict[str, Any]:
    """A backlog of --backlog files: throughput and peak RSS (VmHWM)."""
    big = make_corpus(b.work / "bigcorpus", b.args.backlog, b.args.pdfs, b.args.pdf_pages,
                      b.args.file_size,
                      prefix="big")
    return _ingest(b, big, "rss", live=False, profile=True, sample_rss=True)


def _ingest(b: Bench, corpus: list[Path], name: str, *, live: bool, profile: bool,
            fsync: bool = True, sample_rss: bool = False) -> dict[str, Any]:
    """Run the daemon on the corpus: in the inbox before start (backlog) or renamed in from a
    staging dir after READY=1 (live). Time: first file available to the last commit's NOTIFY
    receipt."""
    a = b.args
    workers = a.workers
    base = b.work / name
    base.mkdir(parents=True)
    staging = base / "staging"
    with b.server.database(name) as url:
        d = BenchDaemon(base, url, workers, fsync=fsync, processes=a.processes)
        files = copy_corpus(corpus, staging if live else d.inbox)
        os.sync()  # the copy's dirty pages should not be charged to the daemon's fsyncs
        listener = Listener(url)
        result: dict[str, Any] = {"files": len(files), "workers": workers,
                                  "processes": a.processes, "fsync": fsync}
        prof = None
        rss_samples: list[int] = []
        tree_samples: list[int] = []
        try:
            d.start()
            result["startup_seconds"] = d.ready_at - d.spawned_at
            if profile and a.profile is not None:
                prof = Profiler(d.pid, a.profile, name, a.profile_seconds, a.profile_gil)
            cpu = CpuSplit(d.pid, b.server.postmaster).begin()
            if live:
                t0 = time.time()
                for p in files:
                    os.rename(p, d.inbox / p.name)
                result["drop_seconds"] = time.time() - t0
            else:
                t0 = d.ready_at
            deadline = time.time() + max(600, len(files) / 20)
            dumped = False
            while listener.count() < len(files) and time.time() < deadline:
                d.assert_alive()
                if sample_rss:
                    rss_samples.append(d.memory_kb().get("VmRSS", 0))
                    tree_samples.append(d.tree_rss_kb())
                if prof is not None and not dumped and time.time() - t0 > 5:
                    prof.snapshot()
                    dumped = True
                time.sleep(0.25)
            t_end = listener.last_time()
            n = listener.count()
            result.update(cpu.end())
            vm = d.memory_kb()
            result.update({
                "committed": n, "seconds": t_end - t0, "files_per_s": n / (t_end - t0),
                "vmhwm_mb": vm.get("VmHWM", 0) / 1024, "vmrss_end_mb": vm.get("VmRSS", 0) / 1024,
                "complete": n >= len(files)})
            if rss_samples:
                result["vmrss_max_sampled_mb"] = max(rss_samples) / 1024
                result["tree_rss_max_sampled_mb"] = max(tree_samples) / 1024
            if n < len(files):
                log(f"{name}: only {n}/{len(files)} committed before the deadline")
        finally:
            if prof is not None:
                result["profile"] = prof.finish()
            d.stop()
            listener.close()
        result.update(db_summary(url))
        result["inbox_left"] = sum(1 for e in os.scandir(d.inbox) if e.is_file())
        errors = [ln for ln in d.log()[-200000:].splitlines()
                  if "ERROR" in ln or "Traceback" in ln]
        result["daemon_error_lines"] = len(errors)
    # The scenario's files stay until the run's end (run.py removes the work folder): removing
    # them here made the next scenario's daemon slow on a journal-less ext4, whose inode
    # allocator passes over inodes freed in the last 60-360 s (BENCHMARKS.md, 2026-12-04),
    # a cost only the daemon paid: the peers make no new files while timed.
    return result


# --- latency -------------------------------------------------------------------------------------

def latency(b: Bench) -> dict[str, Any]:
    """Close-to-commit latency at paced rates (--latency-rates files/s, --latency-seconds each)."""
    rates = [int(x) for x in b.args.latency_rates.split(",") if x.strip()]
    seconds = b.args.latency_seconds
    base = b.work / "latency"
    base.mkdir(parents=True)
    tm = TextMaker(seed=99)
    out: dict[str, Any] = {}
    with b.server.database("latency") as url:
        d = BenchDaemon(base, url, b.args.workers, processes=b.args.processes)
        listener = Listener(url)
        try:
            d.start()
            total_sent = 0
            for rate in rates:
                out[str(rate)] = _paced(d, listener, url, tm, rate, seconds, total_sent)
                total_sent += out[str(rate)]["files"]
                time.sleep(0.5)
            out["vmhwm_mb"] = d.memory_kb().get("VmHWM", 0) / 1024
        finally:
            d.stop()
            listener.close()
    return out  # its files go with the work folder at the run's end, as in _ingest


def _paced(d: BenchDaemon, listener: Listener, url: str, tm: TextMaker, rate: int,
           seconds: float, sent_before: int) -> dict[str, Any]:
    """Write `rate` files a second for `seconds`; latency = close to commit NOTIFY receipt."""
    n = max(1, int(rate * seconds))
    closes: dict[str, float] = {}
    payloads = [tm.text(10_000_000 * rate + i).encode() for i in range(n)]
    steal = StealMeter()
    t0 = time.time()
    for i, data in enumerate(payloads):
        due = t0 + i / rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        with open(d.inbox / f"lat{rate}_{i:06d}.txt", "wb") as f:
            f.write(data)
        closes[hashlib.sha256(data).hexdigest()] = time.time()
    sent_secs = time.time() - t0
    listener.wait_count(sent_before + n, 120, d.assert_alive)
    with psycopg.connect(url) as c:
        rows = c.execute(
            "SELECT id::text, sha256, extract(epoch FROM created_at) FROM documents"
            " WHERE sha256 = ANY(%s)", (list(closes),)).fetchall()
    with listener.lock:
        recv = dict(listener.received)
    lat = [(recv[i] - closes[s]) * 1000 for i, s, _ in rows if i in recv]
    lat_created = [(float(ca) - closes[s]) * 1000 for _, s, ca in rows]
    figures = {
        "target_rate": rate, "files": n, "achieved_rate": n / sent_secs,
        "committed": len(lat),
        "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99),
        "max_ms": max(lat) if lat else float("nan"),
        "p99_created_at_ms": pct(lat_created, 99), "steal_share": steal.share()}
    log(f"latency {rate}/s: p50 {figures['p50_ms']:.0f} ms, "
        f"p99 {figures['p99_ms']:.0f} ms ({len(lat)}/{n})")
    return figures


# --- search and reindex --------------------------------------------------------------------------

def search_queries() -> dict[str, list[str]]:
    words = vocabulary()
    rng = random.Random(5)
    return {
        "rare (rank 2000-5000)": [words[rng.randrange(2000, 5000)] for _ in range(30)],
        "mid (rank 100-1000)": [words[rng.randrange(100, 1000)] for _ in range(30)],
        "two words (mid + rare)": [f"{words[rng.randrange(100, 1000)]} "
                                   f"{words[rng.randrange(1000, 5000)]}" for _ in range(30)],
        "common (rank 1-20)": [words[rng.randrange(0, 20)] for _ in range(5)],
        "uniform over vocabulary": [words[rng.randrange(0, 5000)] for _ in range(60)],
        # Prefix matching (every word is a prefix query): a word without its last two
        # letters (at least three remain), and the broadest prefix `alfrd search` expands.
        "prefix of a rare word": [_prefix(words[rng.randrange(2000, 5000)], 2)
                                  for _ in range(30)],
        "prefix of a mid word": [_prefix(words[rng.randrange(100, 1000)], 2) for _ in range(30)],
        "three-letter prefix": [words[rng.randrange(0, 5000)][:3] for _ in range(30)],
    }


def _prefix(word: str, cut: int) -> str:
    return word[:max(3, len(word) - cut)]


def search(b: Bench, repeats: int = 3) -> dict[str, Any]:
    """--search-docs generated documents: query p50/p95 per band, plans, the CLI once."""
    url, gen_seconds = b.generated_documents()
    out: dict[str, Any] = {"documents": b.args.search_docs, "generate_seconds": gen_seconds,
                           "rank_window": b.args.rank_window}
    groups = search_queries()
    with psycopg.connect(url) as c:
        c.execute("SELECT 1")
        out["table_mb"] = scalar(c, "SELECT pg_total_relation_size('documents') / 1048576.0")
        out["index_mb"] = scalar(
            c, "SELECT pg_relation_size('documents_search_vector_idx') / 1048576.0")
        # The plan of one query of each kind `alfrd search` treats differently: a rare word
        # (every match from the GIN bitmap), the prefix of a mid word (that bitmap cut to the
        # newest rows at 1,000,000 documents) and a common word (the created_at walk).
        plans = {}
        for label, term in (("rare", groups["rare (rank 2000-5000)"][0]),
                            ("mid prefix", groups["prefix of a mid word"][0]),
                            ("common", groups["common (rank 1-20)"][0])):
            params = search_params(term, config="english", limit=20, window=b.args.rank_window)
            with c.cursor(row_factory=dict_row) as cur:
                plan = plan_search(cur, params)
            lines = c.execute("EXPLAIN (ANALYZE, BUFFERS) " + QUERIES[plan.query],
                              {**params, "newest_rows": plan.newest_rows},
                              prepare=False).fetchall()
            plans[label] = (term, "\n".join(r[0] for r in lines))
        out["explain"] = {f"{label}: {term}": text for label, (term, text) in plans.items()}
        out["gin_index_used"] = "documents_search_vector_idx" in plans["rare"][1]
        out["mid_prefix_bitmap_and"] = "BitmapAnd" in plans["mid prefix"][1]
        all_ms: list[float] = []
        bands: dict[str, Any] = {}
        for band, terms in groups.items():
            ms, hits = [], []
            broad_count = 0
            strategies: dict[str, int] = {}
            # Common terms match most rows and take seconds each: one pass is enough.
            for _ in range(repeats):
                for term in terms:
                    # What `alfrd search` runs: a capped match count, then full ranking or,
                    # for a broad query, ranking of the newest matches only.
                    t0 = time.perf_counter()
                    found = alfrd_search(c, term, config="english", limit=20,
                                         window=b.args.rank_window)
                    ms.append((time.perf_counter() - t0) * 1000)
                    hits.append(len(found.rows))
                    broad_count += found.broad
                    strategies[found.strategy] = strategies.get(found.strategy, 0) + 1
            matches = scalar(c, "SELECT count(*) FROM documents WHERE search_vector @@ "
                             "to_tsquery('english', %s)",
                             (search_params(terms[0], config="english")["tsquery"],))
            bands[band] = {"queries": len(ms), "p50_ms": pct(ms, 50), "p95_ms": pct(ms, 95),
                           "max_ms": max(ms), "example": terms[0],
                           "example_matching_docs": matches, "broad_queries": broad_count,
                           "strategies": strategies}
            all_ms.extend(ms)
            log(f"search {band}: p50 {pct(ms, 50):.1f} ms p95 {pct(ms, 95):.1f} ms "
                f"(e.g. {terms[0]!r} matches {matches}; {strategies})")
        out["bands"] = bands
        out["p50_ms"] = pct(all_ms, 50)
        out["p95_ms"] = pct(all_ms, 95)
    out.update(_search_cli(b.work, url, groups["two words (mid + rare)"][0]))
    return out


def _search_cli(work: Path, url: str, term: str) -> dict[str, Any]:
    """End to end: the real CLI once (Python start-up, config, connect, query, print)."""
    cfg = work / "search-cli.yaml"
    cfg.write_text(yaml.safe_dump({"state_dir": str(work / "search-var"),
                                   "inbox": {"path": str(work / "search-inbox")},
                                   "database": {"url": url}, "logging": {"level": "WARNING"}}))
    t0 = time.perf_counter()
    r = run_cli(cfg, "search", term, timeout=120, check=False)
    out: dict[str, Any] = {"cli_seconds": time.perf_counter() - t0, "cli_query": term,
                           "cli_ok": r.returncode == 0,
                           "cli_result_lines": len(r.stdout.splitlines())}
    if r.returncode != 0:
        log(f"alfrd search failed: {r.stderr[-1000:]}")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import alfrd_daemon.cli.main"], env=alfrd_env(),
                   cwd=REPO, capture_output=True, timeout=60)
    out["cli_import_seconds"] = time.perf_counter() - t0
    return out


def reindex(b: Bench, batch: int = 500) -> dict[str, Any]:
    """The reindex job (search.language → simple: batches of `batch` rows, each its own
    transaction, GIN pending list merged after each) while a writer thread inserts rows one by
    one (commit each)."""
    url, _ = b.generated_documents()
    n_docs = b.args.search_docs
    work = b.work
    tm = TextMaker(seed=123)
    stop = threading.Event()
    commits: list[float] = []
    writer_error: list[str] = []

    def writer() -> None:
        i = 0
        try:
            with psycopg.connect(url, autocommit=True) as c:
                while not stop.is_set():
                    text = tm.text(50_000_000 + i, 1000)
                    c.execute(
                        f"INSERT INTO documents ({', '.join(COPY_COLUMNS)}) VALUES "
                        f"(%s, %s, %s, 'extracted', 'text/plain', %s, %s)",
                        (hashlib.sha256(text.encode()).hexdigest(), f"w_{i}.txt", f"w_{i}.txt",
                         len(text), text))
                    commits.append(time.time())
                    i += 1
                    time.sleep(0.005)
        except Exception as exc:
            writer_error.append(repr(exc))

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    time.sleep(2.0)
    warm_end = time.time()
    # The real job, as `alfrd jobs run reindex` runs it after search.language changed.
    cfg = work / "reindex.yaml"
    cfg.write_text(yaml.safe_dump({
        "state_dir": str(work / "reindex-var"), "inbox": {"path": str(work / "reindex-inbox")},
        "database": {"url": url}, "search": {"language": "simple"},
        "jobs": {"reindex": {"batch_size": batch}}, "logging": {"level": "WARNING"}}))
    t0 = time.perf_counter()
    job = run_cli(cfg, "jobs", "run", "reindex", timeout=7200, check=False)
    with psycopg.connect(url) as c:
        row = c.execute("SELECT details FROM job_runs WHERE job = 'reindex' "
                        "ORDER BY started_at DESC LIMIT 1").fetchone()
    details = row[0] if row else {}
    batches = int(details.get("batches", 0))
    slowest = float(details.get("slowest_batch_seconds", 0.0))
    if job.returncode != 0:
        log(f"reindex job failed ({job.returncode}): {job.stderr[-1000:]}")
    secs = time.perf_counter() - t0
    reindex_end = time.time()
    time.sleep(1.0)
    stop.set()
    t.join(10)

    def max_gap(lo: float, hi: float) -> float:
        pts = [x for x in commits if lo <= x <= hi]
        return max(y - x for x, y in itertools.pairwise([lo, *pts, hi]))

    during = [x for x in commits if warm_end <= x <= reindex_end]
    gaps = sorted((y - x for x, y in itertools.pairwise(during)), reverse=True)
    return {"documents": n_docs, "batch": batch, "batches": batches, "seconds": secs,
            "rows_per_s": n_docs / secs if secs else 0.0, "slowest_batch_s": slowest,
            "writer_commits_during": len(during),
            "max_stall_s": max_gap(warm_end, reindex_end),
            "baseline_max_gap_s": max_gap(warm_end - 2.0, warm_end),
            "top_gaps_s": [round(g, 3) for g in gaps[:5]],
            "writer_error": writer_error[0] if writer_error else None,
            "job_exit_code": job.returncode, "job_details": details}
