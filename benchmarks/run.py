"""alfrd-daemon benchmarks: the daemon side by side with the COPY limit and a naive peer.

    python -m benchmarks.run [--files N] [--pdfs M] [--database-url URL] [--only NAME,...]
                             [--json OUT] [--backlog N] [--search-docs N] [--nofsync]
                             [--profile DIR]

Scenarios (each in its own freshly created and migrated database, dropped at the end):

  limit     read + sha256 + text of every file, then ONE COPY into documents (single thread)
  naive     per file: read, sha256, text, INSERT, commit, rename to done/ (single thread)
  backlog   the daemon with the corpus already in the inbox (catch-up scan)
  live      the daemon running; the corpus renamed into the inbox from a staging dir
  latency   close-to-commit latency at paced rates (--latency-rates, default 50,200,1000/s)
  nofsync   backlog with store.fsync: false (report only; off unless --nofsync)
  rss       backlog of --backlog N files (default off): throughput and peak RSS (VmHWM)
  search    --search-docs N generated documents (default off): search query p50/p95
  reindex   same database as search: batched UPDATE search_config, max ingest stall

Timing: wall clock on the client; commit time of a daemon row = receipt of its
NOTIFY alfrd_documents by a LISTENing connection of this process (sent at commit).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import itertools
import json
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from alfrd_daemon.db import pool as dbmod  # noqa: E402
from alfrd_daemon.db.search import search  # noqa: E402

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
ALL_SCENARIOS = ["limit", "naive", "backlog", "live", "nofsync", "latency", "rss", "search",
                 "reindex"]
COPY_COLUMNS = ("sha256", "original_name", "source_path", "status", "mime_type", "size_bytes",
                "extracted_text")

# Targets from issue 7.
TARGET_VS_LIMIT = 0.40
TARGET_VS_NAIVE = 2.0
TARGET_P99_MS_AT_200 = 250.0
TARGET_RSS_MB = 200.0
TARGET_SEARCH_P95_MS = 50.0
TARGET_STALL_S = 1.0


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- vocabulary and corpus ------------------------------------------------------------------

_ONSETS = ["b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w",
           "br", "cr", "dr", "fr", "gr", "pl", "st", "tr", "sh", "ch"]
_NUCLEI = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io"]
_CODAS = ["", "", "n", "r", "l", "s", "t", "nd", "rk", "m"]


def vocabulary(size: int = 5000, seed: int = 7) -> list[str]:
    """`size` distinct pronounceable pseudo-words; index 0 is the most frequent."""
    rng = random.Random(seed)
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        n = rng.choice((2, 2, 3, 3, 4))
        w = "".join(rng.choice(_ONSETS) + rng.choice(_NUCLEI) + rng.choice(_CODAS)
                    for _ in range(n))
        if w not in seen and len(w) >= 4:
            seen.add(w)
            words.append(w)
    return words


def zipf_cum_weights(size: int, s: float = 1.0) -> list[float]:
    acc, out = 0.0, []
    for r in range(1, size + 1):
        acc += 1.0 / r**s
        out.append(acc)
    return out


class TextMaker:
    def __init__(self, seed: int = 11):
        self.words = vocabulary()
        self.cum = zipf_cum_weights(len(self.words))
        self.rng = random.Random(seed)

    def text(self, i: int, size: int = 1000) -> str:
        head = f"Document {i} reference R{i:07d}\n"
        parts = [head]
        n = len(head)
        while n < size:
            line = " ".join(self.rng.choices(self.words, cum_weights=self.cum, k=12)) + "\n"
            parts.append(line)
            n += len(line)
        return "".join(parts)


def make_corpus(root: Path, files: int, pdfs: int, pdf_pages: int, size: int = 1000,
                prefix: str = "doc") -> list[Path]:
    """`files` text files of ~`size` bytes plus `pdfs` PDFs, all distinct, flat in `root`."""
    from tests.samples import make_pdf

    root.mkdir(parents=True, exist_ok=True)
    tm = TextMaker()
    out = []
    for i in range(files):
        p = root / f"{prefix}_{i:07d}.txt"
        p.write_text(tm.text(i, size))
        out.append(p)
    for j in range(pdfs):
        pages = [f"{prefix} pdf {j} page {k} " + tm.text(j * 1000 + k, 60).replace("\n", " ")
                 for k in range(pdf_pages)]
        p = root / f"{prefix}_{j:07d}.pdf"
        p.write_bytes(make_pdf(pages))
        out.append(p)
    return out


def copy_corpus(src: list[Path], dst: Path) -> list[Path]:
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for p in src:
        q = dst / p.name
        shutil.copyfile(p, q)
        out.append(q)
    return out


def file_row(path: Path, data: bytes) -> tuple[Any, ...]:
    """The row the limit and the naive peer write: same columns the daemon fills for text."""
    sha = hashlib.sha256(data).hexdigest()
    if path.suffix == ".pdf":
        import pypdf

        reader = pypdf.PdfReader(io.BytesIO(data))
        text = "\n".join(page.extract_text() or "" for page in reader.pages)
        mime = "application/pdf"
    else:
        text = data.decode("utf-8", errors="replace")
        mime = "text/plain"
    return (sha, path.name, path.name, "extracted", mime, len(data), text)


# --- percentiles --------------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


# --- server and databases ---------------------------------------------------------------------

def with_dbname(conninfo: str, dbname: str) -> str:
    params = conninfo_to_dict(conninfo)
    params["dbname"] = dbname
    return make_conninfo(**params)


class Server:
    """The PostgreSQL the run uses: the given/default URL, else a private cluster."""

    def __init__(self, url: str | None, keep_root: Path):
        self.cluster = None
        self.root: Path | None = None
        candidates = [url] if url else [os.environ.get("ALFRD_BENCH_DATABASE_URL") or
                                        DEFAULT_URL]
        self.admin = ""
        for cand in candidates:
            try:
                with psycopg.connect(cand, connect_timeout=3) as c:
                    c.execute("SELECT 1")
                self.admin = cand
                break
            except psycopg.Error as exc:
                if url:
                    raise SystemExit(f"cannot connect to {url}: {exc}") from exc
        if not self.admin:
            from alfrd_daemon.db.cluster import Cluster

            self.root = Path(tempfile.mkdtemp(prefix="alfrd-bench-pg-"))
            os.chmod(self.root, 0o755)
            log(f"no server at {DEFAULT_URL}; starting a private cluster in {self.root}")
            self.cluster = Cluster(self.root / "pg")
            self.cluster.start()
            self.admin = self.cluster.conninfo("postgres")
        with psycopg.connect(self.admin) as c:
            self.version = c.execute("SHOW server_version").fetchone()[0]
            self.settings = dict(c.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('synchronous_commit',"
                " 'fsync', 'shared_buffers', 'wal_level', 'max_wal_size')").fetchall())
        self.prefix = f"alfrd_bench_{os.getpid()}"

    @contextlib.contextmanager
    def database(self, scenario: str) -> Iterator[str]:
        name = f"{self.prefix}_{scenario}"
        with psycopg.connect(self.admin, autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = with_dbname(self.admin, name)
        with psycopg.connect(url) as conn:
            dbmod.migrate(conn)
        try:
            yield url
        finally:
            with psycopg.connect(self.admin, autocommit=True) as c:
                c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)))

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.destroy()
            shutil.rmtree(self.root, ignore_errors=True)


# --- LISTEN alfrd_documents ------------------------------------------------------------------

class Listener:
    """Records (document id, receipt time) for every NOTIFY alfrd_documents (sent at commit)."""

    def __init__(self, url: str):
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("LISTEN alfrd_documents")
        self.received: dict[str, float] = {}
        self.order: list[float] = []
        self.lock = threading.Lock()
        self.stop_flag = False
        self.thread = threading.Thread(target=self._run, daemon=True, name="bench-listen")
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_flag:
            for n in self.conn.notifies(timeout=0.2):
                now = time.time()
                with self.lock:
                    self.received.setdefault(n.payload, now)
                    self.order.append(now)

    def count(self) -> int:
        with self.lock:
            return len(self.received)

    def wait_count(self, n: int, timeout: float, alive: Any = None) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.count() >= n:
                return True
            if alive is not None:
                alive()
            time.sleep(0.05)
        return self.count() >= n

    def last_time(self) -> float:
        with self.lock:
            return max(self.received.values()) if self.received else float("nan")

    def close(self) -> None:
        self.stop_flag = True
        self.thread.join(5)
        self.conn.close()


# --- the daemon as a subprocess ------------------------------------------------------------------

class DaemonProc:
    def __init__(self, work: Path, db_url: str, workers: int, fsync: bool = True):
        self.work = work
        self.inbox = work / "inbox"
        self.inbox.mkdir(parents=True, exist_ok=True)
        cfg = {
            "state_dir": str(work / "var"),
            "inbox": {"path": str(self.inbox)},
            "database": {"url": db_url},
            "workers": {"count": workers},
            "logging": {"level": "WARNING"},
        }
        if not fsync:
            cfg["store"] = {"fsync": False}
        self.config = work / "alfrd.yaml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.log_path = work / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_at = float("nan")
        self.spawned_at = float("nan")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "ALFRD_CONFIG",
                            "ALFRD_DATABASE_URL", "JOURNAL_STREAM")}
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        return env

    def start(self, timeout: float = 120) -> DaemonProc:
        """Start and wait for READY=1 (sd_notify on a private socket: with logging WARNING the
        INFO line `event=started` is not logged; READY=1 is sent right after it)."""
        sock_path = self.work / "notify.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(sock_path))
        sock.settimeout(0.2)
        env = self.env()
        env["NOTIFY_SOCKET"] = str(sock_path)
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.spawned_at = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alfrd_daemon", "run", "--config", str(self.config)],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
            cwd=REPO)
        deadline = time.time() + timeout
        try:
            while time.time() < deadline:
                self.assert_alive()
                try:
                    msg = sock.recv(4096)
                except TimeoutError:
                    continue
                if b"READY=1" in msg:
                    self.ready_at = time.time()
                    return self
            raise RuntimeError(f"daemon not ready in {timeout} s:\n{self.tail()}")
        finally:
            sock.close()

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-n:]
        except FileNotFoundError:
            return ""

    def assert_alive(self) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.tail()}")

    def status(self) -> dict[str, int]:
        """VmHWM / VmRSS in kB of the daemon process itself (not its children)."""
        out: dict[str, int] = {}
        assert self.proc is not None
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                k, _, v = line.partition(":")
                if k in ("VmHWM", "VmRSS"):
                    out[k] = int(v.split()[0])
        return out

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def db_summary(url: str) -> dict[str, int]:
    with psycopg.connect(url) as c:
        total, failed = c.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'failed') FROM documents"
        ).fetchone()
    return {"rows": total, "failed_rows": failed}


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
            return {"error": (self.proc.stderr.read() or b"").decode()[-500:]}
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
    ("fsync: store dir/file", ("_fsync_dir", "_fsync_file")),
    ("fsync: claimed file (_hash_fd)", ("_hash_fd (alfrd_daemon/ingest.py:290)",)),
    ("pool check on checkout (SELECT 1)", ("check_connection",)),
    ("db: insert+arrival+notify+commit", ("Ingestor._record", "Ingestor._record_folder")),
    ("claim: rename into .alfrd/claimed", ("ClaimArea.claim",)),
    ("read + sha256", ("Ingestor._read",)),
    ("extract (text; PDF child spawn)", ("Ingestor._extract",)),
    ("store: mkdir + link + chmod", ("Store.put",)),
    ("release claim (unlink)", ("ClaimArea.release",)),
    ("other ingest (row build, logging)", ("Ingestor.process",)),
    ("readiness loop (tracker: stat, heap, scans)", ("Tracker.",)),
    ("watchdog: inotify read + event dispatch", ("inotify", "watchdog", "dispatch_events",
                                                 "EventEmitter", "Watcher", "on_any_event")),
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


# --- scenarios -----------------------------------------------------------------------------------

def scenario_limit(server: Server, corpus: list[Path], work: Path) -> dict[str, Any]:
    files = copy_corpus(corpus, work / "limit")
    with server.database("limit") as url, psycopg.connect(url) as conn:
        t0 = time.perf_counter()
        rows = [file_row(p, p.read_bytes()) for p in files]
        t_read = time.perf_counter() - t0
        with conn.cursor() as cur, cur.copy(
                f"COPY documents ({', '.join(COPY_COLUMNS)}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)
        conn.commit()
        secs = time.perf_counter() - t0
        summary = db_summary(url)
    return {"files": len(files), "seconds": secs, "files_per_s": len(files) / secs,
            "read_hash_seconds": t_read, **summary}


def scenario_naive(server: Server, corpus: list[Path], work: Path) -> dict[str, Any]:
    files = copy_corpus(corpus, work / "naive" / "in")
    done = work / "naive" / "done"
    done.mkdir(parents=True)
    q = (f"INSERT INTO documents ({', '.join(COPY_COLUMNS)}) VALUES "
         f"({', '.join(['%s'] * len(COPY_COLUMNS))}) ON CONFLICT (sha256) DO NOTHING")
    with server.database("naive") as url, psycopg.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        for p in files:
            with open(p, "rb") as f:
                data = f.read()
            conn.execute(q, file_row(p, data))  # autocommit: one commit per file
            os.rename(p, done / p.name)
        secs = time.perf_counter() - t0
        summary = db_summary(url)
    return {"files": len(files), "seconds": secs, "files_per_s": len(files) / secs, **summary}


def _daemon_ingest(server: Server, corpus: list[Path], work: Path, name: str, *, mode: str,
                   workers: int, fsync: bool = True, profile_dir: Path | None = None,
                   profile_seconds: int = 20, sample_rss: bool = False,
                   profile_gil: bool = False) -> dict[str, Any]:
    """Run the daemon on the corpus: mode 'backlog' (in the inbox before start) or 'live'
    (renamed in from a staging dir after READY=1). Time: first file available to the last
    commit's NOTIFY receipt."""
    base = work / name
    base.mkdir(parents=True)
    staging = base / "staging"
    with server.database(name) as url:
        d = DaemonProc(base, url, workers, fsync=fsync)
        files = copy_corpus(corpus, d.inbox if mode == "backlog" else staging)
        os.sync()  # the copy's dirty pages should not be charged to the daemon's fsyncs
        listener = Listener(url)
        result: dict[str, Any] = {"files": len(files), "workers": workers, "fsync": fsync}
        prof = None
        rss_samples: list[int] = []
        try:
            d.start()
            result["startup_seconds"] = d.ready_at - d.spawned_at
            if profile_dir is not None:
                prof = Profiler(d.proc.pid, profile_dir, name, profile_seconds, profile_gil)
            if mode == "backlog":
                t0 = d.ready_at
            else:
                t0 = time.time()
                for p in files:
                    os.rename(p, d.inbox / p.name)
                result["drop_seconds"] = time.time() - t0
            deadline = time.time() + max(600, len(files) / 20)
            dumped = False
            while listener.count() < len(files) and time.time() < deadline:
                d.assert_alive()
                if sample_rss:
                    rss_samples.append(d.status().get("VmRSS", 0))
                if prof is not None and not dumped and time.time() - t0 > 5:
                    prof.snapshot()
                    dumped = True
                time.sleep(0.25)
            t_end = listener.last_time()
            n = listener.count()
            vm = d.status()
            result.update({
                "committed": n, "seconds": t_end - t0, "files_per_s": n / (t_end - t0),
                "vmhwm_mb": vm.get("VmHWM", 0) / 1024, "vmrss_end_mb": vm.get("VmRSS", 0) / 1024,
                "complete": n >= len(files)})
            if rss_samples:
                result["vmrss_max_sampled_mb"] = max(rss_samples) / 1024
            if n < len(files):
                log(f"{name}: only {n}/{len(files)} committed before the deadline")
        finally:
            if prof is not None:
                result["profile"] = prof.finish()
            d.stop()
            listener.close()
        result.update(db_summary(url))
        result["inbox_left"] = sum(1 for e in os.scandir(d.inbox) if e.is_file())
        errors = [ln for ln in d.tail(200000).splitlines() if "ERROR" in ln or "Traceback" in ln]
        result["daemon_error_lines"] = len(errors)
    shutil.rmtree(base, ignore_errors=True)
    return result


