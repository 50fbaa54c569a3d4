"""A small pool of long-lived, sandboxed extraction children (`alfrd_daemon.extract.worker`).

A fresh interpreter per PDF cost ~142 ms of CPU, ~110 ms of it start-up and `import pypdf`;
pypdf itself needs ~1.3 ms on a typical PDF. Each child here pays start-up once and then serves
up to `recycle_after` documents, one at a time, with the same hard limits as the one-shot child:

- memory: RLIMIT_AS, set by the child on itself first thing (not in preexec_fn: code between fork
  and exec in a threaded daemon can deadlock);
- time: a wall-clock deadline per document, enforced here; on overrun the child's whole process
  group is SIGKILLed and the child replaced. CPU is bounded by the same kill (one thread cannot
  burn more CPU than wall time); RLIMIT_CPU, re-armed by the child before every document, is
  only the backstop for a parent that died;
- pages and output size: passed with each request (the PDF parser refuses more pages and stops
  reading at max_chars); a reply frame larger than max_chars can need is a breach too.

A child that breaches a limit, crashes, sends garbage, or has served `recycle_after` documents is
killed and replaced; the document it was working on fails with a reason, the next one is served
by a fresh child. The caller never waits longer than the document's timeout once it holds a
child, and never longer than `acquire_timeout` for a free one.

Children are started with `subprocess.Popen([sys.executable, "-m", ...])`, i.e. fork+exec of a
new interpreter: nothing of the multi-threaded daemon (locks held by other threads, open
database connections, signal handlers) survives into the child. multiprocessing's "spawn" does
the same with more machinery (a resource tracker, pickling); "forkserver" starts faster but puts
a second long-lived process of ours between the daemon and the children, and neither gives the
child its own process group, which the timeout kill needs.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import select
import selectors
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from alfrd_daemon.extract.api import PermanentExtractionError

PROTOCOL = 1  # worker.PROTOCOL; not imported, that would load pypdf into the daemon
FRAME_HEADER = struct.Struct(">I")
_HELLO_MAX_BYTES = 4096
_STDERR_TAIL = 4096
# Stopping the service signals the children too; that says nothing about the file.
_GENTLE_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding alfrd_daemon/
_LABELS = {"pdf": "PDF", "office": "Office file", "ocr_probe": "OCR", "ocr_page": "OCR"}


class Limits(Protocol):
    """What the pool needs of `ExtractLimits` (any object with these fields will do)."""

    @property
    def timeout_seconds(self) -> float: ...
    @property
    def max_text_chars(self) -> int: ...
    @property
    def max_pdf_pages(self) -> int: ...
    @property
    def memory_limit_mb(self) -> int: ...


class ExtractorUnavailable(RuntimeError):
    """No child could take the document; not the file's fault, worth trying again later."""


class PoolClosed(ExtractorUnavailable):
    """The pool was closed (the daemon is stopping) before or while the document was served."""


class PoolBusy(ExtractorUnavailable):
    """Every child stayed busy for `acquire_timeout` seconds."""


class WorkerStartError(ExtractorUnavailable):
    """A child did not start or did not say hello (a broken install, not a bad file)."""


