"""Text extraction by file type, with hard limits so that no input can hang or balloon the daemon.

Text-like formats are parsed in-process from a bounded read, with parsers that stay linear on
hostile input. PDFs are parsed by `alfrd_daemon.extract.pdf_worker` in a child process that
runs under RLIMIT_AS/RLIMIT_CPU and is killed, with its whole process group, when it overruns
its time. Images, office files and unknown binaries are not read at all: they come back
"pending", for downstream OCR workers.
"""

import codecs
import contextlib
import csv
import email
import functools
import html
import io
import json
import math
import os
import re
import resource
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage, Message
from email.policy import EmailPolicy
from itertools import islice
from pathlib import Path, PurePath
from typing import Any, NoReturn

import charset_normalizer

from alfrd_daemon.pgsafe import clean_text

EXTRACTOR_VERSIONS: dict[str, str] = {
    "plain": "1",
    "markdown": "1",
    "csv": "1",
    "json": "1",
    "html": "1",
    "email": "1",
    "pdf": "1",
    "none": "1",  # types we do not read; bump when one of them gains an extractor
}

HEAD_BYTES = 8192

PDF = "application/pdf"
PLAIN = "text/plain"
MARKDOWN = "text/markdown"
CSV = "text/csv"
TSV = "text/tab-separated-values"
JSON = "application/json"
HTML = "text/html"
EML = "message/rfc822"
OCTET = "application/octet-stream"

_OOXML = "application/vnd.openxmlformats-officedocument"
_ODF = "application/vnd.oasis.opendocument"
_EXT_MIME: dict[str, str] = {
    ".txt": PLAIN, ".text": PLAIN, ".log": PLAIN,
    ".md": MARKDOWN, ".markdown": MARKDOWN,
    ".csv": CSV, ".tsv": TSV, ".tab": TSV,
    ".json": JSON,
    ".html": HTML, ".htm": HTML, ".xhtml": HTML,
    ".eml": EML,
    ".pdf": PDF,
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
    ".tif": "image/tiff", ".tiff": "image/tiff", ".webp": "image/webp",
    ".heic": "image/heic", ".heif": "image/heif", ".bmp": "image/bmp",
    ".doc": "application/msword", ".xls": "application/vnd.ms-excel",
    ".ppt": "application/vnd.ms-powerpoint", ".rtf": "application/rtf",
    ".docx": f"{_OOXML}.wordprocessingml.document",
    ".xlsx": f"{_OOXML}.spreadsheetml.sheet",
    ".pptx": f"{_OOXML}.presentationml.presentation",
    ".odt": f"{_ODF}.text", ".ods": f"{_ODF}.spreadsheet", ".odp": f"{_ODF}.presentation",
    ".zip": "application/zip", ".gz": "application/gzip",
}

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "application/x-ole-storage"),  # legacy .doc/.xls/.msg
    (b"{\\rtf", "application/rtf"),
    (b"\x1f\x8b", "application/gzip"),
    (b"%!PS", "application/postscript"),
)
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"})
_ZIP_MARKERS: tuple[tuple[bytes, str], ...] = (
    (b"word/", f"{_OOXML}.wordprocessingml.document"),
    (b"xl/", f"{_OOXML}.spreadsheetml.sheet"),
    (b"ppt/", f"{_OOXML}.presentationml.presentation"),
)
_HTML_START = re.compile(rb"\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])", re.I | re.S)

# Longest first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# Control bytes that do not occur in real text (tab, newlines, form feed, backspace, ESC do).
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\x0b\x0c\r\x08\x1b") + b"\x7f"

_HSPACE = re.compile(r"[ \t\r\f\v\xa0]+")
_MAX_META_CHARS = 1000
_MAX_ATTACHMENT_NAMES = 50
_WORKER_STDERR_TAIL = 4096


@dataclass(frozen=True)
class ExtractLimits:
    timeout_seconds: float = 30.0  # wall time for one extraction that can hang (PDF)
    max_text_chars: int = 5_000_000  # extracted text is truncated to this (and truncated=True)
    max_pdf_pages: int = 5000  # more pages -> PermanentExtractionError
    memory_limit_mb: int = 1024  # RLIMIT_AS for the PDF child process

    def __post_init__(self) -> None:
        if not (self.timeout_seconds > 0 and self.max_text_chars > 0
                and self.max_pdf_pages > 0 and self.memory_limit_mb > 0):
            raise ValueError(f"extraction limits must be positive: {self}")