def scenario_latency(server: Server, work: Path, rates: list[int], seconds: float,
                     workers: int) -> dict[str, Any]:
    base = work / "latency"
    base.mkdir(parents=True)
    tm = TextMaker(seed=99)
    out: dict[str, Any] = {}
    with server.database("latency") as url:
        d = DaemonProc(base, url, workers)
        listener = Listener(url)
        try:
            d.start()
            total_sent = 0
            for rate in rates:
                n = max(1, int(rate * seconds))
                closes: dict[str, float] = {}
                payloads = [tm.text(10_000_000 * rate + i).encode() for i in range(n)]
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
                total_sent += n
                listener.wait_count(total_sent, 120, d.assert_alive)
                with psycopg.connect(url) as c:
                    rows = c.execute(
                        "SELECT id::text, sha256, extract(epoch FROM created_at) FROM documents"
                        " WHERE sha256 = ANY(%s)", (list(closes),)).fetchall()
                with listener.lock:
                    recv = dict(listener.received)
                lat = [(recv[i] - closes[s]) * 1000 for i, s, _ in rows if i in recv]
                lat_created = [(float(ca) - closes[s]) * 1000 for _, s, ca in rows]
                out[str(rate)] = {
                    "target_rate": rate, "files": n, "achieved_rate": n / sent_secs,
                    "committed": len(lat),
                    "p50_ms": pct(lat, 50), "p95_ms": pct(lat, 95), "p99_ms": pct(lat, 99),
                    "max_ms": max(lat) if lat else float("nan"),
                    "p99_created_at_ms": pct(lat_created, 99)}
                log(f"latency {rate}/s: p50 {out[str(rate)]['p50_ms']:.0f} ms, "
                    f"p99 {out[str(rate)]['p99_ms']:.0f} ms ({len(lat)}/{n})")
                time.sleep(0.5)
            vm = d.status()
            out["vmhwm_mb"] = vm.get("VmHWM", 0) / 1024
        finally:
            d.stop()
            listener.close()
    shutil.rmtree(base, ignore_errors=True)
    return out


