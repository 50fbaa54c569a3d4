"""A long-lived extraction child: reads requests on stdin, answers on stdout, until EOF.

Usage: ``python -m alfrd_daemon.extract.worker --memory-bytes N`` (started by
`alfrd_daemon.extract.pool.ExtractorPool`, never by hand).

Start-up (the interpreter and pypdf, ~110 ms of CPU) is paid once per child instead of once per
document. The child stays as untrusted as the one-shot `pdf_worker` was: RLIMIT_AS is set once,
first thing; a CPU backstop is re-armed before every document; the parent kills the whole
process group when a document overruns its wall time, and replaces the child after any breach.

Protocol (see `pool.py` for the parent's side): every message is one frame, a 4-byte big-endian
length and that many bytes of UTF-8 JSON holding one object.

- child → parent, once, when ready: ``{"hello": PROTOCOL, "pid": int, "kinds": [str, ...]}``
- parent → child: ``{"id": int, "kind": str, "path": str, "max_pages": int, "max_chars": int,
  "cpu_seconds": int, "options": {...}}`` (options: what one kind needs beyond these, e.g.
  OCR languages; may be absent)
- child → parent, exactly one per request: ``{"id": int, "ok": true, "result": {...}}`` or
  ``{"id": int, "ok": false, "error": ERROR, "reason": str}`` where ERROR is "document" (the
  content is unusable; the child is fine), "memory" (the child hit RLIMIT_AS and exits),
  "request" (the parent sent something malformed) or "internal" (a handler bug; the child exits).

A new kind of document (office files, OCR) is one more entry in HANDLERS: a function from the
request to a result dict holding at least "text", raising DocumentError for unusable content.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import resource
import struct
import sys
import warnings
from collections.abc import Callable
from typing import Any, BinaryIO, NoReturn

from alfrd_daemon.extract import pdf_worker

PROTOCOL = 1
FRAME_HEADER = struct.Struct(">I")
MAX_REQUEST_BYTES = 1 << 16  # a request is a path and a few numbers

EXIT_OK = 0
EXIT_NO_MEMORY = 3
EXIT_INTERNAL = 70
EXIT_PROTOCOL = 76


class DocumentError(Exception):
    """The document's content cannot be read; `reason` is shown to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProtocolError(Exception):
    """The parent sent something that is not a frame of this protocol."""


Handler = Callable[[dict[str, Any]], dict[str, Any]]


def _pdf(request: dict[str, Any]) -> dict[str, Any]:
    try:
        return pdf_worker.extract_pdf(request["path"], request["max_pages"],
                                      request["max_chars"])
    except pdf_worker.BadPdf as exc:
        raise DocumentError(exc.reason) from exc


def _office(request: dict[str, Any]) -> dict[str, Any]:
    # Imported here: a child that only ever reads PDFs never loads the office libraries.
    from alfrd_daemon.extract import office

    mime = request.get("options", {}).get("mime")
    if not isinstance(mime, str):
        raise DocumentError("office request without a MIME type")
    try:
        # The tool must end before the parent's wall-clock kill, to fail with its own reason.
        return office.extract_office(request["path"], mime, request["max_chars"],
                                     max(1, request["cpu_seconds"] - 3))
    except office.OfficeError as exc:
        raise DocumentError(exc.reason) from exc


def _ocr_probe(request: dict[str, Any]) -> dict[str, Any]:
    # Imported here: a child that never OCRs never loads Pillow, pdfium or Tesseract.
    from alfrd_daemon.extract import ocr_pages

    try:
        return ocr_pages.probe(request)
    except ocr_pages.BadImage as exc:
        raise DocumentError(exc.reason) from exc


def _ocr_page(request: dict[str, Any]) -> dict[str, Any]:
    from alfrd_daemon.extract import ocr_pages

    try:
        return ocr_pages.ocr_page(request)
    except ocr_pages.BadImage as exc:
        raise DocumentError(exc.reason) from exc


HANDLERS: dict[str, Handler] = {
    "pdf": _pdf,
    "office": _office,
    "ocr_probe": _ocr_probe,
    "ocr_page": _ocr_page,
}

_REQUEST_FIELDS: dict[str, type] = {
    "id": int, "kind": str, "path": str, "max_pages": int, "max_chars": int, "cpu_seconds": int,
}


# --- limits --------------------------------------------------------------------------------------

def _capped(kind: int, wanted: int) -> int:
    # An unprivileged process cannot raise a limit above the hard limit it already has.
    hard = resource.getrlimit(kind)[1]
    return wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)


def limit_memory(memory_bytes: int) -> None:
    """RLIMIT_AS for the child's whole life; no core dumps (SIGXCPU would write one)."""
    memory = _capped(resource.RLIMIT_AS, memory_bytes)
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def arm_cpu_backstop(seconds: int) -> None:
    """Let this document use `seconds` more CPU seconds, then SIGXCPU ends the child.

    RLIMIT_CPU counts the whole life of a process, so it is moved forward before each document:
    the soft limit may be raised and lowered freely below the hard one. The parent's wall-clock
    kill comes first (one thread cannot burn more CPU than wall time); this only matters when
    the parent died and cannot kill us any more.
    """
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = math.ceil(usage.ru_utime + usage.ru_stime)
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    soft = used + seconds
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


