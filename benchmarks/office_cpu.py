"""CPU per office file, daemon side and extractor-child side, for a typical docx and xlsx.

    python -m benchmarks.office_cpu [--files 200] [--runs 3]

The files are made here with python-docx and openpyxl: the docx has 40 paragraphs (~3 pages),
a 10x4 table, a header and a footer (~37 KB); the xlsx two sheets of 200x5 cells, words and
numbers (~20 KB). Each run sends the same file `--files` times through `extract()` with one
long-lived child, as the daemon does:

  daemon   CPU of this process (RUSAGE_SELF) across the `extract()` calls: sniffing, the request,
           reading and decoding the reply, cleaning the text
  child    CPU of the child from /proc (10 ms ticks, hence many files): the zip checks and the
           library's reading
  first    the child's CPU for the first office file it reads (imports of the office libraries)

Prints the median of the runs and every run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import docx
import openpyxl

from alfrd_daemon.extract.api import ExtractLimits
from alfrd_daemon.extract.dispatch import extract
from alfrd_daemon.extract.pool import ExtractorPool, children_cpu_seconds, self_cpu_seconds

LIMITS = ExtractLimits()
WORDS = ("invoice", "amount", "vendor", "payment", "delivery", "contract", "meter", "tax")


def make_docx(path: Path) -> Path:
    document = docx.Document()
    document.sections[0].header.paragraphs[0].text = "ACME Utilities - customer letter"
    document.sections[0].footer.paragraphs[0].text = "Page footer, account 12345"
    for i in range(40):
        document.add_paragraph(" ".join(WORDS[(i + j) % len(WORDS)] for j in range(25)))
    grid = document.add_table(rows=10, cols=4)
    for r in range(10):
        for c in range(4):
            grid.cell(r, c).text = f"{WORDS[(r + c) % len(WORDS)]} {r * 4 + c}"
    document.save(path)
    return path


def make_xlsx(path: Path) -> Path:
    workbook = openpyxl.Workbook()
    for index, sheet in enumerate((workbook.active, workbook.create_sheet("Second"))):
        for r in range(200):
            sheet.append([WORDS[(r + index) % len(WORDS)], r, r * 1.25, f"item {r}", r % 7])
    workbook.save(path)
    return path


def measure(path: Path, files: int) -> dict[str, float]:
    with ExtractorPool(1, memory_limit_mb=LIMITS.memory_limit_mb) as pool:
        pids = pool.pids()
        start = children_cpu_seconds(pids)
        extract(path, LIMITS, pool=pool)
        first = children_cpu_seconds(pids) - start
        child0, own0 = children_cpu_seconds(pids), self_cpu_seconds()
        for _ in range(files):
            extract(path, LIMITS, pool=pool)
        child1, own1 = children_cpu_seconds(pids), self_cpu_seconds()
        assert pool.pids() == pids, "a child was replaced during the measurement"
    return {"daemon_ms": (own1 - own0) * 1000 / files,
            "child_ms": (child1 - child0) * 1000 / files, "first_ms": first * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="alfrd-office-cpu-") as tmp:
        samples = {"docx": make_docx(Path(tmp) / "letter.docx"),
                   "xlsx": make_xlsx(Path(tmp) / "ledger.xlsx")}
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in samples}
        for _ in range(args.runs):
            for name, path in samples.items():
                runs[name].append(measure(path, args.files))
        print(f"{args.files} files per run, {args.runs} runs; CPU ms per file "
              "(median, then every run)")
        for name, path in samples.items():
            print(f"{name} ({path.stat().st_size} bytes)")
            for field in ("daemon_ms", "child_ms", "first_ms"):
                values = [r[field] for r in runs[name]]
                every = " ".join(f"{v:.2f}" for v in values)
                print(f"  {field:10} {statistics.median(values):8.2f}   {every}")


if __name__ == "__main__":
    main()
