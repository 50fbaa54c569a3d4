"""`extract()`: a file's text, chosen by its type, with hard limits so that no input can hang
or balloon the daemon.

Text-like formats (`text`, `mail`) are parsed in-process from a bounded read; PDFs (`pdf`) and
office files (`officedoc`) in a child process. Images and unknown binaries are not read at all:
they come back "pending", for downstream OCR workers. Every parser's result is cleaned for
PostgreSQL and truncated here, in one place.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alfrd_daemon.extract.api import (
    EXTRACTOR_VERSIONS,
    Extraction,
    ExtractLimits,
    Parsed,
)
from alfrd_daemon.extract.mail import parse_email
from alfrd_daemon.extract.officedoc import OFFICE_MIMES, parse_office
from alfrd_daemon.extract.pdf import parse_pdf
from alfrd_daemon.extract.pool import ExtractorPool
from alfrd_daemon.extract.sniff import (
    CSV,
    EML,
    HEAD_BYTES,
    HTML,
    JSON,
    MARKDOWN,
    PDF,
    PLAIN,
    TSV,
    detect_mime,
)
from alfrd_daemon.extract.text import (
    parse_csv,
    parse_html,
    parse_json,
    parse_markdown,
    parse_plain,
    parse_tsv,
    squash,
)
from alfrd_daemon.pgsafe import clean_text

_MAX_META_CHARS = 1000

_PARSERS: dict[str, Callable[[bytes, bool], Parsed]] = {
    PLAIN: parse_plain,
    MARKDOWN: parse_markdown,
    CSV: parse_csv,
    TSV: parse_tsv,
    JSON: parse_json,
    HTML: parse_html,
    EML: parse_email,
}
# Every type extract() reads; the rest come back "pending" with the "none" extractor.
READ_TYPES = frozenset(_PARSERS) | {PDF} | OFFICE_MIMES


def extract(path: Path, limits: ExtractLimits, *, name: str | None = None,
            pool: ExtractorPool | None = None) -> Extraction:
    """Extract the text of the file at `path`; `name` (default: path's name) decides its type;
    `pool` serves the kinds that run in a child process (else one child each).

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
        parsed = parse_pdf(path, head, limits, pool)
        return _finish(parsed, PDF, limits, truncated=parsed.truncated)
    if mime in OFFICE_MIMES:
        parsed = parse_office(path, mime, head, limits, pool)
        return _finish(parsed, mime, limits, truncated=parsed.truncated)
    return Extraction(text="", mime_type=mime, status="pending",
                      extractor=f"none/{EXTRACTOR_VERSIONS['none']}")


def _read_rest(fh: io.BufferedReader, head: bytes, cap: int) -> tuple[bytes, bool]:
    rest = fh.read(max(0, cap - len(head)) + 1)
    data = head + rest
    return data[:cap], len(data) > cap


def _clean(text: str) -> str:
    return clean_text(text.replace("\r\n", "\n"))


def _clean_title(title: str | None) -> str | None:
    if title is None:
        return None
    return squash(_clean(title))[:_MAX_META_CHARS] or None


def _clean_meta(value: Any) -> Any:
    if isinstance(value, str):
        return _clean(value)[:_MAX_META_CHARS]
    if isinstance(value, list):
        return [_clean_meta(item) for item in value]
    if isinstance(value, dict):
        return {key: _clean_meta(item) for key, item in value.items()}
    return value


def _finish(parsed: Parsed, mime: str, limits: ExtractLimits, *, truncated: bool) -> Extraction:
    text = _clean(parsed.text)
    if len(text) > limits.max_text_chars:
        text, truncated = text[:limits.max_text_chars], True
    return Extraction(
        text=text,
        mime_type=mime,
        status="pending" if parsed.pending else "extracted",
        extractor=f"{parsed.extractor}/{EXTRACTOR_VERSIONS[parsed.extractor]}",
        title=_clean_title(parsed.title),
        truncated=truncated,
        metadata=_clean_meta(parsed.metadata),
    )