# --- framing -------------------------------------------------------------------------------------

def _read_exact(stream: BinaryIO, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = stream.read(size - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def read_frame(stream: BinaryIO) -> dict[str, Any] | None:
    """The next request, or None at a clean end of input (the parent closed our stdin)."""
    header = _read_exact(stream, FRAME_HEADER.size)
    if not header:
        return None
    if len(header) < FRAME_HEADER.size:
        raise ProtocolError("input ended inside a frame header")
    (size,) = FRAME_HEADER.unpack(header)
    if size > MAX_REQUEST_BYTES:
        raise ProtocolError(f"request of {size} bytes")
    body = _read_exact(stream, size)
    if len(body) < size:
        raise ProtocolError("input ended inside a frame")
    try:
        message = json.loads(body)
    except ValueError as exc:
        raise ProtocolError("a frame that is not JSON") from exc
    if not isinstance(message, dict):
        raise ProtocolError("a frame that is not a JSON object")
    return message


def write_frame(stream: BinaryIO, message: dict[str, Any]) -> None:
    body = json.dumps(message, ensure_ascii=False).encode("utf-8")
    stream.write(FRAME_HEADER.pack(len(body)) + body)
    stream.flush()


# --- serving -------------------------------------------------------------------------------------

def _bad_request(message: dict[str, Any]) -> str | None:
    for name, kind in _REQUEST_FIELDS.items():
        value = message.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"field {name!r} is missing or not {kind.__name__}"
    if not isinstance(message.get("options", {}), dict):
        return "field 'options' is not an object"
    if message["kind"] not in HANDLERS:
        return f"no handler for kind {message['kind']!r}"
    return None


def serve_one(request: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(reply, keep going?) for one request."""
    ident = request.get("id")
    problem = _bad_request(request)
    if problem is not None:
        return {"id": ident, "ok": False, "error": "request", "reason": problem}, True
    arm_cpu_backstop(request["cpu_seconds"])
    try:
        result = HANDLERS[request["kind"]](request)
    except DocumentError as exc:
        return {"id": ident, "ok": False, "error": "document", "reason": exc.reason}, True
    except MemoryError:
        # Whatever the handler left behind cannot be trusted to be freed: end this child.
        return {"id": ident, "ok": False, "error": "memory", "reason": "memory limit"}, False
    except Exception as exc:
        reason = f"{type(exc).__name__}: {str(exc)[:300]}"
        return {"id": ident, "ok": False, "error": "internal", "reason": reason}, False
    return {"id": ident, "ok": True, "result": result}, True


def _private_channels() -> tuple[BinaryIO, BinaryIO]:
    """The protocol's pipes on descriptors of their own; fd 0 becomes /dev/null and fd 1 a copy
    of stderr, so that nothing a library (or C code) prints can corrupt a reply."""
    requests = os.fdopen(os.dup(0), "rb")
    replies = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return requests, replies


def _quiet_libraries() -> None:
    # Warnings about sloppy documents are routine; they may go to stderr, never to a reply.
    logging.basicConfig(stream=sys.stderr, level=logging.ERROR)
    warnings.simplefilter("ignore")


def serve(requests: BinaryIO, replies: BinaryIO) -> int:
    write_frame(replies, {"hello": PROTOCOL, "pid": os.getpid(), "kinds": sorted(HANDLERS)})
    while True:
        try:
            request = read_frame(requests)
        except ProtocolError as exc:
            print(f"extract worker: protocol error: {exc}", file=sys.stderr)
            return EXIT_PROTOCOL
        if request is None:
            return EXIT_OK
        reply, keep_going = serve_one(request)
        try:
            write_frame(replies, reply)
        except (UnicodeEncodeError, ValueError) as exc:
            # A result that JSON cannot carry is a handler bug; say so instead of going silent.
            write_frame(replies, {"id": request.get("id"), "ok": False, "error": "internal",
                                  "reason": f"unserialisable result: {type(exc).__name__}"})
            return EXIT_INTERNAL
        if not keep_going:
            return EXIT_NO_MEMORY if reply.get("error") == "memory" else EXIT_INTERNAL


def _usage() -> NoReturn:
    print("usage: python -m alfrd_daemon.extract.worker --memory-bytes N", file=sys.stderr)
    sys.exit(64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alfrd_daemon.extract.worker", add_help=False)
    parser.add_argument("--memory-bytes", type=int, required=True)
    try:
        args = parser.parse_args(argv)
    except SystemExit:
        _usage()
    limit_memory(args.memory_bytes)
    requests, replies = _private_channels()
    _quiet_libraries()
    try:
        return serve(requests, replies)
    except BrokenPipeError:
        return EXIT_OK  # the parent went away: nobody is left to answer


if __name__ == "__main__":
    sys.exit(main())
