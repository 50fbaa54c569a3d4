"""What the benchmarks run and time: the PostgreSQL server and a fresh database per scenario,
the daemon as a subprocess, a listener for its commits, and the two reference points (the COPY
limit and the naive peer).

The daemon runs through the tests' own harness (tests.helpers.DaemonProcess and
NotifyListener): one way to start, watch and stop it, exercised by the whole suite on every run.
Only the configuration is the benchmark's own: everything at its default except the inbox, the
database, the worker count, WARNING logging (so logging costs nothing) and OCR, which is off
unless a scenario turns it on (benchmarks/ocr.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import yaml
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from alfrd_daemon.db.migrations import migrate
from tests.helpers import DaemonProcess, NotifyListener

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
# The columns the limit and the naive peer fill: those the daemon fills for a text file.
COPY_COLUMNS = ("sha256", "original_name", "source_path", "status", "mime_type", "size_bytes",
                "extracted_text")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- server and databases ---------------------------------------------------------------------

def with_dbname(conninfo: str, dbname: str) -> str:
    params = conninfo_to_dict(conninfo)
    params["dbname"] = dbname
    return make_conninfo("", **params)


def scalar(conn: psycopg.Connection[Any], query: str, params: Any = None) -> Any:
    """The first column of the first row of `query`."""
    row = conn.execute(query, params).fetchone()
    assert row is not None, query
    return row[0]


class Server:
    """The PostgreSQL the run uses: the given/default URL, else a private cluster."""

    def __init__(self, url: str | None):
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
            self.version = scalar(c, "SHOW server_version")
            self.postmaster = postmaster_of(c)
            self.settings: dict[str, str] = dict(c.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('synchronous_commit',"
                " 'fsync', 'shared_buffers', 'wal_level', 'max_wal_size')").fetchall())
        self.prefix = f"alfrd_bench_{os.getpid()}"

    @contextlib.contextmanager
    def database(self, scenario: str) -> Iterator[str]:
        """A freshly created and migrated database, dropped at the end."""
        name = f"{self.prefix}_{scenario}"
        with psycopg.connect(self.admin, autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        url = with_dbname(self.admin, name)
        with psycopg.connect(url) as conn:
            migrate(conn)
        try:
            yield url
        finally:
            with psycopg.connect(self.admin, autocommit=True) as c:
                c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)))

    def close(self) -> None:
        if self.cluster is not None:
            self.cluster.destroy()
            assert self.root is not None
            shutil.rmtree(self.root, ignore_errors=True)


def _descendants(pid: int, *, include_self: bool = False) -> list[int]:
    found = [pid] if include_self else []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{tid}/children").read_text().split()
        except OSError:
            continue
        for child in children:
            found.extend(_descendants(int(child), include_self=True))
    return found


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass  # gone between listing and reading: it holds no memory now
    return 0


_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 on (after the parenthesised name, which may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _cpu_with_reaped(pid: int) -> float:
    """User + system CPU seconds of a process and of its children it has already waited for
    (a child's CPU moves into its parent's cutime/cstime when reaped, so summing this over
    live processes counts every process once, however many come and go)."""
    f = _stat_fields(pid)
    if f is None:
        return 0.0
    # fields 14 to 17 of stat(5): utime, stime, cutime, cstime (from field 3: index 11 to 14)
    return sum(int(x) for x in f[11:15]) / _TICK


def _is_ingest_sibling(pid: int) -> bool:
    """One of the daemon's other ingest processes (`alfrd run --partition K/N`)."""
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return b"--partition" in args and b"alfrd_daemon" in args


def tree_cpu_seconds(pid: int) -> tuple[float, float, float]:
    """(the daemon's user CPU, its system CPU, its other descendants' CPU including those they
    reaped), seconds. The daemon is the process and its other ingest processes
    (workers.processes), each counted without its own children, which count as children."""
    f = _stat_fields(pid)
    if f is None:
        return 0.0, 0.0, 0.0
    user, system = int(f[11]) / _TICK, int(f[12]) / _TICK
    children = (int(f[13]) + int(f[14])) / _TICK
    for p in _descendants(pid):
        g = _stat_fields(p)
        if g is None:
            continue
        if _is_ingest_sibling(p):
            user += int(g[11]) / _TICK
            system += int(g[12]) / _TICK
            children += (int(g[13]) + int(g[14])) / _TICK
        else:
            children += _cpu_with_reaped(p)
    return user, system, children