# --- search and reindex --------------------------------------------------------------------------

GENERATE_SQL = """
INSERT INTO documents (sha256, original_name, source_path, status, mime_type, size_bytes,
                       extracted_text, created_at, updated_at)
SELECT encode(sha256(('bench-doc-' || g)::bytea), 'hex'),
       'doc_' || g || '.txt', 'gen/doc_' || g || '.txt', 'extracted', 'text/plain', 600,
       t.body, now() - (g || ' seconds')::interval, now()
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g,
LATERAL (
    SELECT string_agg((%(words)s::text[])[1 + least(%(nwords)s - 1,
                        floor(exp(random() * ln(%(nwords)s)))::int - 1)], ' ') AS body
    FROM generate_series(1, %(per_doc)s + (g %% 1)::int)
) AS t
"""


def generate_documents(url: str, n: int, per_doc: int, threads: int = 2) -> float:
    """n rows made server-side; words ~ Zipf(1) over the 5,000-word vocabulary (rank r has
    probability ∝ 1/r: rank = floor(exp(U·ln 5000))). GIN index dropped and rebuilt after."""
    words = vocabulary()
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("DROP INDEX documents_search_vector_idx")
    step = 20_000
    ranges = [(lo, min(n, lo + step - 1)) for lo in range(1, n + 1, step)]
    lock = threading.Lock()

    def worker() -> None:
        with psycopg.connect(url, autocommit=True) as c:
            while True:
                with lock:
                    if not ranges:
                        return
                    lo, hi = ranges.pop(0)
                c.execute(GENERATE_SQL, {"lo": lo, "hi": hi, "words": words,
                                         "nwords": len(words), "per_doc": per_doc})

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    t_rows = time.perf_counter() - t0
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SET maintenance_work_mem = '1GB'")
        c.execute("CREATE INDEX documents_search_vector_idx ON documents USING gin "
                  "(search_vector)")
        c.execute("VACUUM ANALYZE documents")
    log(f"generated {n} documents in {t_rows:.0f} s, index+analyze "
        f"{time.perf_counter() - t0 - t_rows:.0f} s")
    return time.perf_counter() - t0


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
    }