class _Crash(Exception):
    """The child is unusable; `reason` says how, for the document it was serving. `eof`: it
    closed its end of the pipe, so it is exiting (or dead) by itself."""

    def __init__(self, reason: str, *, eof: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.eof = eof


class _Timeout(Exception):
    pass


def default_size() -> int:
    """One child per core this process may run on: extraction is CPU-bound."""
    return max(1, len(os.sched_getaffinity(0)))


def reply_cap(max_chars: int) -> int:
    # UTF-8 JSON of max_chars characters: at most 6 bytes each (\u escapes), plus the rest.
    return max_chars * 6 + 65536


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    # Tesseract's OpenMP threads make parallel single-page runs many times slower
    # (tesseract-ocr/tesseract#3109); every child reads one document on one thread.
    env["OMP_THREAD_LIMIT"] = "1"
    # The child must import this very package even when it is not installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(_PACKAGE_ROOT), env.get("PYTHONPATH"))))
    return env


class _Child:
    """One child process and its pipes. Only the thread that holds it talks to it; `kill` may
    come from any thread (close), so killing and reaping are serialised by a lock."""

    def __init__(self, command: Sequence[str], memory_mb: int) -> None:
        self.memory_mb = memory_mb
        self.served = 0
        self.next_id = 1
        self.stderr_tail = bytearray()
        self._reaped = threading.Lock()
        self.proc = subprocess.Popen(
            [*command, "--memory-bytes", str(memory_mb * 1024 * 1024)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            process_group=0, cwd=_PACKAGE_ROOT, env=_worker_env(), close_fds=True,
        )
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ, "out")
        self.selector.register(self.proc.stderr, selectors.EVENT_READ, "err")
        self.pid = self.proc.pid

    # --- life and death ---

    def kill(self) -> None:
        """SIGKILL the whole process group, then reap the leader. Until it is reaped its pid,
        and so the group id, cannot be reused, so the group kill never hits a stranger."""
        with self._reaped:
            if self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pid, signal.SIGKILL)
                self.proc.wait()

    def exit_status(self, timeout: float) -> int | None:
        """The exit status of a child that is exiting by itself, if it does within `timeout`."""
        with self._reaped:
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return None

    def discard(self) -> None:
        self.kill()
        self.selector.close()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def looks_idle(self) -> bool:
        """Nothing to read while idle: no EOF (death) and no stray bytes, which would otherwise
        be taken for the start of the next document's reply."""
        assert self.proc.stdout is not None and self.proc.stderr is not None
        readable, _, _ = select.select([self.proc.stdout], [], [], 0)
        self.drain_stderr()
        return not readable

    def drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        while select.select([self.proc.stderr], [], [], 0)[0]:
            chunk = os.read(self.proc.stderr.fileno(), 65536)
            if not chunk:
                break
            self._keep_stderr(chunk)

    def _keep_stderr(self, chunk: bytes) -> None:
        self.stderr_tail += chunk
        del self.stderr_tail[:-_STDERR_TAIL]  # only the tail helps to explain a crash

    # --- frames ---

    def send(self, message: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        body = json.dumps(message).encode("utf-8")
        try:
            # Far below a pipe's buffer, and the child reads as soon as it is idle.
            os.write(self.proc.stdin.fileno(), FRAME_HEADER.pack(len(body)) + body)
        except BrokenPipeError:
            raise _Crash("exited before it read the request", eof=True) from None

    def receive(self, deadline: float, cap: int) -> dict[str, Any]:
        """One reply frame, read within `deadline` (time.monotonic) and `cap` bytes."""
        buf = bytearray()
        size: int | None = None
        while size is None or len(buf) < FRAME_HEADER.size + size:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _Timeout
            for key, _ in self.selector.select(remaining):
                chunk = os.read(key.fd, 1 << 20)
                if key.data == "err":
                    if chunk:
                        self._keep_stderr(chunk)
                    else:
                        self.selector.unregister(key.fileobj)
                    continue
                if not chunk:
                    raise _Crash("exited in the middle of its reply" if buf else "exited",
                                 eof=True)
                buf += chunk
            if size is None and len(buf) >= FRAME_HEADER.size:
                (size,) = FRAME_HEADER.unpack_from(buf)
                if size > cap:
                    raise _Crash(f"reply of {size} bytes exceeded the limit of {cap}")
        if len(buf) > FRAME_HEADER.size + size:
            raise _Crash("sent more than one reply")
        return _decode(bytes(buf[FRAME_HEADER.size:]))

    def hello(self, timeout: float) -> None:
        try:
            message = self.receive(time.monotonic() + timeout, _HELLO_MAX_BYTES)
        except _Timeout:
            raise WorkerStartError(f"extractor child gave no sign of life in {timeout:g} s"
                                   ) from None
        except _Crash as exc:
            self.kill()
            self.drain_stderr()
            raise WorkerStartError(f"extractor child {exc.reason} at start-up "
                                   f"(exit {self.proc.returncode}): {self.last_error()}"
                                   ) from None
        if message.get("hello") != PROTOCOL:
            raise WorkerStartError(f"extractor child speaks another protocol: {message!r:.200}")

    def last_error(self) -> str:
        lines = self.stderr_tail.decode("utf-8", "replace").strip().splitlines()
        return lines[-1][:300] if lines else ""


def _decode(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        raise _Crash("sent a reply that is not JSON") from None
    if not isinstance(message, dict):
        raise _Crash("sent a reply that is not a JSON object")
    return message


class ExtractorPool:
    """Up to `size` children, each serving one document at a time; thread-safe.

    `run()` blocks: it waits (at most `acquire_timeout` s) for a free child, starting one if its
    slot is empty, sends the request and waits for the reply within the document's timeout.
    """

    def __init__(self, size: int | None = None, *, recycle_after: int = 500,
                 acquire_timeout: float = 120.0, startup_timeout: float = 30.0,
                 memory_limit_mb: int = 1024, command: Sequence[str] | None = None) -> None:
        self.size = default_size() if size is None else size
        if self.size < 1 or recycle_after < 1 or acquire_timeout <= 0 or startup_timeout <= 0:
            raise ValueError("pool size, recycle_after and timeouts must be positive")
        self.recycle_after = recycle_after
        self.acquire_timeout = acquire_timeout
        self.startup_timeout = startup_timeout
        self.memory_limit_mb = memory_limit_mb  # for the children start() starts
        # Tests substitute a misbehaving child; the daemon always runs the real worker.
        self.command = list(command or [sys.executable, "-m", "alfrd_daemon.extract.worker"])
        self._lock = threading.Condition()
        self._idle: list[_Child | None] = [None] * self.size  # None: a slot with no child yet
        self._live: set[_Child] = set()  # every child not yet discarded, idle or busy
        self._closed = False
        self.started = 0  # children started so far (for status and tests)
        self.replaced = 0  # children killed after a breach, a crash or a garbage reply

    # --- life cycle ---

    def start(self) -> None:
        """Start every child now (in parallel), so that the first documents do not wait."""
        with self._lock:
            empty = sum(1 for slot in self._idle if slot is None)
            self._idle = [slot for slot in self._idle if slot is not None]
        children = []
        try:
            for _ in range(empty):
                children.append(self._spawn(self.memory_limit_mb))
            for child in children:
                child.hello(self.startup_timeout)
        except BaseException:
            for child in children:
                self._forget(child)
            with self._lock:
                self._idle.extend([None] * empty)
            raise
        with self._lock:
            self._idle.extend(children)
            self._lock.notify_all()

    def close(self) -> None:
        """Kill every child, idle or busy, and reap it; callers still waiting get PoolClosed."""
        with self._lock:
            self._closed = True
            live = list(self._live)
            idle = [child for child in self._idle if child is not None]
            self._idle = []
            self._lock.notify_all()
        for child in idle:
            self._forget(child)
        for child in live:
            child.kill()  # a busy one's caller sees it die and closes its pipes

    def __enter__(self) -> ExtractorPool:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def busy(self) -> int:
        """Children serving a document now (the others are idle or not started yet)."""
        with self._lock:
            return 0 if self._closed else self.size - len(self._idle)

    def pids(self) -> list[int]:
        """Pids of the children alive now."""
        with self._lock:
            return sorted(child.pid for child in self._live)

    # --- serving ---

    def run(self, kind: str, path: Path, limits: Limits,
            options: dict[str, Any] | None = None) -> dict[str, Any]:
        """The worker's result for the document at `path` (a dict with at least "text");
        `options` (JSON values) reach the kind's handler as the request's "options".

        Raises PermanentExtractionError when the content is unusable or breaks a limit, and
        ExtractorUnavailable (PoolBusy, PoolClosed, WorkerStartError) when no child could serve.
        """
        child = self._acquire(limits.memory_limit_mb)
        outcome: dict[str, Any] | Exception = PoolClosed("extractor pool closed")
        keep = False
        try:
            outcome, keep = self._ask(child, kind, Path(path), limits, options or {})
        finally:
            self._release(child, keep)  # a child not kept is dead before the caller hears why
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def _ask(self, child: _Child, kind: str, path: Path, limits: Limits,
             options: dict[str, Any]) -> tuple[dict[str, Any] | Exception, bool]:
        """(result or the error to raise, keep the child?) for one document."""
        label = _LABELS.get(kind, kind)
        ident, child.next_id = child.next_id, child.next_id + 1
        request = {"id": ident, "kind": kind, "path": str(path.resolve()),
                   "max_pages": limits.max_pdf_pages, "max_chars": limits.max_text_chars,
                   "cpu_seconds": math.ceil(limits.timeout_seconds) + 1, "options": options}
        child.stderr_tail.clear()
        deadline = time.monotonic() + limits.timeout_seconds
        try:
            child.send(request)
            reply = child.receive(deadline, reply_cap(limits.max_text_chars))
        except _Timeout:
            self._count_replaced()
            return PermanentExtractionError(
                f"{label} extraction timed out after {limits.timeout_seconds:g} s"), False
        except _Crash as exc:
            # A child that closed its pipe is dying: its exit status explains how. One that is
            # still alive (garbage, an oversized reply) gets no more say.
            code = child.exit_status(1.0) if exc.eof else None
            child.kill()
            child.drain_stderr()  # what it wrote last may still be in the pipe
            self._count_replaced()
            return self._crash_error(child, label, exc.reason, code, limits), False
        child.served += 1
        outcome, sound = _outcome(reply, ident, label, limits)
        if not sound:
            self._count_replaced()
        return outcome, sound and child.served < self.recycle_after

    def _crash_error(self, child: _Child, label: str, how: str, code: int | None,
                     limits: Limits) -> Exception:
        """What the caller is told about a child that crashed or broke the protocol; `code` is
        its exit status if it ended by itself, None if we had to kill it."""
        if self._closed:
            return PoolClosed("extractor pool closed while the document was served")
        if b"MemoryError" in child.stderr_tail:
            return PermanentExtractionError(
                f"{label} extraction exceeded the memory limit of {limits.memory_limit_mb} MB")
        if code is None:
            return PermanentExtractionError(f"{label} worker {how}")
        if code < 0 and -code in _GENTLE_SIGNALS:
            # Someone is stopping the service, and the child heard it first.
            return ExtractorUnavailable(f"{label} worker was stopped ({signal.strsignal(-code)})")
        if code < 0:
            if -code == signal.SIGXCPU:
                return PermanentExtractionError(f"{label} extraction exceeded its CPU time limit")
            name = signal.strsignal(-code) or f"signal {-code}"
            return PermanentExtractionError(f"{label} worker was killed ({name}) while it "
                                            f"read this document")
        detail = child.last_error()
        return PermanentExtractionError(
            f"{label} worker {how} (exit {code})" + (f": {detail}" if detail else ""))

    def _count_replaced(self) -> None:
        with self._lock:
            self.replaced += 1

    # --- slots ---

    def _acquire(self, memory_mb: int) -> _Child:
        deadline = time.monotonic() + self.acquire_timeout
        with self._lock:
            while not self._closed and not self._idle:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PoolBusy(f"no extractor child free within {self.acquire_timeout:g} s")
                self._lock.wait(remaining)
            if self._closed:
                raise PoolClosed("extractor pool closed")
            slot = self._idle.pop()
        try:
            return self._ready(slot, memory_mb)
        except BaseException as exc:
            self._release(None, False)
            if self._closed and not isinstance(exc, PoolClosed):
                raise PoolClosed("extractor pool closed") from exc
            raise

    def _ready(self, slot: _Child | None, memory_mb: int) -> _Child:
        """The slot's child if it is sound and has the wanted memory limit, else a new one."""
        if slot is not None and slot.memory_mb == memory_mb and slot.looks_idle():
            return slot
        if slot is not None:
            self._forget(slot)  # died while idle, stray output, or other limits
        child = self._spawn(memory_mb)
        try:
            child.hello(self.startup_timeout)
        except BaseException:
            self._forget(child)
            raise
        return child

    def _spawn(self, memory_mb: int) -> _Child:
        try:
            child = _Child(self.command, memory_mb)
        except OSError as exc:
            raise WorkerStartError(f"cannot start an extractor child: {exc}") from exc
        with self._lock:
            closed = self._closed
            if not closed:
                self._live.add(child)
                self.started += 1
        if closed:  # close() ran while we forked: it could not have seen this child
            child.discard()
            raise PoolClosed("extractor pool closed")
        return child

    def _forget(self, child: _Child) -> None:
        child.discard()
        with self._lock:
            self._live.discard(child)

    def _release(self, child: _Child | None, keep: bool) -> None:
        if child is not None and not keep:
            self._forget(child)  # its slot is refilled by the next caller that needs it
        with self._lock:
            closed = self._closed
            if not closed:
                self._idle.append(child if keep else None)
                self._lock.notify()
        if closed and child is not None and keep:
            self._forget(child)


def _outcome(reply: dict[str, Any], ident: int, label: str,
             limits: Limits) -> tuple[dict[str, Any] | Exception, bool]:
    """(result or error, is the child still sound?) from a well-framed reply."""
    if reply.get("id") != ident:
        return PermanentExtractionError(f"{label} worker answered another request"), False
    if reply.get("ok") is True:
        result = reply.get("result")
        if isinstance(result, dict) and isinstance(result.get("text"), str):
            return result, True
        return PermanentExtractionError(f"{label} worker sent a malformed result"), False
    error, reason = reply.get("error"), reply.get("reason")
    if error == "document" and isinstance(reason, str):
        return PermanentExtractionError(reason), True  # e.g. corrupt, encrypted, too many pages
    if error == "memory":
        return PermanentExtractionError(
            f"{label} extraction exceeded the memory limit of {limits.memory_limit_mb} MB"), False
    if error == "request":
        # Our own bug, not the file's: the child refused it before touching the document.
        return RuntimeError(f"{label} worker refused the request: {reason}"), True
    return PermanentExtractionError(f"{label} worker failed: {reason}"), False


def children_cpu_seconds(pids: Sequence[int]) -> float:
    """User+system CPU seconds of live processes, from /proc (for benchmarks and status)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / tick


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