def postmaster_of(conn: psycopg.Connection[Any]) -> int | None:
    """The pid of the server's postmaster (the parent of this connection's backend), when the
    server runs on this machine and its /proc entries can be read; else None."""
    backend = scalar(conn, "SELECT pg_backend_pid()")
    try:
        for line in Path(f"/proc/{backend}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                parent = int(line.split()[1])
                comm = Path(f"/proc/{parent}/comm").read_text().strip()
                return parent if comm in ("postgres", "postmaster") else None
    except OSError:
        pass
    return None


def server_cpu_seconds(postmaster: int | None) -> float:
    """CPU seconds of one PostgreSQL server: its postmaster and every process under it (a
    backend that ended is counted in the postmaster's cutime). NaN when not known."""
    if postmaster is None:
        return math.nan
    own, system, children = tree_cpu_seconds(postmaster)
    return own + system + children


def machine_cpu_ticks() -> tuple[int, int]:
    """(steal, all) clock ticks of this machine's CPUs since boot, from /proc/stat; (0, 0)
    where it cannot be read. Steal is time the hypervisor ran someone else while this
    machine's CPUs had work: a run with much of it measured a smaller machine."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return 0, 0
    if not fields or fields[0] != "cpu":
        return 0, 0
    ticks = [int(x) for x in fields[1:9]]  # user nice system idle iowait irq softirq steal
    return (ticks[7] if len(ticks) > 7 else 0), sum(ticks)


class StealMeter:
    """The share of this machine's CPU time that was stolen since the meter was made."""

    def __init__(self) -> None:
        self.start = machine_cpu_ticks()

    def share(self) -> float:
        steal, total = machine_cpu_ticks()
        elapsed = total - self.start[1]
        return (steal - self.start[0]) / elapsed if elapsed > 0 else math.nan


@dataclass
class CpuSplit:
    """CPU seconds spent by the daemon, its children and the PostgreSQL server between two
    readings."""

    daemon_pid: int
    postmaster: int | None
    start: tuple[float, ...] = ()
    steal: StealMeter = field(default_factory=StealMeter)

    def begin(self) -> CpuSplit:
        self.start = (*tree_cpu_seconds(self.daemon_pid), server_cpu_seconds(self.postmaster))
        self.steal = StealMeter()
        return self

    def end(self) -> dict[str, float]:
        now = (*tree_cpu_seconds(self.daemon_pid), server_cpu_seconds(self.postmaster))
        user, system, c, p = (b - a for a, b in zip(self.start, now, strict=True))
        return {"cpu_daemon_s": user + system, "cpu_daemon_system_s": system,
                "cpu_children_s": c, "cpu_postgres_s": p, "cpu_steal_share": self.steal.share()}


def db_summary(url: str) -> dict[str, int]:
    with psycopg.connect(url) as c:
        row = c.execute(
            "SELECT count(*), count(*) FILTER (WHERE status = 'failed') FROM documents"
        ).fetchone()
    assert row is not None
    return {"rows": row[0], "failed_rows": row[1]}


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

    def wait_count(self, n: int, timeout: float, alive: Callable[[], None] | None = None
                   ) -> bool:
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


# --- the daemon ----------------------------------------------------------------------------------

class BenchDaemon:
    """`alfrd run` on a benchmark config in `work`; `start()` returns at its READY=1."""

    def __init__(self, work: Path, db_url: str, workers: int, fsync: bool = True,
                 extra: dict[str, Any] | None = None, processes: int = 1):
        self.work = work
        self.inbox = work / "inbox"
        self.inbox.mkdir(parents=True, exist_ok=True)
        cfg: dict[str, Any] = {
            "state_dir": str(work / "var"),
            "inbox": {"path": str(self.inbox)},
            "database": {"url": db_url},
            "workers": {"count": workers, "processes": processes},
            "logging": {"level": "WARNING"},
        }
        if not fsync:
            cfg["store"] = {"fsync": False}
        # The ingest scenarios measure ingest alone: OCR workers would take cores from it.
        cfg["ocr"] = {"enabled": False}
        cfg.update(extra or {})  # whole sections, e.g. {"ocr": {"enabled": True}}
        config = work / "alfrd.yaml"
        config.write_text(yaml.safe_dump(cfg))
        self.notify = NotifyListener(work / "notify.sock")
        self.process = DaemonProcess(config, work / "daemon.log", env=self.notify.env())
        self.spawned_at = float("nan")
        self.ready_at = float("nan")
        self._stopped = threading.Event()

    @property
    def pid(self) -> int:
        assert self.process.proc is not None
        return self.process.proc.pid

    def start(self, timeout: float = 120) -> BenchDaemon:
        """Start and wait for READY=1: with logging at WARNING the INFO line `event=started`
        is not logged; READY=1 is sent right after it."""
        self.spawned_at = time.time()
        self.process.start()
        i, _ = self.notify.wait(lambda m: m.get("READY") == "1", timeout, "READY=1",
                                alive=self.process.assert_alive)
        # Its arrival time, not when wait() returned (it listens on for a moment), in the
        # wall-clock time that commit receipts are measured in.
        self.ready_at = time.time() - (time.monotonic() - self.notify.messages[i][0])
        # Read on, as systemd does: a queue left full makes every later notification wait.
        threading.Thread(target=self._drain_notify, daemon=True, name="bench-notify").start()
        return self

    def _drain_notify(self) -> None:
        while not self._stopped.is_set():
            try:
                self.notify.pump()
            except OSError:  # closed by stop()
                return

    def assert_alive(self) -> None:
        self.process.assert_alive()

    def memory_kb(self) -> dict[str, int]:
        return self.process.memory_kb()

    def tree_rss_kb(self) -> int:
        """VmRSS of the daemon plus every process under it (the extractor pool, tools). A sum
        of RSS counts pages the children share with each other twice: an upper bound."""
        return sum(_rss_kb(pid) for pid in _descendants(self.pid, include_self=True))

    def log(self) -> str:
        return self.process.log()

    def stop(self) -> None:
        try:
            if self.process.proc is not None:
                self.process.stop(timeout=90)
        except AssertionError as exc:  # killed after ignoring SIGTERM: keep the figures
            log(str(exc)[:1000])
        finally:
            self._stopped.set()
            self.notify.close()


# --- the reference points ------------------------------------------------------------------------

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


def copy_limit(files: list[Path], url: str) -> dict[str, float]:
    """Read, hash and take the text of every file, then ONE COPY (single thread)."""
    with psycopg.connect(url) as conn:
        t0 = time.perf_counter()
        rows = [file_row(p, p.read_bytes()) for p in files]
        t_read = time.perf_counter() - t0
        with conn.cursor() as cur, cur.copy(
                f"COPY documents ({', '.join(COPY_COLUMNS)}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)
        conn.commit()
        secs = time.perf_counter() - t0
    return {"seconds": secs, "read_hash_seconds": t_read}


def naive_peer(files: list[Path], done: Path, url: str) -> float:
    """Per file: read, sha256, text, INSERT, commit, rename to `done` (single thread, no
    fsync). Returns the seconds it took."""
    done.mkdir(parents=True)
    q = (f"INSERT INTO documents ({', '.join(COPY_COLUMNS)}) VALUES "
         f"({', '.join(['%s'] * len(COPY_COLUMNS))}) ON CONFLICT (sha256) DO NOTHING")
    with psycopg.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        for p in files:
            with open(p, "rb") as f:
                data = f.read()
            conn.execute(q, file_row(p, data))  # autocommit: one commit per file
            os.rename(p, done / p.name)
        return time.perf_counter() - t0
