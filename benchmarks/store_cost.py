"""What the immutable store costs per file: a private copy of the hashed bytes (today) next to
the hard link of the claimed inode it replaced (the baseline), measured in the same run.

    python -m benchmarks.store_cost [--files 5000] [--size 1000] [--runs 3] [--dir DIR]

Each run makes N claimed files of SIZE bytes, then stores them both ways into fresh stores on
the same filesystem: "link" hashes the claimed file and hard-links it (the old Store.put);
"copy" is Store.receive + Store.adopt (hash while copying into a temporary file, then give it
its content address). Both fsync each stored file and its folder when --fsync (the daemon's
default is a group flush per batch, so --no-fsync is the closer figure for a backlog). Prints
the median files/s of the runs and every run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from alfrd_daemon.ingest.store import DIR_MODE, Store


def make_files(top: Path, count: int, size: int) -> list[Path]:
    top.mkdir(parents=True)
    paths = []
    for i in range(count):
        path = top / f"f{i:06d}.txt"
        path.write_bytes(secrets.token_bytes(size))
        paths.append(path)
    return paths


def store_by_link(files: list[Path], store: Store, fsync: bool) -> float:
    start = time.perf_counter()
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            h = hashlib.sha256()
            while chunk := os.read(fd, 1 << 20):
                h.update(chunk)
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        dst = store.path(h.hexdigest())
        dst.parent.parent.mkdir(exist_ok=True, mode=DIR_MODE)
        dst.parent.mkdir(exist_ok=True, mode=DIR_MODE)
        os.link(path, dst)
        if fsync:
            _fsync_dir(dst.parent)
    return time.perf_counter() - start


def store_by_copy(files: list[Path], store: Store, fsync: bool) -> float:
    start = time.perf_counter()
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            incoming = store.receive(fd, limit=1 << 40, sync=fsync)
        finally:
            os.close(fd)
        store.adopt(incoming, sync=fsync)
    return time.perf_counter() - start


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=5000)
    p.add_argument("--size", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--fsync", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--dir", type=Path, help="parent of the work folder (default $TMPDIR)")
    args = p.parse_args()
    rates: dict[str, list[float]] = {"link": [], "copy": []}
    for run in range(args.runs):
        for way, fn in (("link", store_by_link), ("copy", store_by_copy)):
            work = Path(tempfile.mkdtemp(prefix="alfrd-store-cost-", dir=args.dir))
            try:
                files = make_files(work / "claimed", args.files, args.size)
                store = Store(work / "store")
                store.open()
                os.sync()  # start each measurement with nothing dirty
                seconds = fn(files, store, args.fsync)
                rates[way].append(args.files / seconds)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        print(f"run {run + 1}: link {rates['link'][-1]:,.0f} files/s, "
              f"copy {rates['copy'][-1]:,.0f} files/s")
    link, copy = statistics.median(rates["link"]), statistics.median(rates["copy"])
    print(f"median of {args.runs} runs, {args.files} files of {args.size} bytes, "
          f"fsync {'on' if args.fsync else 'off'}: link {link:,.0f} files/s, "
          f"copy {copy:,.0f} files/s, copy/link = {copy / link:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
