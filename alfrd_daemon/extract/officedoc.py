"""Office files (OOXML, ODF, RTF, legacy Word/Excel/PowerPoint), read by the extractor child.

The readers (`office`) and the zip checks (`zipguard`) never run in the daemon: an office file
is a zip of XML that can be a bomb, so it gets the same killable child, memory limit and wall
time as a PDF. This module only routes the request and shapes the reply into a `Parsed`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alfrd_daemon.extract.api import ExtractLimits, Parsed, PermanentExtractionError
from alfrd_daemon.extract.pool import ExtractorPool

_OOXML = "application/vnd.openxmlformats-officedocument"
_ODF = "application/vnd.oasis.opendocument"
OFFICE_MIMES = frozenset({
    f"{_OOXML}.wordprocessingml.document",
    f"{_OOXML}.spreadsheetml.sheet",
    f"{_OOXML}.presentationml.presentation",
    f"{_ODF}.text", f"{_ODF}.spreadsheet", f"{_ODF}.presentation",
    "application/rtf",
    "application/msword", "application/vnd.ms-excel", "application/vnd.ms-powerpoint",
    "application/x-ole-storage",
})
_OLE = "application/x-ole-storage"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_ZIP_MIMES = frozenset(m for m in OFFICE_MIMES if m.startswith((_OOXML, _ODF)))
_EXTRACTORS = frozenset({"docx", "xlsx", "pptx", "odf", "rtf", "antiword", "xls2csv", "catppt",
                         "none"})


def parse_office(path: Path, mime: str, head: bytes, limits: ExtractLimits,
                 pool: ExtractorPool | None = None) -> Parsed:
    """The office file's text; raises PermanentExtractionError when the content is unusable.
    Without a pool (one-off commands), a pool of one child is started for this file alone."""
    if mime in _ZIP_MIMES and head.startswith(_OLE_MAGIC):
        # A password-protected OOXML file is an OLE container, and so is a renamed .doc.
        mime = _OLE
    elif mime in _ZIP_MIMES and not head.startswith(b"PK\x03\x04"):
        # A renamed PDF or random bytes: spare a child the attempt.
        raise PermanentExtractionError("not an office document: the file is not a zip container")
    options = {"mime": mime}
    if pool is not None:
        reply = pool.run("office", path, limits, options)
    else:
        with ExtractorPool(1, memory_limit_mb=limits.memory_limit_mb) as one_off:
            reply = one_off.run("office", path, limits, options)
    return _parsed(reply)


def _parsed(reply: dict[str, Any]) -> Parsed:
    extractor = reply.get("extractor")
    if extractor not in _EXTRACTORS:
        raise PermanentExtractionError("Office file worker sent a malformed result")
    metadata: dict[str, Any] = reply["metadata"] if isinstance(reply.get("metadata"), dict) else {}
    title = reply.get("title") if isinstance(reply.get("title"), str) else None
    pending = reply.get("pending") is True
    return Parsed(reply["text"], extractor, title, metadata,
                  truncated=reply.get("truncated") is True, pending=pending)