def scenario_search(url: str, n_docs: int, gen_seconds: float, work: Path,
                    repeats: int = 3) -> dict[str, Any]:
    q = dbmod.QUERIES["search_documents"]
    out: dict[str, Any] = {"documents": n_docs, "generate_seconds": gen_seconds}
    groups = search_queries()
    with psycopg.connect(url) as c:
        c.execute("SELECT 1")
        out["table_mb"] = c.execute(
            "SELECT pg_total_relation_size('documents') / 1048576.0").fetchone()[0]
        out["index_mb"] = c.execute(
            "SELECT pg_relation_size('documents_search_vector_idx') / 1048576.0").fetchone()[0]
        plans = {}
        for label, term in (("rare", groups["rare (rank 2000-5000)"][0]),
                            ("common", groups["common (rank 1-20)"][0])):
            plan = c.execute("EXPLAIN (ANALYZE, BUFFERS) " + q,
                             {"query": term, "config": "english", "tag": None, "limit": 20}
                             ).fetchall()
            plans[f"{label}: {term}"] = "\n".join(r[0] for r in plan)
        out["explain"] = plans
        # A rare term must use the GIN index; a term in ~40% of rows rightly gets a seq scan.
        out["gin_index_used"] = "documents_search_vector_idx" in next(iter(plans.values()))
        all_ms: list[float] = []
        bands: dict[str, Any] = {}
        for band, terms in groups.items():
            ms, hits = [], []
            broad_count = 0
            # Common terms match most rows and take seconds each: one pass is enough.
            for _ in range(repeats):
                for term in terms:
                    # What `alfrd search` runs: a capped match count, then full ranking or,
                    # for a broad query, ranking of the newest matches only.
                    t0 = time.perf_counter()
                    rows, broad = search(c, term, config="english", limit=20)
                    ms.append((time.perf_counter() - t0) * 1000)
                    hits.append(len(rows))
                    broad_count += broad
            matches = c.execute(
                "SELECT count(*) FROM documents WHERE search_vector @@ "
                "websearch_to_tsquery('english', %s)", (terms[0],)).fetchone()[0]
            bands[band] = {"queries": len(ms), "p50_ms": pct(ms, 50), "p95_ms": pct(ms, 95),
                           "max_ms": max(ms), "example": terms[0],
                           "example_matching_docs": matches, "broad_queries": broad_count}
            all_ms.extend(ms)
            log(f"search {band}: p50 {pct(ms, 50):.1f} ms p95 {pct(ms, 95):.1f} ms "
                f"(e.g. {terms[0]!r} matches {matches})")
        out["bands"] = bands
        out["p50_ms"] = pct(all_ms, 50)
        out["p95_ms"] = pct(all_ms, 95)
    # End to end: the real CLI once (Python start-up, config, connect, query, print).
    cfg = work / "search-cli.yaml"
    cfg.write_text(yaml.safe_dump({"state_dir": str(work / "search-var"),
                                   "inbox": {"path": str(work / "search-inbox")},
                                   "database": {"url": url}, "logging": {"level": "WARNING"}}))
    term = groups["two words (mid + rare)"][0]
    env = {k: v for k, v in os.environ.items() if k not in ("ALFRD_CONFIG",
                                                             "ALFRD_DATABASE_URL")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "alfrd_daemon", "search", term, "--config",
                        str(cfg)], capture_output=True, text=True, env=env, cwd=REPO,
                       timeout=120)
    out["cli_seconds"] = time.perf_counter() - t0
    out["cli_query"] = term
    out["cli_ok"] = r.returncode == 0
    out["cli_result_lines"] = len(r.stdout.splitlines())
    if r.returncode != 0:
        log(f"alfrd search failed: {r.stderr[-1000:]}")
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import alfrd_daemon.cli.main"], env=env, cwd=REPO,
                   capture_output=True, timeout=60)
    out["cli_import_seconds"] = time.perf_counter() - t0
    return out


