"""The extractor pool with real child processes and real PDFs: concurrency, every hard limit,
crashes from inside and outside, recycling, and a close that leaves nothing behind."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from alfrd_daemon.extract.api import ExtractLimits, PermanentExtractionError
from alfrd_daemon.extract.pool import ExtractorPool, PoolBusy, PoolClosed, WorkerStartError
from tests.helpers import DaemonProcess, query, wait_for, write_config
from tests.integration.test_pdf_extraction import memory_bomb_pdf, slow_pdf
from tests.samples import make_pdf

LIMITS = ExtractLimits(timeout_seconds=10, memory_limit_mb=512)


# --- processes -----------------------------------------------------------------------------------

def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, ppid = stat.rsplit(")", 1)[1].split()[:2]
    return state, int(ppid)


def our_children() -> list[int]:
    """Every process whose parent is this test process, zombies included."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) and stat[1] == os.getpid():
            found.append(int(entry.name))
    return found


def gone(pid: int) -> bool:
    """Not a process of ours any more (the pid may already belong to a stranger)."""
    stat = _stat(pid)
    return stat is None or stat[1] != os.getpid()


def limits_of(pid: int) -> dict[str, list[str]]:
    """/proc/PID/limits as {"Max address space": [soft, hard], ...}."""
    rows = {}
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines()[1:]:
        name, values = line[:26].strip(), line[26:].split()
        rows[name] = values[:2]
    return rows


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


@pytest.fixture
def pools() -> Iterator[Callable[..., ExtractorPool]]:
    """Makes started pools; afterwards every pool is closed and no child of ours is left."""
    made: list[ExtractorPool] = []
    before = set(our_children())

    def make(size: int = 1, **kwargs: Any) -> ExtractorPool:
        kwargs.setdefault("memory_limit_mb", LIMITS.memory_limit_mb)
        pool = ExtractorPool(size, **kwargs)
        made.append(pool)
        pool.start()
        return pool

    try:
        yield make
    finally:
        for pool in made:
            pool.close()
        left = set(our_children()) - before
        for pid in left:  # only our own children, by pid
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        assert not left, f"processes left behind: {sorted(left)}"


def write_pdf(folder: Path, name: str, pages: list[str]) -> Path:
    path = folder / name
    path.write_bytes(make_pdf(pages))
    return path