@dataclass(frozen=True)
class Extraction:
    text: str
    mime_type: str
    status: str  # "extracted", or "pending" for content left to downstream (OCR) workers
    extractor: str  # "name/version", see EXTRACTOR_VERSIONS
    title: str | None = None
    truncated: bool = False
    metadata: dict = field(default_factory=dict)


class PermanentExtractionError(Exception):
    """The file's content is bad (corrupt/encrypted PDF, too many pages, timeout, memory blow-up).

    `reason` is one short human sentence.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Parsed:
    """What a format parser found, before cleaning and truncation."""

    text: str
    extractor: str
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


# --- type detection ------------------------------------------------------------------------------

def detect_mime(name: str, head: bytes) -> str:
    """MIME type from the file name's extension, else from the first bytes of the content."""
    by_extension = _EXT_MIME.get(PurePath(name).suffix.lower())
    if by_extension:
        return by_extension
    head = head[:HEAD_BYTES]
    return _sniff_magic(head) or (PLAIN if _looks_like_text(head) else OCTET)


def _sniff_magic(head: bytes) -> str | None:
    if b"%PDF-" in head[:1024]:
        return PDF
    for magic, mime in _MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "image/heic"
    if head.startswith(b"PK\x03\x04"):
        return _sniff_zip(head)
    if _HTML_START.match(head[:1024]):
        return HTML
    return None


def _sniff_zip(head: bytes) -> str:
    # ODF stores an uncompressed "mimetype" member first, which names the exact type.
    if head[30:38] == b"mimetype":
        size = int.from_bytes(head[18:22], "little")
        declared = head[38:38 + size]
        if 0 < size < 100 and declared.isascii() and b"/" in declared:
            return declared.decode("ascii")
    for marker, mime in _ZIP_MARKERS:
        if marker in head:
            return mime
    return "application/zip"


def _looks_like_text(head: bytes) -> bool:
    if not head or head.startswith(tuple(bom for bom, _ in _BOMS)):
        return True
    if b"\x00" in head:
        return False
    junk = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return junk * 50 <= len(head)  # a few stray control bytes still read as text


# --- decoding ------------------------------------------------------------------------------------

# Single-byte Latin code pages that charset-normalizer often picks for short Western European
# text where cp1252 is the truth (it calls German "cp1257" and French "cp1250").
_LATIN_FAMILY = frozenset({
    "cp1250", "cp1252", "cp1254", "cp1257", "latin_1", "iso8859_2", "iso8859_3", "iso8859_4",
    "iso8859_9", "iso8859_10", "iso8859_13", "iso8859_14", "iso8859_15", "iso8859_16",
    "mac_latin2", "mac_roman", "mac_iceland", "mac_turkish",
    # DOS code pages for Latin scripts: charset-normalizer picks cp775 for short German text.
    "cp437", "cp775", "cp850", "cp852", "cp857", "cp858", "cp860", "cp861", "cp863", "cp865",
})
# What Central European / Baltic / Turkish letters turn into when read as cp1252 (ł→³, ą→¹,
# Ż→¯, Ą→¥, š→ð in cp1257, Turkish dotless i→ý ...). Their presence means cp1252 is the wrong guess.
_NOT_WESTERN = frozenset("¹³¯¥ðþÐÞýÝ")
_WESTERN = frozenset({"cp1252", "latin_1", "iso8859_15"})
_GUESS_SAMPLE = 1 << 20


def _decode(data: bytes, encoding: str, *, partial: bool, errors: str) -> str:
    # An incremental decoder drops a multi-byte sequence cut off by a capped read instead of
    # failing (strict) or inventing a replacement character for it.
    return codecs.getincrementaldecoder(encoding)(errors).decode(data, final=not partial)


