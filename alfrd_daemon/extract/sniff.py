"""A file's MIME type: from its name's extension when that is a known one, else sniffed from
its first HEAD_BYTES bytes (magic numbers, HTML, or text versus binary)."""

from __future__ import annotations

import re
from pathlib import PurePath

from alfrd_daemon.extract.decode import BOMS

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
# An ALFRD document folder (meta.json and its pages) stored as one document.
FOLDER = "application/x-alfrd-folder"

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
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"})
_HEIF_BRANDS = frozenset({b"mif1", b"msf1"})  # HEIF of any codec; HEIC names HEVC in its brand
# The sizes a BMP's info header can have (BITMAPCOREHEADER .. BITMAPV5HEADER): "BM" alone is
# two letters that a text file may well start with.
_BMP_INFO_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_ZIP_MARKERS: tuple[tuple[bytes, str], ...] = (
    (b"word/", f"{_OOXML}.wordprocessingml.document"),
    (b"xl/", f"{_OOXML}.spreadsheetml.sheet"),
    (b"ppt/", f"{_OOXML}.presentationml.presentation"),
)
_HTML_START = re.compile(rb"\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])", re.I | re.S)

# Control bytes that do not occur in real text (tab, newlines, form feed, backspace, ESC do).
_CONTROL_BYTES = bytes(b for b in range(32) if b not in b"\t\n\x0b\x0c\r\x08\x1b") + b"\x7f"


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
    if head[4:8] == b"ftyp" and head[8:12] in _HEIC_BRANDS:
        return "image/heic"
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return "image/heif"
    if _is_bmp(head):
        return "image/bmp"
    if head.startswith(b"PK\x03\x04"):
        return _sniff_zip(head)
    if _HTML_START.match(head[:1024]):
        return HTML
    return None


def _is_bmp(head: bytes) -> bool:
    return (head.startswith(b"BM") and len(head) >= 18 and head[6:10] == b"\x00" * 4
            and int.from_bytes(head[14:18], "little") in _BMP_INFO_SIZES)


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
    if not head or head.startswith(tuple(bom for bom, _ in BOMS)):
        return True
    if b"\x00" in head:
        return False
    junk = len(head) - len(head.translate(None, _CONTROL_BYTES))
    return junk * 50 <= len(head)  # a few stray control bytes still read as text
