"""What writing a committer batch costs PostgreSQL and the daemon, per row: the committer's
`write_rows` (one statement for the batch's documents, one for its arrivals) beside the same
rows written as it did before, one INSERT per document and per arrival in one pipelined
transaction (`executemany`). Same rows (the benchmark corpus' ~1 KB texts), same batch size,
a fresh database for each way, each run.

    python -m benchmarks.rows_cpu [--rows 10000] [--batch 256] [--runs 3] [--database-url URL]

CPU of the server process serving the connection (its /proc/PID/stat utime + stime: the
server must run on this machine) and of this process (time.process_time), per row.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from alfrd_daemon.db.queries import QUERIES
from alfrd_daemon.ingest.committer import write_rows
from benchmarks.corpus import TextMaker
from benchmarks.harness import Server, StealMeter

Items = list[tuple[dict[str, Any], dict[str, Any]]]


class OneConnection:
    """The `Database` interface write_rows uses, on one connection whose server pid we know."""

    def __init__(self, url: str):
        self.conn = psycopg.connect(url)
        self.pid = self.conn.info.backend_pid

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        yield self.conn


def items(first: int, n: int, tm: TextMaker) -> Items:
    out: Items = []
    for i in range(first, first + n):
        text = tm.text(i)
        sha = hashlib.sha256(text.encode()).hexdigest()
        name = f"doc_{i:07d}.txt"
        row: dict[str, Any] = {
               "id": None, "sha256": sha, "original_name": name, "source_path": name,
               "tags": [], "document_type": None, "correspondent": None, "rule_tags": [],
               "mime_type": "text/plain", "size_bytes": len(text),
               "stored_path": f"{sha[:2]}/{sha}", "status": "extracted", "title": None,
               "extracted_text": text, "extractor": "text/1", "search_config": "english",
               "metadata": Jsonb({"encoding": "utf-8"}), "error": None, "store_id": None,
               "document_date": None}
        arrival = {"claim_key": uuid.uuid4().hex, "source_path": name, "original_name": name,
                   "size_bytes": len(text), "instance": "bench"}
        out.append((row, arrival))
    return out


def per_row_statements(db: OneConnection, batch: Items) -> None:
    """The committer's write before: executemany of the one-row INSERTs, pipelined."""
    with db.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.executemany(QUERIES["insert_document"], [row for row, _ in batch], returning=True)
        ids = []
        while True:
            got = cur.fetchone()
            ids.append(got["id"] if got else None)
            if not cur.nextset():
                break
        cur.executemany(QUERIES["insert_arrival"],
                        [{**a, "document_id": i, "outcome": "ingested"}
                         for (_, a), i in zip(batch, ids, strict=True)], returning=True)
        cur.execute(QUERIES["notify_documents"], {"ids": [str(i) for i in ids]})


def server_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(url: str, write: Callable[[Any, Items], object], rows: Items,
            batch: int) -> dict[str, float]:
    db = OneConnection(url)
    try:
        steal = StealMeter()
        server0, client0, wall0 = server_cpu(db.pid), time.process_time(), time.perf_counter()
        for k in range(0, len(rows), batch):
            write(db, rows[k:k + batch])
        n = len(rows)
        return {"server_us": (server_cpu(db.pid) - server0) / n * 1e6,
                "client_us": (time.process_time() - client0) / n * 1e6,
                "rows_per_s": n / (time.perf_counter() - wall0), "steal": steal.share()}
    finally:
        db.conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--database-url")
    a = ap.parse_args()
    server = Server(a.database_url)
    ways: dict[str, Callable[[Any, Items], object]] = {
        "one INSERT per row (before)": per_row_statements, "write_rows (one statement)": write_rows}
    got: dict[str, list[dict[str, float]]] = {w: [] for w in ways}
    tm = TextMaker()
    try:
        for run in range(a.runs):
            rows = items(run * a.rows, a.rows, tm)
            for way, write in ways.items():
                with server.database(f"rows_cpu_{len(got[way])}") as url:
                    got[way].append(measure(url, write, rows, a.batch))
    finally:
        server.close()
    print(f"{a.rows} rows of ~1 KB text, batches of {a.batch}, {a.runs} runs (median; all runs)")
    for way, runs in got.items():
        cells = []
        for key, unit in (("server_us", "µs/row server"), ("client_us", "µs/row client"),
                          ("rows_per_s", "rows/s")):
            values = [r[key] for r in runs]
            cells.append(f"{statistics.median(values):,.0f} {unit} "
                         f"({', '.join(f'{v:,.0f}' for v in values)})")
        steal = ", ".join(f"{r['steal']:.0%}" for r in runs)
        print(f"  {way:28s} " + "; ".join(cells) + f"; steal {steal}")


if __name__ == "__main__":
    main()