def decode_text(data: bytes, *, partial: bool = False,
                declared: str | None = None) -> tuple[str, str]:
    """(text, encoding): BOM, then strict UTF-8, then a declared charset, then a guess."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _decode(data[len(bom):], encoding, partial=partial, errors="replace"), encoding
    candidates = ["utf-8"] + ([declared] if declared else [])
    for encoding in candidates:
        try:
            return _decode(data, encoding, partial=partial, errors="strict"), encoding
        except (UnicodeDecodeError, LookupError):
            continue
    encoding = _guess_encoding(data) or "utf-8"
    return _decode(data, encoding, partial=partial, errors="replace"), encoding


def _guess_encoding(data: bytes) -> str | None:
    sample = data[:_GUESS_SAMPLE]
    if len(data) > _GUESS_SAMPLE and b"\n" in sample:
        sample = sample[:sample.rindex(b"\n")]  # never cut a multi-byte character in half
    candidates = [match.encoding for match in charset_normalizer.from_bytes(sample)]
    if not candidates or candidates[0] not in _LATIN_FAMILY:
        return candidates[0] if candidates else None
    if _reads_as_western(sample):
        return "cp1252"
    # Central European letters in it: the best Latin guess that is not the Western one.
    others = (name for name in candidates if name in _LATIN_FAMILY and name not in _WESTERN)
    return next(others, candidates[0])


def _reads_as_western(sample: bytes) -> bool:
    try:
        text = sample.decode("cp1252")
    except UnicodeDecodeError:
        return False
    return _NOT_WESTERN.isdisjoint(text)


# --- format parsers (in-process, bounded input) --------------------------------------------------

def _parse_plain(data: bytes, partial: bool) -> _Parsed:
    text, encoding = decode_text(data, partial=partial)
    return _Parsed(text, "plain", metadata={"encoding": encoding})


_MD_HEADING = re.compile(r"^#[ \t]+(.+?)[ \t#]*$", re.M)


def _parse_markdown(data: bytes, partial: bool) -> _Parsed:
    text, encoding = decode_text(data, partial=partial)
    heading = _MD_HEADING.search(text, 0, 65536)
    title = heading.group(1) if heading else None
    return _Parsed(text, "markdown", title, {"encoding": encoding})


def _parse_csv(data: bytes, partial: bool, *, delimiter: str | None = None) -> _Parsed:
    text, encoding = decode_text(data, partial=partial)
    text = text.replace("\x00", "")
    delimiter = delimiter or _guess_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        rows = [" ".join(cell.strip() for cell in row if cell.strip()) for row in reader]
    except csv.Error:
        # e.g. a field over csv.field_size_limit: the raw text is still searchable
        return _Parsed(text, "csv", metadata={"encoding": encoding, "csv": "unparsable"})
    lines = [row for row in rows if row]
    return _Parsed("\n".join(lines), "csv", metadata={"encoding": encoding, "rows": len(lines)})


def _guess_delimiter(text: str) -> str:
    # csv.Sniffer is regex-heavy and erratic; the first line's separator count is enough here.
    first = next((line for line in islice(text.splitlines(), 20) if line.strip()), "")
    return max(",;\t|", key=first.count)


def _parse_json(data: bytes, partial: bool) -> _Parsed:
    text, encoding = decode_text(data, partial=partial)
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return _Parsed(text, "json", metadata={"encoding": encoding, "json": "invalid"})
    return _Parsed("\n".join(_json_strings(doc)), "json", metadata={"encoding": encoding})


def _json_strings(doc: Any) -> Iterator[str]:
    # An explicit stack: deep nesting must not hit the recursion limit.
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in reversed(node.items()):
                stack.extend((value, key))
        elif isinstance(node, list):
            stack.extend(reversed(node))
        elif isinstance(node, str):
            if node:
                yield node
        elif isinstance(node, int | float) and not isinstance(node, bool):
            yield str(node)  # invoice numbers and amounts are worth finding too


# HTML: a hand-written forward-only scanner. html.parser in Python 3.11.7 is quadratic on
# unterminated markup (measured: "<a " * 20_000, 60 KB, takes 25 s) and raises on some "<![".
_TAG_NAME = re.compile(r"</?([A-Za-z][A-Za-z0-9:-]*)")
_RAW_TAGS = ("script", "style", "title")  # content is not markup and not body text
_RAW_CLOSE = {tag: re.compile(rf"</{tag}\s*>", re.I) for tag in _RAW_TAGS}
_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption",
    "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav",
    "ol", "p", "pre", "section", "table", "tr", "ul",
})
_CELL_TAGS = frozenset({"td", "th"})
_META_CHARSET = re.compile(rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""",
                           re.I)


