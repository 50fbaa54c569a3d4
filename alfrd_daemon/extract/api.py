"""What extraction promises its callers, and what every format's parser hands back.

The ingest pipeline sees only `extract()` (in `dispatch`) and the names here: the limits it
passes in, the `Extraction` it gets back, and `PermanentExtractionError` for content that can
never be read. The parsers (`text`, `mail`, `pdf`) return a `Parsed`, which `dispatch` cleans
and truncates into an `Extraction`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Recorded with each row as "name/version": bump a version when its extractor's output changes,
# so that a reindex knows which rows to extract again.
EXTRACTOR_VERSIONS: dict[str, str] = {
    "plain": "1",
    "markdown": "1",
    "csv": "1",
    "json": "1",
    "html": "1",
    "email": "1",
    "pdf": "1",
    "docx": "1",
    "xlsx": "1",
    "pptx": "1",
    "odf": "1",
    "rtf": "1",
    "antiword": "1",
    "xls2csv": "1",
    "catppt": "1",
    "ocr": "1",  # OCR of images and scanned PDF pages (alfrd_daemon.ocr)
    # Types we do not read; bump when one of them gains an extractor. 2: office files are read.
    "none": "2",
}


@dataclass(frozen=True)
class ExtractLimits:
    timeout_seconds: float = 30.0  # wall time for one extraction that can hang (PDF)
    max_text_chars: int = 5_000_000  # extracted text is truncated to this (and truncated=True)
    max_pdf_pages: int = 5000  # more pages -> PermanentExtractionError
    memory_limit_mb: int = 1024  # RLIMIT_AS for the PDF child process
    # A PDF page whose text layer has fewer non-space characters is a scan (or a scan with a
    # stamped page number): the document stays pending, searchable by the text it has, for OCR.
    pdf_min_page_chars: int = 20

    def __post_init__(self) -> None:
        if not (self.timeout_seconds > 0 and self.max_text_chars > 0
                and self.max_pdf_pages > 0 and self.memory_limit_mb > 0
                and self.pdf_min_page_chars >= 0):
            raise ValueError(f"extraction limits must be positive: {self}")


@dataclass(frozen=True)
class Extraction:
    text: str
    mime_type: str
    status: str  # "extracted", or "pending" for content left to downstream (OCR) workers
    extractor: str  # "name/version", see EXTRACTOR_VERSIONS
    title: str | None = None
    truncated: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)


class PermanentExtractionError(Exception):
    """The file's content is bad (corrupt/encrypted PDF, too many pages, timeout, memory blow-up).

    `reason` is one short human sentence.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Parsed:
    """What a format parser found, before cleaning and truncation."""

    text: str
    extractor: str  # a key of EXTRACTOR_VERSIONS
    title: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    truncated: bool = False  # the parser itself already cut the text (the PDF child does)
    pending: bool = False  # nothing readable yet: left to downstream workers (a scanned PDF)
