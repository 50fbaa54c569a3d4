"""CPU per PDF, child processes included: a fresh child per PDF (today) beside the pool.

    python -m benchmarks.pdf_cpu [--pdfs 100] [--pages 2] [--runs 3] [--pool-size N]

The PDFs are the benchmark corpus's (`benchmarks.run.make_corpus`, made with
`tests.samples.make_pdf`). Each run extracts all of them one after the other, in one thread:

  fresh   `extract()` of `alfrd_daemon.extract.dispatch`: one `pdf_worker` child per PDF
  pool    `ExtractorPool.run("pdf", …)`, the pool started and closed inside the measurement,
          so its children's start-up is paid by these PDFs
  steady  the same pool run, without its start-up and close: what each further PDF costs

CPU = user + system of this process (RUSAGE_SELF) plus that of its children: RUSAGE_CHILDREN
counts a child once it is reaped, so `fresh` and `pool` read it after the last child exited;
`steady` reads the live children from /proc. Prints the median of the runs and every run.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from alfrd_daemon.extract.api import ExtractLimits
from alfrd_daemon.extract.dispatch import extract
from alfrd_daemon.extract.pool import ExtractorPool, children_cpu_seconds, default_size
from benchmarks.run import make_corpus

LIMITS = ExtractLimits()


def cpu_now() -> float:
    """CPU seconds of this process and of every child it has reaped."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run_fresh(pdfs: list[Path], pool_size: int) -> tuple[float, float]:
    for path in pdfs:
        extract(path, LIMITS)
    return 0.0, 0.0


def measure(fn: Callable[[list[Path], int], tuple[float, float]], pdfs: list[Path],
            pool_size: int) -> dict[str, float]:
    """{"cpu_ms", "wall_ms"} per PDF, plus "steady_cpu_ms" for the pool."""
    cpu0, wall0 = cpu_now(), time.monotonic()
    steady_cpu, steady_n = fn(pdfs, pool_size)
    cpu1, wall1 = cpu_now(), time.monotonic()
    n = len(pdfs)
    out = {"cpu_ms": (cpu1 - cpu0) * 1000 / n, "wall_ms": (wall1 - wall0) * 1000 / n}
    if steady_n:
        out["steady_cpu_ms"] = steady_cpu * 1000 / steady_n
    return out


def run_pool(pdfs: list[Path], pool_size: int) -> tuple[float, float]:
    pool = ExtractorPool(pool_size, memory_limit_mb=LIMITS.memory_limit_mb)
    try:
        pool.start()
        pids = pool.pids()
        before = cpu_self() + children_cpu_seconds(pids)
        for path in pdfs:
            pool.run("pdf", path, LIMITS)
        # No child is recycled within 500 documents, so `pids` are still the children.
        after = cpu_self() + children_cpu_seconds(pids)
    finally:
        pool.close()
    return after - before, float(len(pdfs))


def cpu_self() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pdfs", type=int, default=100)
    parser.add_argument("--pages", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pool-size", type=int, default=default_size())
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="alfrd-pdf-cpu-") as tmp:
        pdfs = make_corpus(Path(tmp) / "corpus", 0, args.pdfs, args.pages)
        extract(pdfs[0], LIMITS)  # warm the page cache and this process's imports
        runs: dict[str, list[dict[str, float]]] = {"fresh": [], "pool": []}
        for _ in range(args.runs):  # interleaved, so that a noisy neighbour hits both
            runs["fresh"].append(measure(run_fresh, pdfs, args.pool_size))
            runs["pool"].append(measure(run_pool, pdfs, args.pool_size))
    report(runs, args)


def report(runs: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    print(f"{args.pdfs} PDFs of {args.pages} pages, pool size {args.pool_size}, "
          f"{args.runs} runs; CPU and wall per PDF in ms (median, then every run)")
    rows = [("fresh child per PDF", "fresh", "cpu_ms"), ("pool incl. start-up", "pool", "cpu_ms"),
            ("pool steady state", "pool", "steady_cpu_ms")]
    print(f"{'':22} {'CPU ms/PDF':>11}  {'runs':<26} {'wall ms/PDF':>11}")
    for title, key, field in rows:
        cpu = [r[field] for r in runs[key]]
        wall = [r["wall_ms"] for r in runs[key]]
        every = " ".join(f"{v:.2f}" for v in cpu)
        wall_text = f"{statistics.median(wall):.2f}" if field == "cpu_ms" else ""
        print(f"{title:22} {statistics.median(cpu):>11.2f}  {every:<26} {wall_text:>11}")
    fresh = statistics.median(r["cpu_ms"] for r in runs["fresh"])
    pool = statistics.median(r["cpu_ms"] for r in runs["pool"])
    print(f"pool/fresh CPU = {pool / fresh:.3f}  (target: pool <= 10 ms CPU per PDF)")


if __name__ == "__main__":
    main()