def _html_tokens(src: str) -> Iterator[tuple[str, str]]:
    """("text", chunk), ("tag", name) or (raw tag name, content), in one linear pass."""
    pos, end = 0, len(src)
    while pos < end:
        lt = src.find("<", pos)
        if lt < 0:
            yield "text", src[pos:]
            return
        if lt > pos:
            yield "text", src[pos:lt]
        if src.startswith("<!--", lt):
            close = src.find("-->", lt + 4)
            if close < 0:
                return  # an unterminated comment hides the rest, as in browsers
            pos = close + 3
            continue
        name = _TAG_NAME.match(src, lt)
        if name is None and not src.startswith(("<!", "<?"), lt):
            yield "text", "<"  # a bare "<" in text, e.g. "a < b"
            pos = lt + 1
            continue
        gt = src.find(">", lt)
        if gt < 0:
            return  # no ">" anywhere after: the rest is one unterminated tag
        pos = gt + 1
        if name is None:
            continue  # <!DOCTYPE>, <?xml?>, <![CDATA[: no text
        tag = name.group(1).lower()
        if tag in _RAW_CLOSE and src[lt + 1] != "/":
            closing = _RAW_CLOSE[tag].search(src, pos)
            content_end, pos = (closing.start(), closing.end()) if closing else (end, end)
            yield tag, src[gt + 1:content_end]
        else:
            yield "tag", tag


def html_to_text(src: str) -> tuple[str, str | None]:
    """(visible text, <title>) of an HTML document."""
    parts: list[str] = []
    title: str | None = None
    for kind, value in _html_tokens(src):
        if kind == "text":
            parts.append(html.unescape(value))
        elif kind == "title":
            title = title or _squash(html.unescape(value))
        elif value in _BLOCK_TAGS:
            parts.append("\n")
        elif value in _CELL_TAGS:
            parts.append(" ")
    return _tidy_lines("".join(parts)), title


