"""py-spy profiles of the daemon during a scenario: raw collapsed stacks, summarised into
inclusive and self percentages per function and into the pipeline's phases."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.harness import log


class Profiler:
    """py-spy record (raw collapsed stacks) of a pid; summarised into percentages."""

    def __init__(self, pid: int, out_dir: Path, name: str, duration: int, gil: bool = False):
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.raw = out_dir / f"{name}.txt"
        self.svg = out_dir / f"{name}.svg"
        self.dump = out_dir / f"{name}-dump.txt"
        self.pid = pid
        exe = shutil.which("py-spy")
        self.proc = None
        if not exe:
            log("py-spy not found (pip install py-spy): no profile")
            return
        self.proc = subprocess.Popen(
            [exe, "record", "--format", "raw", "-o", str(self.raw), "--pid", str(pid),
             "-d", str(duration), "-r", "100", "--nonblocking", "--threads",
             *(["--gil"] if gil else [])],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def snapshot(self) -> None:
        exe = shutil.which("py-spy")
        if exe:
            r = subprocess.run([exe, "dump", "--pid", str(self.pid), "--nonblocking"],
                               capture_output=True, text=True, timeout=30)
            self.dump.write_text(r.stdout + r.stderr)

    def finish(self) -> dict[str, Any]:
        if self.proc is None:
            return {}
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(10)
        if not self.raw.exists():
            stderr = self.proc.stderr.read() if self.proc.stderr is not None else b""
            return {"error": (stderr or b"").decode()[-500:]}
        return summarise_profile(self.raw)


def summarise_profile(raw: Path, top: int = 25) -> dict[str, Any]:
    """Inclusive and self percentages per function over all sampled (non-idle) stacks."""
    incl: Counter[str] = Counter()
    self_: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        threads[frames[0].split(" (")[0] if frames else "?"] += n
        seen = set()
        for f in frames[1:]:
            key = f.split(" (")[0] + " (" + f.rsplit("/", 1)[-1] if " (" in f else f
            if key not in seen:
                incl[key] += n
                seen.add(key)
        if len(frames) > 1:
            f = frames[-1]
            self_[f.split(" (")[0] + " (" + f.rsplit("/", 1)[-1] if " (" in f else f] += n

    def share(c: Counter[str]) -> list[tuple[str, float]]:
        return [(k, round(100.0 * v / total, 1)) for k, v in c.most_common(top)]

    return {"samples": total, "phases": profile_phases(raw), "threads": share(threads),
            "inclusive": share(incl), "self": share(self_)}


# (phase, substrings any of which in a stack puts the sample there); first match wins.
PHASES: list[tuple[str, tuple[str, ...]]] = [
    ("fsync: store dir/file", ("_fsync_dir", "_fsync (", "sync_filesystem")),
    ("pool check on checkout (SELECT 1)", ("check_connection",)),
    ("db: insert+arrival+notify+commit", ("write_rows", "write_one", "Committer._write")),
    ("writer check before the claim (read lease)", ("Ingestor._writer_holds", "writer_open")),
    ("claim: rename into .alfrd/claimed", ("ClaimArea.claim",)),
    ("read + sha256 + private copy", ("Reader.read", "Store.receive")),
    ("extract (text; PDF in an extractor)", ("Reader.extract",)),
    ("store: content address (mkdir + rename)", ("Store.adopt", "Reader.adopt")),
    ("release claim (lease, fstat, unlink)", ("ClaimArea.release_unchanged", "ClaimArea.release")),
    ("other ingest (row build, logging)", ("Ingestor.process", "RowBuilder")),
    ("readiness loop (tracker: stat, heap, scans)", ("Tracker.",)),
    ("watch: inotify read + event dispatch", ("inotify", "watchdog", "dispatch_events",
                                              "EventEmitter", "InotifySource")),
    ("psycopg pool maintenance", ("psycopg_pool",)),
]


def profile_phases(raw: Path) -> list[tuple[str, float]]:
    counts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        for phase, needles in PHASES:
            if any(x in stack for x in needles):
                counts[phase] += n
                break
        else:
            counts["other"] += n
    return [(k, round(100.0 * v / max(total, 1), 1)) for k, v in counts.most_common()]