def run_in_thread(pool: ExtractorPool, path: Path,
                  limits: ExtractLimits) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}

    def target() -> None:
        started = time.monotonic()
        try:
            box["result"] = pool.run("pdf", path, limits)
        except Exception as exc:
            box["error"] = exc
        box["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def wait_until_busy(*pids: int, timeout: float = 10) -> int:
    """The first of `pids` to visibly burn CPU on a document (an idle child burns none)."""
    start = {pid: cpu_ticks(pid) for pid in pids}
    deadline = time.monotonic() + timeout
    while True:
        for pid in pids:
            if cpu_ticks(pid) >= start[pid] + 10:
                return pid
        assert time.monotonic() < deadline, "no child started on the document"
        time.sleep(0.02)


# --- correct text under concurrency --------------------------------------------------------------

@pytest.mark.timeout(120)
def test_many_threads_get_their_own_text(tmp_path: Path,
                                         pools: Callable[..., ExtractorPool]) -> None:
    pool = pools(2)
    children = set(pool.pids())
    paths = {f"marker{n:03d}": write_pdf(tmp_path, f"{n}.pdf", [f"doc marker{n:03d} first",
                                                                  f"second page of {n}"])
             for n in range(48)}
    results: dict[str, Any] = {}

    def worker(names: list[str]) -> None:
        for name in names:
            try:
                results[name] = pool.run("pdf", paths[name], LIMITS)
            except Exception as exc:
                results[name] = exc

    names = sorted(paths)
    threads = [threading.Thread(target=worker, args=(names[i::8],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(100)
    assert len(results) == 48
    for name, result in results.items():
        assert isinstance(result, dict), (name, result)
        n = int(name.removeprefix("marker"))
        assert result["text"] == f"doc {name} first\n\nsecond page of {n}"
        assert result["pages"] == 2
    assert set(pool.pids()) == children and pool.started == 2, "no child was replaced"


@pytest.mark.timeout(60)
def test_bad_documents_fail_with_reasons_and_keep_the_child(
        tmp_path: Path, pools: Callable[..., ExtractorPool]) -> None:
    pool = pools(1)
    [pid] = pool.pids()
    good = make_pdf(["Invoice quokka 4711", "Second page zebra"])
    (tmp_path / "cut.pdf").write_bytes(good[: len(good) // 2])
    (tmp_path / "junk.pdf").write_bytes(b"no header at all" * 100)
    write_pdf(tmp_path, "long.pdf", [f"page {i}" for i in range(5)])
    (tmp_path / "good.pdf").write_bytes(good)
    with pytest.raises(PermanentExtractionError, match=r"^corrupt PDF"):
        pool.run("pdf", tmp_path / "cut.pdf", LIMITS)
    with pytest.raises(PermanentExtractionError, match=r"^not a PDF: no %PDF- header$"):
        pool.run("pdf", tmp_path / "junk.pdf", LIMITS)
    with pytest.raises(PermanentExtractionError,
                       match=r"^PDF has 5 pages, more than the limit of 4$"):
        pool.run("pdf", tmp_path / "long.pdf", ExtractLimits(max_pdf_pages=4,
                                                             memory_limit_mb=512))
    short = pool.run("pdf", tmp_path / "good.pdf", ExtractLimits(max_text_chars=12,
                                                                 memory_limit_mb=512))
    assert (short["text"], short["truncated"]) == ("Invoice quok", True)
    assert pool.pids() == [pid], "a bad document is no reason to replace the child"


# --- time ----------------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_a_spinning_pdf_is_killed_at_the_time_limit_and_the_child_replaced(
        tmp_path: Path, pools: Callable[..., ExtractorPool]) -> None:
    pool = pools(1)
    [old] = pool.pids()
    slow = tmp_path / "slow.pdf"
    slow.write_bytes(slow_pdf())
    limits = ExtractLimits(timeout_seconds=1.5, memory_limit_mb=512)
    thread, box = run_in_thread(pool, slow, limits)
    wait_until_busy(old)
    seen = limits_of(old)  # the CPU backstop the child armed for this very document
    thread.join(20)

    error = box.get("error")
    assert isinstance(error, PermanentExtractionError), box
    assert error.reason == "PDF extraction timed out after 1.5 s"
    # pypdf would spin ~20 s on this file; the kill comes at the deadline.
    assert 1.5 <= box["elapsed"] < 2.5
    assert gone(old), "the spinning child survived its deadline"
    assert seen["Max address space"] == [str(512 * 1024 * 1024)] * 2
    soft_cpu = int(seen["Max cpu time"][0])
    assert 3 <= soft_cpu <= 5, seen["Max cpu time"]  # its CPU so far (< 2 s) + ceil(1.5) + 1

    good = write_pdf(tmp_path, "next.pdf", ["after the storm"])
    assert pool.run("pdf", good, limits)["text"] == "after the storm"
    [new] = pool.pids()
    assert new != old and pool.replaced == 1


# --- memory --------------------------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_a_memory_bomb_hits_the_memory_limit(tmp_path: Path,
                                             pools: Callable[..., ExtractorPool]) -> None:
    pool = pools(1, memory_limit_mb=256)
    [old] = pool.pids()
    assert limits_of(old)["Max address space"] == [str(256 * 1024 * 1024)] * 2
    bomb = tmp_path / "bomb.pdf"
    bomb.write_bytes(memory_bomb_pdf())
    limits = ExtractLimits(timeout_seconds=60, memory_limit_mb=256)
    with pytest.raises(PermanentExtractionError) as err:
        pool.run("pdf", bomb, limits)
    assert err.value.reason == "PDF extraction exceeded the memory limit of 256 MB"
    assert gone(old), "a child that hit its memory limit is not trusted again"
    good = write_pdf(tmp_path, "next.pdf", ["small and sweet"])
    assert pool.run("pdf", good, limits)["text"] == "small and sweet"
    assert pool.pids() != [old]


# --- crashes -------------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_a_child_killed_from_outside_fails_only_its_document(
        tmp_path: Path, pools: Callable[..., ExtractorPool]) -> None:
    pool = pools(1)
    [old] = pool.pids()
    slow = tmp_path / "slow.pdf"
    slow.write_bytes(slow_pdf())
    thread, box = run_in_thread(pool, slow, LIMITS)
    wait_until_busy(old)
    os.kill(old, signal.SIGKILL)  # the OOM killer, or an admin
    thread.join(10)
    error = box.get("error")
    assert isinstance(error, PermanentExtractionError), box
    assert error.reason == "PDF worker was killed (Killed) while it read this document"
    assert box["elapsed"] < LIMITS.timeout_seconds, "the caller waited for the deadline"
    good = write_pdf(tmp_path, "next.pdf", ["still standing"])
    assert pool.run("pdf", good, LIMITS)["text"] == "still standing"
    assert pool.pids() != [old] and gone(old)


@pytest.mark.timeout(60)
def test_a_child_that_dies_while_idle_is_replaced_before_it_is_used(
        tmp_path: Path, pools: Callable[..., ExtractorPool]) -> None:
    pool = pools(1)
    [old] = pool.pids()
    os.kill(old, signal.SIGKILL)
    time.sleep(0.2)
    good = write_pdf(tmp_path, "a.pdf", ["no blame on me"])
    assert pool.run("pdf", good, LIMITS)["text"] == "no blame on me"
    assert pool.pids() != [old]


# A stand-in child that says hello like the real one, then misbehaves on the first request.
FAKE_CHILD = r"""
import json, os, struct, sys, time
mode = sys.argv[1]
def frame(obj):
    body = json.dumps(obj).encode()
    return struct.pack(">I", len(body)) + body
out = os.fdopen(1, "wb", buffering=0)
out.write(frame({"hello": 1, "pid": os.getpid(), "kinds": ["pdf"]}))
size = struct.unpack(">I", sys.stdin.buffer.read(4))[0]
request = json.loads(sys.stdin.buffer.read(size))
if mode == "garbage":
    out.write(struct.pack(">I", 9) + b"not json!")
elif mode == "half":
    out.write(struct.pack(">I", 1000) + b'{"id": 1, "ok": tr')
    sys.exit(0)
elif mode == "huge":
    out.write(struct.pack(">I", 2**31) + b"{")
elif mode == "wrong-id":
    out.write(frame({"id": request["id"] + 7, "ok": True, "result": {"text": "x"}}))
elif mode == "two-replies":
    reply = frame({"id": request["id"], "ok": True, "result": {"text": "x"}})
    out.write(reply + reply)
elif mode == "crash":
    sys.stderr.write("Traceback: something broke\n")
    sys.exit(1)
time.sleep(60)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("mode", "reason"), [
    ("garbage", "PDF worker sent a reply that is not JSON"),
    ("half", "PDF worker exited in the middle of its reply (exit 0)"),
    ("huge", "PDF worker reply of 2147483648 bytes exceeded the limit of 65596"),
    ("wrong-id", "PDF worker answered another request"),
    ("two-replies", "PDF worker sent more than one reply"),
    ("crash", "PDF worker exited (exit 1): Traceback: something broke"),
])
def test_a_child_that_breaks_the_protocol_fails_one_document_and_never_hangs(
        tmp_path: Path, pools: Callable[..., ExtractorPool], mode: str, reason: str) -> None:
    pool = pools(1, command=[sys.executable, "-c", FAKE_CHILD, mode])
    [old] = pool.pids()
    path = write_pdf(tmp_path, "a.pdf", ["x"])
    started = time.monotonic()
    with pytest.raises(PermanentExtractionError) as err:
        pool.run("pdf", path, ExtractLimits(timeout_seconds=20, max_text_chars=10,
                                            memory_limit_mb=512))
    assert time.monotonic() - started < 5
    assert err.value.reason == reason
    assert gone(old) and pool.pids() == [] and pool.replaced == 1


@pytest.mark.timeout(60)
def test_a_child_that_cannot_start_is_not_blamed_on_the_file(
        tmp_path: Path, pools: Callable[..., ExtractorPool]) -> None:
    broken = [sys.executable, "-c", "import sys; print('no such module', file=sys.stderr); "
                                    "sys.exit(1)"]
    with pytest.raises(WorkerStartError, match=r"exited at start-up \(exit 1\): no such module"):
        pools(1, command=broken)
    pool = ExtractorPool(1, command=broken)  # not started: the first run() starts a child
    try:
        with pytest.raises(WorkerStartError):
            pool.run("pdf", write_pdf(tmp_path, "a.pdf", ["x"]), LIMITS)
    finally:
        pool.close()


@pytest.mark.timeout(60)
def test_a_caller_waits_for_a_free_child_only_so_long(
        tmp_path: Path, pools: Callable[..., ExtractorPool]) -> None:
    pool = pools(1, acquire_timeout=0.5)
    slow = tmp_path / "slow.pdf"
    slow.write_bytes(slow_pdf())
    thread, box = run_in_thread(pool, slow, ExtractLimits(timeout_seconds=3, memory_limit_mb=512))
    wait_until_busy(*pool.pids())
    started = time.monotonic()
    with pytest.raises(PoolBusy):
        pool.run("pdf", write_pdf(tmp_path, "a.pdf", ["wait"]), LIMITS)
    assert 0.5 <= time.monotonic() - started < 1.5
    thread.join(10)
    assert isinstance(box.get("error"), PermanentExtractionError), box
    assert pool.run("pdf", tmp_path / "a.pdf", LIMITS)["text"] == "wait"


# --- recycling -----------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_children_are_recycled_after_n_documents_without_losing_one(
        tmp_path: Path, pools: Callable[..., ExtractorPool]) -> None:
    pool = pools(1, recycle_after=3)
    seen_pids = []
    for n in range(7):
        path = write_pdf(tmp_path, f"{n}.pdf", [f"document number {n}"])
        before = pool.pids()  # empty after a recycle: the next run() starts the new child
        assert pool.run("pdf", path, LIMITS)["text"] == f"document number {n}"
        after = pool.pids()
        pid = after[0] if after else before[0]  # the child that served document n
        seen_pids.append(pid)
        if n % 3 == 2:
            assert after == [] and gone(pid), "a child that served 3 documents must be gone"
    first, second, third = seen_pids[0], seen_pids[3], seen_pids[6]
    assert seen_pids == [first] * 3 + [second] * 3 + [third]
    assert len({first, second, third}) == 3
    assert pool.started == 3 and pool.replaced == 0


# --- closing -------------------------------------------------------------------------------------

@pytest.mark.timeout(60)
def test_close_kills_idle_and_busy_children_and_leaves_nothing(
        tmp_path: Path, pools: Callable[..., ExtractorPool]) -> None:
    before = set(our_children())
    pool = pools(2)
    pids = pool.pids()
    assert len(pids) == 2 and set(pids) <= set(our_children())
    slow = tmp_path / "slow.pdf"
    slow.write_bytes(slow_pdf())
    thread, box = run_in_thread(pool, slow, LIMITS)
    busy = wait_until_busy(*pids)

    pool.close()
    thread.join(10)
    assert isinstance(box.get("error"), PoolClosed), box  # shutdown is not the file's fault
    assert all(gone(pid) for pid in pids), busy
    assert set(our_children()) == before, "a zombie or a child outlived close()"
    with pytest.raises(PoolClosed):
        pool.run("pdf", write_pdf(tmp_path, "late.pdf", ["too late"]), LIMITS)



def _extractor_children(parent: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat_fields[1]) == parent and b"alfrd_daemon.extract.worker" in cmdline:
            found.add(int(entry.name))
    return found


def test_the_daemon_reads_pdfs_with_its_long_lived_extractors(tmp_path: Path,
                                                              db_url: str) -> None:
    """The running daemon starts its extractors once, at start, and serves every PDF with
    them: no interpreter start-up per document (once 110 ms of CPU each)."""
    config = write_config(tmp_path, db_url, extract={"workers": 2})
    inbox = tmp_path / "inbox"
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        assert daemon.proc is not None
        before = wait_for(lambda: len(_extractor_children(daemon.proc.pid)) == 2
                          and _extractor_children(daemon.proc.pid), 20, "two extractors")
        for i in range(6):
            (inbox / f"statement{i}.pdf").write_bytes(make_pdf([f"pangolin bank statement {i}"]))
        wait_for(lambda: len(query(db_url, "SELECT 1 FROM documents WHERE status = "
                                           "'extracted'")) == 6, 30, "six PDFs",
                 alive=daemon.assert_alive)
        assert _extractor_children(daemon.proc.pid) == before, "extractors were replaced"
        rows = query(db_url, "SELECT extracted_text FROM documents ORDER BY original_name")
        assert [r["extracted_text"].strip() for r in rows] == [
            f"pangolin bank statement {i}" for i in range(6)]
    assert not _extractor_children(daemon.proc.pid), "extractors outlived the daemon"