def _tidy_lines(text: str) -> str:
    lines = (_HSPACE.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def _squash(text: str) -> str:
    return " ".join(text.split())


def _parse_html(data: bytes, partial: bool) -> _Parsed:
    declared = _META_CHARSET.search(data, 0, 4096)
    charset = declared.group(1).decode("ascii") if declared else None
    text, encoding = decode_text(data, partial=partial, declared=charset)
    body, title = html_to_text(text)
    return _Parsed(body, "html", title, {"encoding": encoding})


class _BoundedHeaderPolicy(EmailPolicy):
    """policy.default, but header values are cut before structured parsing.

    The header parser in Python 3.11 is quadratic on crafted values (measured: a 16 KB To: of
    repeated '"a' takes 1.4 s), and every header we touch goes through this method.
    """

    max_header_chars = 1000

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if isinstance(value, str) and len(value) > self.max_header_chars:
            value = value[:self.max_header_chars]
        return super().header_fetch_parse(name, value)


_EMAIL_POLICY = _BoundedHeaderPolicy()


def _parse_email(data: bytes, partial: bool) -> _Parsed:
    try:
        return _parse_message(email.message_from_bytes(data, policy=_EMAIL_POLICY))
    except Exception as exc:
        # Malformed mail must still be archived and searchable: fall back to its raw text.
        fallback = _parse_plain(data, partial)
        metadata = {**fallback.metadata, "email_error": type(exc).__name__}
        return _Parsed(fallback.text, "email", metadata=metadata)


def _parse_message(msg: Message) -> _Parsed:
    metadata: dict[str, Any] = {}
    for name in ("from", "to", "cc", "date", "subject"):
        value = _header(msg, name)
        if value:
            metadata[name] = value
    attachments = _attachment_names(msg)
    if attachments:
        metadata["attachments"] = attachments
    body = msg.get_body(preferencelist=("plain", "html")) if isinstance(msg, EmailMessage) else None
    text = _part_text(body) if body is not None else ""
    return _Parsed(text, "email", metadata.get("subject"), metadata)


def _header(msg: Message, name: str) -> str | None:
    try:
        value = msg.get(name)
        return _squash(str(value)) if value is not None else None
    except Exception:  # a header that cannot be parsed is just left out
        return None


def _attachment_names(msg: Message) -> list[str]:
    if not isinstance(msg, EmailMessage):
        return []
    try:
        parts = islice(msg.iter_attachments(), _MAX_ATTACHMENT_NAMES)
        return [str(name) for part in parts if (name := part.get_filename())]
    except Exception:
        return []


def _part_text(part: Message) -> str:
    try:
        content = part.get_content()
    except Exception:  # unknown charset, broken transfer encoding
        raw = part.get_payload(decode=True)
        content = decode_text(raw)[0] if isinstance(raw, bytes) else ""
    if not isinstance(content, str):
        return ""
    if part.get_content_type() == "text/html":
        return html_to_text(content)[0]
    return content


_Parser = Callable[[bytes, bool], _Parsed]
_PARSERS: dict[str, _Parser] = {
    PLAIN: _parse_plain,
    MARKDOWN: _parse_markdown,
    CSV: _parse_csv,
    TSV: functools.partial(_parse_csv, delimiter="\t"),
    JSON: _parse_json,
    HTML: _parse_html,
    EML: _parse_email,
}


# --- cleaning ------------------------------------------------------------------------------------

def _clean(text: str) -> str:
    return clean_text(text.replace("\r\n", "\n"))


def _clean_title(title: str | None) -> str | None:
    if title is None:
        return None
    return _squash(_clean(title))[:_MAX_META_CHARS] or None


def _clean_meta(value: Any) -> Any:
    if isinstance(value, str):
        return _clean(value)[:_MAX_META_CHARS]
    if isinstance(value, list):
        return [_clean_meta(item) for item in value]
    if isinstance(value, dict):
        return {key: _clean_meta(item) for key, item in value.items()}
    return value


def _finish(parsed: _Parsed, mime: str, limits: ExtractLimits, *, truncated: bool,
            status: str = "extracted") -> Extraction:
    text = _clean(parsed.text)
    if len(text) > limits.max_text_chars:
        text, truncated = text[:limits.max_text_chars], True
    return Extraction(
        text=text,
        mime_type=mime,
        status=status,
        extractor=f"{parsed.extractor}/{EXTRACTOR_VERSIONS[parsed.extractor]}",
        title=_clean_title(parsed.title),
        truncated=truncated,
        metadata=_clean_meta(parsed.metadata),
    )


# --- PDF in a child process ----------------------------------------------------------------------

_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding alfrd_daemon/
_WORKER_NO_MEMORY = 3  # pdf_worker.EXIT_NO_MEMORY; not imported, that would load pypdf here
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
        if code == _WORKER_NO_MEMORY:
            raise PermanentExtractionError(
                f"PDF extraction exceeded the memory limit of {limits.memory_limit_mb} MB")
        if isinstance(reply.get("error"), str):
            raise PermanentExtractionError(reply["error"])
        if code == 0 and isinstance(reply.get("text"), str) and isinstance(reply.get("pages"), int):
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


def _extract_pdf(path: Path, head: bytes, limits: ExtractLimits) -> Extraction:
    if b"%PDF-" not in head[:1024]:
        raise PermanentExtractionError("not a PDF: no %PDF- header")  # spare a process spawn
    reply = _run_pdf_worker(path, limits)
    metadata: dict[str, Any] = {"pages": reply["pages"]}
    if reply.get("page_errors"):
        metadata["page_errors"] = reply["page_errors"]
    title = reply.get("title") if isinstance(reply.get("title"), str) else None
    parsed = _Parsed(reply["text"], "pdf", title, metadata)
    # No text layer (a scan): leave it pending so that OCR picks it up.
    status = "extracted" if reply["text"].strip() else "pending"
    return _finish(parsed, PDF, limits, truncated=reply.get("truncated") is True, status=status)


# --- entry point ---------------------------------------------------------------------------------

def _read_rest(fh: io.BufferedReader, head: bytes, cap: int) -> tuple[bytes, bool]:
    rest = fh.read(max(0, cap - len(head)) + 1)
    data = head + rest
    return data[:cap], len(data) > cap


def extract(path: Path, limits: ExtractLimits, *, name: str | None = None) -> Extraction:
    """Extract the text of the file at `path`; `name` (default: path's name) decides its type.

    Raises PermanentExtractionError when the content is unusable; OSError when it is unreadable.
    """
    path = Path(path)
    with path.open("rb") as fh:
        head = fh.read(HEAD_BYTES)
        mime = detect_mime(name if name is not None else path.name, head)
        parser = _PARSERS.get(mime)
        if parser is not None:
            # Up to 4 bytes per character covers any encoding that reaches the char limit.
            data, partial = _read_rest(fh, head, limits.max_text_chars * 4)
            return _finish(parser(data, partial), mime, limits, truncated=partial)
    if mime == PDF:
        return _extract_pdf(path, head, limits)
    return Extraction(text="", mime_type=mime, status="pending",
                      extractor=f"none/{EXTRACTOR_VERSIONS['none']}")
