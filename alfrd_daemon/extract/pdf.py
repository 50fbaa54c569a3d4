"""The text layer of a PDF, read by `pdf_worker` in a child process we can kill.

pypdf can spin or balloon on hostile input, so it never runs in the daemon: each PDF gets a
fresh `python -m alfrd_daemon.extract.pdf_worker`, which puts RLIMIT_AS/RLIMIT_CPU on itself
before it opens the file and is killed, with its whole process group, when it overruns its
time. This module spawns it, reads its reply within a deadline and a size cap, and turns every
way it can end into a `Parsed` or an error.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from alfrd_daemon.extract.api import ExtractLimits, Parsed, PermanentExtractionError
from alfrd_daemon.extract.pdf_protocol import EXIT_NO_MEMORY, EXIT_OK
from alfrd_daemon.extract.pool import ExtractorPool

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding alfrd_daemon/
_WORKER_STDERR_TAIL = 4096
# Stopping the service signals the worker too; that says nothing about the file.
_GENTLE_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


def _capped_limit(kind: int, wanted: int) -> int:
    # An unprivileged process cannot raise a limit above the hard limit it already has.
    hard = resource.getrlimit(kind)[1]
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def _rlimits(limits: ExtractLimits) -> str:
    """The limits the PDF child puts on itself before it reads the file. Set in the child, not
    through preexec_fn: code between fork and exec in a threaded daemon can deadlock."""
    memory = _capped_limit(resource.RLIMIT_AS, limits.memory_limit_mb * 1024 * 1024)
    cpu_seconds = math.ceil(limits.timeout_seconds) + 1  # a backstop if we die before killing it
    cpu_soft = _capped_limit(resource.RLIMIT_CPU, cpu_seconds)
    cpu_hard = _capped_limit(resource.RLIMIT_CPU, cpu_seconds + 2)
    return f"{memory},{cpu_soft},{cpu_hard}"


def _worker_env(limits: ExtractLimits) -> dict[str, str]:
    env = dict(os.environ)
    env["ALFRD_PDF_RLIMITS"] = _rlimits(limits)
    # The child must import this very package even when it is not installed.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(_PACKAGE_ROOT), env.get("PYTHONPATH"))))
    return env


def _spawn_pdf_worker(path: Path, limits: ExtractLimits) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "alfrd_daemon.extract.pdf_worker", str(path.resolve()),
               str(limits.max_pdf_pages), str(limits.max_text_chars)]
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        process_group=0, cwd=_PACKAGE_ROOT, env=_worker_env(limits),
        close_fds=True,
    )


def _reply_cap(limits: ExtractLimits) -> int:
    # UTF-8 JSON of max_text_chars characters: at most 6 bytes each (\u escapes), plus the rest.
    return limits.max_text_chars * 6 + 65536


def _read_worker(proc: subprocess.Popen[bytes], limits: ExtractLimits) -> tuple[bytes, bytes]:
    """Both pipes drained until EOF and exit, within the deadline and the reply cap."""
    assert proc.stdout is not None and proc.stderr is not None
    deadline = time.monotonic() + limits.timeout_seconds
    timed_out = PermanentExtractionError(
        f"PDF extraction timed out after {limits.timeout_seconds:g} s")
    out, err, cap = bytearray(), bytearray(), _reply_cap(limits)
    with selectors.DefaultSelector() as selector:
        selector.register(proc.stdout, selectors.EVENT_READ, out)
        selector.register(proc.stderr, selectors.EVENT_READ, err)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise timed_out
            for key, _ in selector.select(remaining):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    selector.unregister(key.fileobj)
                    continue
                key.data.extend(chunk)
                del err[:-_WORKER_STDERR_TAIL]  # only the tail helps to explain a crash
                if len(out) > cap:
                    raise PermanentExtractionError("PDF worker reply exceeded its size limit")
    try:
        proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        raise timed_out from None
    return bytes(out), bytes(err)


def _kill_and_reap(proc: subprocess.Popen[bytes]) -> None:
    # poll() reaps an exited child; until then its pid (and group id) cannot be reused.
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _run_pdf_worker(path: Path, limits: ExtractLimits) -> dict[str, Any]:
    proc = _spawn_pdf_worker(path, limits)
    try:
        out, err = _read_worker(proc, limits)
    finally:
        _kill_and_reap(proc)
    return _worker_reply(proc.returncode, out, err, limits)


def _worker_reply(code: int, out: bytes, err: bytes, limits: ExtractLimits) -> dict[str, Any]:
    try:
        reply = json.loads(out)
    except ValueError:
        reply = None
    if isinstance(reply, dict):
        if code == EXIT_NO_MEMORY:
            raise PermanentExtractionError(
                f"PDF extraction exceeded the memory limit of {limits.memory_limit_mb} MB")
        if isinstance(reply.get("error"), str):
            raise PermanentExtractionError(reply["error"])
        if (code == EXIT_OK and isinstance(reply.get("text"), str)
                and isinstance(reply.get("pages"), int)):
            return reply
    _raise_for_crash(code, err, limits)


def _raise_for_crash(code: int, err: bytes, limits: ExtractLimits) -> NoReturn:
    if code < 0 and -code not in _GENTLE_SIGNALS:
        if -code == signal.SIGXCPU:
            raise PermanentExtractionError("PDF extraction exceeded its CPU time limit")
        name = signal.strsignal(-code) or f"signal {-code}"
        raise PermanentExtractionError(f"PDF worker was killed ({name})")
    if b"MemoryError" in err:
        raise PermanentExtractionError(
            f"PDF extraction exceeded the memory limit of {limits.memory_limit_mb} MB")
    tail = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
    # Not the file's fault as far as we can tell (e.g. the worker could not start).
    raise RuntimeError(f"PDF worker failed (exit {code}): {tail[0][:300]}")


def parse_pdf(path: Path, head: bytes, limits: ExtractLimits,
              pool: ExtractorPool | None = None) -> Parsed:
    """The PDF's text layer, title and page count; raises PermanentExtractionError when the
    content is unusable, RuntimeError when the worker failed for a reason of its own. With a
    pool, a long-lived extractor reads it (the daemon); without, a child started for it alone
    (one-off commands, where a pool would cost more than it saves)."""
    if b"%PDF-" not in head[:1024]:
        raise PermanentExtractionError("not a PDF: no %PDF- header")  # spare a process spawn
    reply = pool.run("pdf", path, limits) if pool is not None else _run_pdf_worker(path, limits)
    metadata: dict[str, Any] = {"pages": reply["pages"]}
    if reply.get("page_errors"):
        metadata["page_errors"] = reply["page_errors"]
    ocr_pages = _pages_for_ocr(reply, limits.pdf_min_page_chars)
    if ocr_pages:
        metadata["ocr_pages"] = ocr_pages
    title = reply.get("title") if isinstance(reply.get("title"), str) else None
    # Pages without (enough of) a text layer are scans: the document is left pending so that
    # OCR reads those pages; the text it has is stored now and searchable at once.
    return Parsed(reply["text"], "pdf", title, metadata,
                  truncated=reply.get("truncated") is True,
                  pending=bool(ocr_pages) or not reply["text"].strip())


def _pages_for_ocr(reply: dict[str, Any], min_chars: int) -> list[int]:
    """0-based pages whose text layer is shorter than `min_chars` non-space characters."""
    counts = reply.get("page_chars")
    if not isinstance(counts, list):
        return []
    return [index for index, count in enumerate(counts)
            if isinstance(count, int) and count < min_chars]
