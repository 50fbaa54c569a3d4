"""OCR throughput beside the bare `tesseract` command, and ingest latency while OCR is busy.

    python -m benchmarks.ocr [--pages 24] [--runs 3] [--workers N] [--lat-scans 40]
                             [--lat-rate 50] [--lat-seconds 20] [--only pages,latency]
                             [--database-url URL] [--json OUT]

pages    A4 pages at 300 dpi, dense generated text (PNG, grayscale), read three ways in one
         run, each with the same N processes (default: every core), one thread each
         (OMP_THREAD_LIMIT=1):
           tesseract  the bare command, `tesseract PAGE stdout -l eng --tessdata-dir D`, N at
                      a time, D = the same language data the daemon uses
           reader     `ocr_document` on the daemon's OCR pool (the engine, no database)
           daemon     `alfrd run` with ocr.workers = N: the pages moved into the inbox at
                      once, timed until every row is 'extracted' (ingest, queue, OCR, commit)
         Prints pages/s of each and daemon/tesseract (goal >= 0.9).
latency  `alfrd run` with OCR at its default workers; --lat-scans pages queued first, then
         text files written at --lat-rate files/s for --lat-seconds; close-to-commit p50/p99
         of the text files (goal p99 < 250 ms) and how many scans were still waiting when the
         last text file was written (the queue must stay full for the figure to count).

Every run's figures are printed, and the median over --runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import psycopg  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from alfrd_daemon.extract.pool import default_size  # noqa: E402
from alfrd_daemon.ocr.reader import (  # noqa: E402
    OcrLimits,
    ocr_document,
    start_ocr_pool,
    tessdata_dir,
)
from benchmarks.corpus import TextMaker  # noqa: E402
from benchmarks.harness import BenchDaemon, Listener, Server, log, scalar  # noqa: E402
from benchmarks.scenarios import _paced  # noqa: E402

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
A4_300DPI = (2480, 3508)


def make_pages(root: Path, n: int, seed: int = 5) -> list[Path]:
    """`n` distinct A4 pages of ~45 lines of text each."""
    root.mkdir(parents=True, exist_ok=True)
    font = ImageFont.truetype(FONT, 38)
    tm = TextMaker(seed=seed)
    out = []
    for i in range(n):
        img = Image.new("L", A4_300DPI, 255)
        draw = ImageDraw.Draw(img)
        words = tm.text(i, 4000).split()
        lines = [" ".join(words[k:k + 11]) for k in range(0, len(words), 11)][:45]
        for row, line in enumerate(lines):
            draw.text((150, 180 + row * 70), line, font=font, fill=0)
        path = root / f"scan_{i:04d}.png"
        img.save(path)
        out.append(path)
    return out


def bare_tesseract(pages: list[Path], workers: int) -> float:
    """Seconds for the bare command over `pages`, `workers` at a time."""
    exe = shutil.which("tesseract")
    if exe is None:
        raise SystemExit("the baseline needs the tesseract command (apt install tesseract-ocr)")
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    tessdata = str(tessdata_dir())

    def one(page: Path) -> None:
        subprocess.run([exe, str(page), "stdout", "-l", "eng", "--tessdata-dir", tessdata],
                       env=env, check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    t0 = time.monotonic()
    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(one, pages))
    return time.monotonic() - t0


def reader(pages: list[Path], workers: int) -> float:
    limits = OcrLimits()
    pool = start_ocr_pool(workers, limits)
    try:
        t0 = time.monotonic()
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(lambda p: ocr_document(pool, p, "image/png", ["eng"], limits), pages))
        return time.monotonic() - t0
    finally:
        pool.close()


def daemon(pages: list[Path], workers: int, server: Server, work: Path) -> float:
    with server.database("ocr_pages") as url:
        d = BenchDaemon(work, url, 2, extra={"ocr": {"enabled": True, "workers": workers}})
        try:
            d.start()
            staged = work / "staged"
            staged.mkdir()
            for p in pages:
                shutil.copyfile(p, staged / p.name)
            t0 = time.monotonic()
            for p in pages:
                os.rename(staged / p.name, d.inbox / p.name)
            deadline = time.monotonic() + 60 * len(pages)
            with psycopg.connect(url, autocommit=True) as c:
                while time.monotonic() < deadline:
                    done = scalar(c, "SELECT count(*) FROM documents WHERE status = 'extracted'"
                                     " AND extracted_text <> ''")
                    if done >= len(pages):
                        return time.monotonic() - t0
                    d.assert_alive()
                    time.sleep(0.1)
            raise SystemExit(f"the daemon OCR'd only {done} of {len(pages)} pages")
        finally:
            d.stop()


def pages_scenario(a: argparse.Namespace, server: Server, work: Path) -> dict[str, Any]:
    pages = make_pages(work / "pages", a.pages)
    runs: list[dict[str, float]] = []
    for r in range(a.runs):
        t = bare_tesseract(pages, a.workers)
        e = reader(pages, a.workers)
        dwork = work / f"daemon{r}"
        dwork.mkdir()
        w = daemon(pages, a.workers, server, dwork)
        shutil.rmtree(dwork, ignore_errors=True)
        run = {"tesseract_pages_s": len(pages) / t, "reader_pages_s": len(pages) / e,
               "daemon_pages_s": len(pages) / w}
        run["daemon_over_tesseract"] = run["daemon_pages_s"] / run["tesseract_pages_s"]
        runs.append(run)
        log(f"pages run {r + 1}: " + ", ".join(f"{k} {v:.3f}" for k, v in run.items()))
    return {"pages": len(pages), "workers": a.workers, "runs": runs,
            "median": {k: statistics.median(run[k] for run in runs) for k in runs[0]}}


def latency_scenario(a: argparse.Namespace, server: Server, work: Path) -> dict[str, Any]:
    scans = make_pages(work / "scans", a.lat_scans, seed=8)
    runs = []
    tm = TextMaker(seed=77)
    for r in range(a.runs):
        rwork = work / f"lat{r}"
        rwork.mkdir()
        with server.database(f"ocr_lat{r}") as url:
            d = BenchDaemon(rwork, url, 2, extra={"ocr": {"enabled": True}})
            listener = Listener(url)
            try:
                d.start()
                for p in scans:
                    shutil.copyfile(p, d.inbox / p.name)
                if not listener.wait_count(len(scans), 120, d.assert_alive):
                    raise SystemExit("the scans were not committed")
                fig = _paced(d, listener, url, tm, a.lat_rate, a.lat_seconds, len(scans))
                with psycopg.connect(url) as c:
                    fig["scans_waiting_at_end"] = scalar(
                        c, "SELECT count(*) FROM documents WHERE status = 'pending'")
            finally:
                d.stop()
                listener.close()
        shutil.rmtree(rwork, ignore_errors=True)
        runs.append(fig)
        log(f"latency run {r + 1}: p99 {fig['p99_ms']:.0f} ms, "
            f"{fig['scans_waiting_at_end']} scans still waiting")
    return {"rate": a.lat_rate, "seconds": a.lat_seconds, "scans": len(scans), "runs": runs,
            "median_p99_ms": statistics.median(run["p99_ms"] for run in runs),
            "max_p99_ms": max(run["p99_ms"] for run in runs)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="benchmarks.ocr")
    ap.add_argument("--pages", type=int, default=24)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=default_size())
    ap.add_argument("--lat-scans", type=int, default=40)
    ap.add_argument("--lat-rate", type=int, default=50)
    ap.add_argument("--lat-seconds", type=float, default=20.0)
    ap.add_argument("--only", default="pages,latency")
    ap.add_argument("--database-url")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    only = {x.strip() for x in a.only.split(",") if x.strip()}
    server = Server(a.database_url)
    work = Path(tempfile.mkdtemp(prefix="alfrd-bench-ocr-"))
    out: dict[str, Any] = {"cpus": os.cpu_count(), "tessdata": str(tessdata_dir())}
    try:
        if "pages" in only:
            out["pages"] = pages_scenario(a, server, work)
        if "latency" in only:
            out["latency"] = latency_scenario(a, server, work)
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(out, indent=2)
    print(text)
    if a.json:
        a.json.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