def scenario_reindex(url: str, n_docs: int, work: Path, batch: int = 500) -> dict[str, Any]:
    """The reindex job (search.language → simple: batches of `batch` rows, each its own
    transaction, GIN pending list merged after each) while a writer thread inserts rows one by
    one (commit each)."""
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
    env = {k: v for k, v in os.environ.items() if k not in ("ALFRD_CONFIG",
                                                             "ALFRD_DATABASE_URL")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    t0 = time.perf_counter()
    job = subprocess.run([sys.executable, "-m", "alfrd_daemon", "jobs", "run", "reindex",
                          "--config", str(cfg)], capture_output=True, text=True, env=env,
                         cwd=REPO, timeout=7200)
    with psycopg.connect(url) as c:
        details = c.execute("SELECT details FROM job_runs WHERE job = 'reindex' "
                            "ORDER BY started_at DESC LIMIT 1").fetchone()
    details = details[0] if details else {}
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
        return max(b - a for a, b in itertools.pairwise([lo, *pts, hi]))

    during = [x for x in commits if warm_end <= x <= reindex_end]
    gaps = sorted((b - a for a, b in itertools.pairwise(during)), reverse=True)
    return {"documents": n_docs, "batch": batch, "batches": batches, "seconds": secs,
            "rows_per_s": n_docs / secs if secs else 0.0, "slowest_batch_s": slowest,
            "writer_commits_during": len(during),
            "max_stall_s": max_gap(warm_end, reindex_end),
            "baseline_max_gap_s": max_gap(warm_end - 2.0, warm_end),
            "top_gaps_s": [round(g, 3) for g in gaps[:5]],
            "writer_error": writer_error[0] if writer_error else None,
            "job_exit_code": job.returncode, "job_details": details}


# --- reporting -----------------------------------------------------------------------------------

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
    out: list[str] = []
    sc = res["scenarios"]
    lim = sc.get("limit", {}).get("files_per_s")
    nai = sc.get("naive", {}).get("files_per_s")
    rows = []
    for key, label in (("limit", "limit: read+hash, one COPY (1 thread)"),
                       ("naive", "naive peer: INSERT+commit+mv per file, no fsync (1 thread)"),
                       ("backlog", "alfrd backlog (catch-up scan)"),
                       ("live", "alfrd live drop (rename in)"),
                       ("nofsync", "alfrd backlog, store.fsync: false"),
                       ("rss", "alfrd big backlog")):
        r = sc.get(key)
        if not r or "files_per_s" not in r:
            continue
        fps = r["files_per_s"]
        rows.append([label, r["files"], r["seconds"], fps,
                     f"{fps / lim:.0%}" if lim else "n/a",
                     f"{fps / nai:.2f}x" if nai else "n/a"])
    if rows:
        out.append("Throughput (same corpus, same server, fresh database each)")
        out.append(table(["scenario", "files", "seconds", "files/s", "vs limit", "vs naive"],
                         rows))
    lat = sc.get("latency")
    if lat:
        lrows = [[f"{v['target_rate']}/s", v["achieved_rate"], v["files"], v["committed"],
                  v["p50_ms"], v["p95_ms"], v["p99_ms"], v["max_ms"]]
                 for k, v in lat.items() if isinstance(v, dict)]
        out.append("\nClose-to-commit latency (ms; commit = NOTIFY receipt)")
        out.append(table(["rate", "achieved/s", "files", "committed", "p50", "p95", "p99",
                          "max"], lrows))
    s = sc.get("search")
    if s:
        srows = [[b, v["queries"], v["example_matching_docs"], v["p50_ms"], v["p95_ms"],
                  v["max_ms"]] for b, v in s["bands"].items()]
        out.append(f"\nSearch over {s['documents']:,} documents (ms, in-process, "
                   f"search_documents LIMIT 20; GIN index used for a rare term: "
                   f"{s['gin_index_used']})")
        out.append(table(["query band", "queries", "docs matching e.g.", "p50", "p95", "max"],
                         srows))
        out.append(f"overall (all bands): p50 {fmt(s['p50_ms'])} ms, "
                   f"p95 {fmt(s['p95_ms'])} ms; CLI end to end once: "
                   f"{fmt(s['cli_seconds'], 2)} s (of which Python import "
                   f"{fmt(s['cli_import_seconds'], 2)} s)")
    ri = sc.get("reindex")
    if ri:
        out.append(f"\nReindex of {ri['documents']:,} rows in batches of {ri['batch']}: "
                   f"{fmt(ri['seconds'])} s ({fmt(ri['rows_per_s'], 0)} rows/s), slowest batch "
                   f"{fmt(ri['slowest_batch_s'], 3)} s; concurrent writer max gap "
                   f"{fmt(ri['max_stall_s'], 3)} s (before reindex "
                   f"{fmt(ri['baseline_max_gap_s'], 3)} s), {ri['writer_commits_during']} "
                   "writer commits during")
    # Targets.
    trows = []
    b = sc.get("backlog")
    if b and lim:
        v = b["files_per_s"] / lim
        trows.append(["alfrd backlog ≥ 40% of COPY limit", f"{v:.0%}",
                      "PASS" if v >= TARGET_VS_LIMIT else "MISS"])
    if b and nai:
        v = b["files_per_s"] / nai
        trows.append(["alfrd backlog ≥ 2x naive peer", f"{v:.2f}x",
                      "PASS" if v >= TARGET_VS_NAIVE else "MISS"])
    lv = sc.get("live")
    if lv and lim:
        v = lv["files_per_s"] / lim
        trows.append(["alfrd live ≥ 40% of COPY limit", f"{v:.0%}",
                      "PASS" if v >= TARGET_VS_LIMIT else "MISS"])
    if lv and nai:
        v = lv["files_per_s"] / nai
        trows.append(["alfrd live ≥ 2x naive peer", f"{v:.2f}x",
                      "PASS" if v >= TARGET_VS_NAIVE else "MISS"])
    if lat and "200" in lat:
        v = lat["200"]["p99_ms"]
        trows.append(["p99 close-to-commit < 250 ms at 200 files/s", f"{v:.0f} ms",
                      "PASS" if v < TARGET_P99_MS_AT_200 else "MISS"])
    rs = sc.get("rss")
    if rs:
        v = rs["vmhwm_mb"]
        trows.append([f"peak RSS < 200 MB with {rs['files']:,}-file backlog", f"{v:.0f} MB",
                      "PASS" if v < TARGET_RSS_MB else "MISS"])
    if s:
        v = s["p95_ms"]
        trows.append([f"search p95 < 50 ms at {s['documents']:,} docs", f"{v:.1f} ms",
                      "PASS" if v < TARGET_SEARCH_P95_MS else "MISS"])
    if ri:
        v = ri["max_stall_s"]
        trows.append(["reindex never stalls ingest > 1 s", f"{v:.2f} s",
                      "PASS" if v <= TARGET_STALL_S else "MISS"])
    if trows:
        out.append("\nTargets (issue 7)")
        out.append(table(["target", "measured", "result"], trows))
    return "\n".join(out)


# --- main ----------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--files", type=int, default=20_000, help="text files (~1 KB) in the corpus")
    p.add_argument("--pdfs", type=int, default=100, help="PDFs in the corpus")
    p.add_argument("--pdf-pages", type=int, default=2)
    p.add_argument("--file-size", type=int, default=1000, help="bytes per text file")
    p.add_argument("--database-url", help=f"admin conninfo (default {DEFAULT_URL} if it "
                   "answers, else a private cluster)")
    p.add_argument("--only", help="comma-separated scenarios: " + ",".join(ALL_SCENARIOS))
    p.add_argument("--json", type=Path, help="write all figures to this JSON file")
    p.add_argument("--workers", type=int, default=4, help="daemon workers.count")
    p.add_argument("--latency-rates", default="50,200,1000")
    p.add_argument("--latency-seconds", type=float, default=10.0)
    p.add_argument("--backlog", type=int, default=0,
                   help="files for the rss scenario (0: off; 100000 for the target)")
    p.add_argument("--search-docs", type=int, default=0,
                   help="documents for search + reindex (0: off; 1000000 for the target)")
    p.add_argument("--search-words", type=int, default=80, help="words per generated document")
    p.add_argument("--no-reindex", action="store_true", help="skip reindex after search")
    p.add_argument("--nofsync", action="store_true",
                   help="also run the backlog with store.fsync: false (report only)")
    p.add_argument("--profile", type=Path,
                   help="py-spy the daemon during backlog; write raw stacks and a summary here")
    p.add_argument("--profile-seconds", type=int, default=20)
    p.add_argument("--profile-gil", action="store_true",
                   help="py-spy --gil: sample only the thread holding the GIL (CPU hot spots)")
    p.add_argument("--workdir", type=Path, help="parent of the temp dir (default: $TMPDIR)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.only:
        chosen = [s.strip() for s in a.only.split(",") if s.strip()]
        bad = [s for s in chosen if s not in ALL_SCENARIOS]
        if bad:
            raise SystemExit(f"unknown scenario(s) {bad}; choose from {ALL_SCENARIOS}")
        if "rss" in chosen and not a.backlog:
            a.backlog = 100_000
        if ("search" in chosen or "reindex" in chosen) and not a.search_docs:
            a.search_docs = 1_000_000
    else:
        chosen = ["limit", "naive", "backlog", "live", "latency"]
        if a.nofsync:
            chosen.append("nofsync")
        if a.backlog:
            chosen.append("rss")
        if a.search_docs:
            chosen.append("search")
            if not a.no_reindex:
                chosen.append("reindex")
    work = Path(tempfile.mkdtemp(prefix="alfrd-bench-", dir=a.workdir))
    os.chmod(work, 0o755)
    server = Server(a.database_url, work)
    res: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "postgres": server.version, "pg_settings": server.settings,
                    "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
                                    / 2**30, 1)},
        "params": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "scenarios": {},
    }
    sc = res["scenarios"]
    try:
        corpus: list[Path] = []
        if any(s in chosen for s in ("limit", "naive", "backlog", "live", "nofsync")):
            t0 = time.perf_counter()
            corpus = make_corpus(work / "corpus", a.files, a.pdfs, a.pdf_pages, a.file_size)
            log(f"corpus: {len(corpus)} files in {time.perf_counter() - t0:.1f} s")
        for name in chosen:
            t0 = time.perf_counter()
            if name == "reindex" and "search" in chosen:
                continue  # ran with search, same database
            log(f"scenario {name} ...")
            if name == "limit":
                sc[name] = scenario_limit(server, corpus, work)
            elif name == "naive":
                sc[name] = scenario_naive(server, corpus, work)
            elif name in ("backlog", "live"):
                sc[name] = _daemon_ingest(
                    server, corpus, work, name, mode=name, workers=a.workers,
                    profile_dir=a.profile if name == "backlog" else None,
                    profile_seconds=a.profile_seconds, profile_gil=a.profile_gil)
            elif name == "nofsync":
                sc[name] = _daemon_ingest(server, corpus, work, name, mode="backlog",
                                          workers=a.workers, fsync=False,
                                          profile_dir=a.profile, profile_gil=a.profile_gil,
                                          profile_seconds=a.profile_seconds)
            elif name == "rss":
                big = make_corpus(work / "bigcorpus", a.backlog, 0, 1, a.file_size,
                                  prefix="big")
                sc[name] = _daemon_ingest(server, big, work, name, mode="backlog",
                                          workers=a.workers, sample_rss=True,
                                          profile_dir=a.profile, profile_gil=a.profile_gil,
                                          profile_seconds=a.profile_seconds)
                shutil.rmtree(work / "bigcorpus", ignore_errors=True)
            elif name == "latency":
                rates = [int(x) for x in a.latency_rates.split(",") if x.strip()]
                sc[name] = scenario_latency(server, work, rates, a.latency_seconds, a.workers)
            elif name == "search" or (name == "reindex" and "search" not in chosen):
                with server.database("search") as url:
                    gen = generate_documents(url, a.search_docs, a.search_words)
                    if "search" in chosen:
                        sc["search"] = scenario_search(url, a.search_docs, gen, work)
                    if "reindex" in chosen:
                        log("scenario reindex ...")
                        sc["reindex"] = scenario_reindex(url, a.search_docs, work)
            r = sc.get(name, {})
            log(f"scenario {name} done in {time.perf_counter() - t0:.1f} s: "
                + ", ".join(f"{k}={fmt(v)}" for k, v in r.items()
                            if isinstance(v, (int, float)) and not isinstance(v, bool))[:400])
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    text = report(res)
    print(text, flush=True)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=2, default=str))
    for name in ("backlog", "nofsync", "rss"):
        if a.profile and "profile" in sc.get(name, {}):
            (a.profile / f"{name}-summary.json").write_text(
                json.dumps(sc[name]["profile"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
