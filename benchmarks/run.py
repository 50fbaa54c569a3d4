"""alfrd-daemon benchmarks: the daemon side by side with the COPY limit and a naive peer.

    python -m benchmarks.run [--files N] [--pdfs M] [--database-url URL] [--only NAME,...]
                             [--json OUT] [--backlog N] [--search-docs N] [--nofsync]
                             [--profile DIR]

Scenarios (each in its own freshly created and migrated database, dropped at the end; they run
in this order, whatever the order given to --only):

  limit     read + sha256 + text of every file, then ONE COPY into documents (single thread)
  naive     per file: read, sha256, text, INSERT, commit, rename to done/ (single thread)
  backlog   the daemon with the corpus already in the inbox (catch-up scan)
  live      the daemon running; the corpus renamed into the inbox from a staging dir
  latency   close-to-commit latency at paced rates (--latency-rates, default 50,200,1000/s)
  nofsync   backlog with store.fsync: false (report only; off unless --nofsync)
  rss       backlog of --backlog N files + --pdfs (default off): throughput, peak RSS (VmHWM)
            and the sampled RSS of the daemon with its extractor children
  search    --search-docs N generated documents (default off): search query p50/p95
  reindex   same database as search: batched UPDATE search_config, max ingest stall

Timing: wall clock on the client; commit time of a daemon row = receipt of its
NOTIFY alfrd_documents by a LISTENing connection of this process (sent at commit).

Layout: corpus.py makes the files and rows, harness.py runs the server, the daemon and the
reference points, scenarios.py has one function per scenario, report.py prints the tables.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # also when run as `python benchmarks/run.py`
    sys.path.insert(0, str(REPO))

from alfrd_daemon.db.search import DEFAULT_RANK_WINDOW  # noqa: E402
from benchmarks import scenarios  # noqa: E402
from benchmarks.corpus import make_corpus  # noqa: E402
from benchmarks.harness import DEFAULT_URL, Server, log  # noqa: E402
from benchmarks.report import fmt, report, write_json, write_profiles  # noqa: E402


@dataclass(frozen=True)
class Scenario:
    name: str
    run: Callable[[scenarios.Bench], dict[str, Any]]
    needs_corpus: bool = False
    # On without --only when this holds for the options (None: always).
    default: Callable[[argparse.Namespace], bool] | None = None
    # The size option it needs and the size it gets when named in --only without one.
    size: tuple[str, int] | None = None


SCENARIOS = (
    Scenario("limit", scenarios.limit, needs_corpus=True),
    Scenario("naive", scenarios.naive, needs_corpus=True),
    Scenario("backlog", scenarios.backlog, needs_corpus=True),
    Scenario("live", scenarios.live, needs_corpus=True),
    Scenario("latency", scenarios.latency),
    Scenario("nofsync", scenarios.nofsync, needs_corpus=True, default=lambda a: a.nofsync),
    Scenario("rss", scenarios.rss, default=lambda a: bool(a.backlog),
             size=("backlog", 100_000)),
    Scenario("search", scenarios.search, default=lambda a: bool(a.search_docs),
             size=("search_docs", 1_000_000)),
    Scenario("reindex", scenarios.reindex,
             default=lambda a: bool(a.search_docs) and not a.no_reindex,
             size=("search_docs", 1_000_000)),
)
NAMES = [s.name for s in SCENARIOS]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=20_000, help="text files (~1 KB) in the corpus")
    p.add_argument("--pdfs", type=int, default=100, help="PDFs in the corpus")
    p.add_argument("--pdf-pages", type=int, default=2)
    p.add_argument("--file-size", type=int, default=1000, help="bytes per text file")
    p.add_argument("--database-url", help=f"admin conninfo (default {DEFAULT_URL} if it "
                   "answers, else a private cluster)")
    p.add_argument("--only", help="comma-separated scenarios: " + ",".join(NAMES))
    p.add_argument("--json", type=Path, help="write all figures to this JSON file")
    p.add_argument("--workers", type=int, default=4, help="daemon workers.count")
    p.add_argument("--processes", type=int, default=2,
                   help="daemon workers.processes (ingest processes; default: 2, the cores here)")
    p.add_argument("--latency-rates", default="50,200,1000")
    p.add_argument("--latency-seconds", type=float, default=10.0)
    p.add_argument("--backlog", type=int, default=0,
                   help="files for the rss scenario (0: off; 100000 for the target)")
    p.add_argument("--search-docs", type=int, default=0,
                   help="documents for search + reindex (0: off; 1000000 for the target)")
    p.add_argument("--search-words", type=int, default=80, help="words per generated document")
    p.add_argument("--no-reindex", action="store_true", help="skip reindex after search")
    p.add_argument("--rank-window", type=int, default=DEFAULT_RANK_WINDOW,
                   help="newest matches a broad search ranks (alfrd search uses the default)")
    p.add_argument("--search-url", default="",
                   help="search an existing database of generated rows instead of making one "
                        "(kept; reindex changes its search_config)")
    p.add_argument("--nofsync", action="store_true",
                   help="also run the backlog with store.fsync: false (report only)")
    p.add_argument("--profile", type=Path,
                   help="py-spy the daemon during backlog and live; raw stacks and a summary here")
    p.add_argument("--profile-seconds", type=int, default=20)
    p.add_argument("--profile-gil", action="store_true",
                   help="py-spy --gil: sample only the thread holding the GIL (CPU hot spots)")
    p.add_argument("--workdir", type=Path, help="parent of the temp dir (default: $TMPDIR)")
    return p.parse_args(argv)


def choose(a: argparse.Namespace) -> list[Scenario]:
    """The scenarios to run, in table order; sizes for those named in --only without one."""
    if not a.only:
        return [s for s in SCENARIOS if s.default is None or s.default(a)]
    named = {n.strip() for n in a.only.split(",") if n.strip()}
    bad = sorted(named - set(NAMES))
    if bad:
        raise SystemExit(f"unknown scenario(s) {bad}; choose from {NAMES}")
    chosen = [s for s in SCENARIOS if s.name in named]
    for s in chosen:
        if s.size and not getattr(a, s.size[0]):
            setattr(a, s.size[0], s.size[1])
    return chosen


def machine(server: Server) -> dict[str, Any]:
    return {"cpus": os.cpu_count(), "python": sys.version.split()[0],
            "postgres": server.version, "pg_settings": server.settings,
            "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)}


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    chosen = choose(a)
    work = Path(tempfile.mkdtemp(prefix="alfrd-bench-", dir=a.workdir))
    os.chmod(work, 0o755)
    server = Server(a.database_url)
    res: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(server),
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "scenarios": {},
    }
    sc = res["scenarios"]
    try:
        with contextlib.ExitStack() as stack:
            bench = scenarios.Bench(a, server, work, stack)
            if any(s.needs_corpus for s in chosen):
                t0 = time.perf_counter()
                bench.corpus = make_corpus(work / "corpus", a.files, a.pdfs, a.pdf_pages,
                                           a.file_size)
                log(f"corpus: {len(bench.corpus)} files in {time.perf_counter() - t0:.1f} s")
            for s in chosen:
                t0 = time.perf_counter()
                log(f"scenario {s.name} ...")
                sc[s.name] = r = s.run(bench)
                log(f"scenario {s.name} done in {time.perf_counter() - t0:.1f} s: "
                    + ", ".join(f"{k}={fmt(v)}" for k, v in r.items()
                                if isinstance(v, (int, float)) and not isinstance(v, bool))[:400])
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    print(report(res), flush=True)
    if a.json:
        write_json(res, a.json)
    if a.profile:
        write_profiles(res, a.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
