"""The text of an image or a scanned PDF, read by Tesseract in sandboxed extractor children.

The daemon never decodes a pixel: one ``ocr_probe`` request counts the pages (and finds a PDF's
pages that already carry text), then one ``ocr_page`` request per page that needs OCR, each
under the page limits (`OcrLimits`): a page that hangs, balloons or breaks the pixel cap costs
its child, never the daemon. Pages are served one after another so that `on_page` can report
progress (the queue renews its lease there) and a long document never holds more than one child.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alfrd_daemon.extract.api import PermanentExtractionError
from alfrd_daemon.extract.ocr_pages import ENGINE_UNAVAILABLE
from alfrd_daemon.extract.pool import ExtractorPool
from alfrd_daemon.pgsafe import clean_text

_PAGE_SEPARATOR = "\n\n"
_LANGUAGE = re.compile(r"^[A-Za-z0-9_]+$")
# Debian's tesseract-ocr-LANG packages, for Tesseract 5 and 4.
_SYSTEM_TESSDATA = (Path("/usr/share/tesseract-ocr/5/tessdata"),
                    Path("/usr/share/tesseract-ocr/4.00/tessdata"))
_MIME_TYPES = frozenset({
    "image/png", "image/jpeg", "image/tiff", "image/webp", "image/bmp", "image/gif",
    "image/heic", "image/heif", "application/pdf",
})


@dataclass(frozen=True)
class OcrLimits:
    """Per page, except for the page and text counts; also an `extract.pool.Limits`."""

    timeout_seconds: float = 120.0  # wall time per page (render + orientation + OCR)
    memory_limit_mb: int = 1536  # RLIMIT_AS of an OCR child
    max_pdf_pages: int = 500  # pages per document; more -> PermanentExtractionError
    max_text_chars: int = 5_000_000  # text of one document is cut here (truncated=True)
    max_megapixels: float = 150.0  # per page image; more -> PermanentExtractionError
    dpi: int = 300  # PDF pages are rendered at this resolution
    pdf_min_page_chars: int = 20  # a PDF page with fewer text-layer characters is OCR'd

    def __post_init__(self) -> None:
        if not (self.timeout_seconds > 0 and self.memory_limit_mb > 0 and self.max_pdf_pages > 0
                and self.max_text_chars > 0 and self.max_megapixels > 0
                and 10 <= self.dpi <= 1200 and self.pdf_min_page_chars >= 0):
            raise ValueError(f"OCR limits must be positive (dpi 10-1200): {self}")


class OcrUnavailable(RuntimeError):
    """The engine or the language data is missing: documents wait (pending), never fail.
    str(exc) is one line naming what to install."""


@dataclass(frozen=True)
class OcrOutcome:
    text: str  # pages joined by "\n\n" in page order (text-layer pages kept)
    pages: int  # pages in the document
    ocr_pages: int  # pages that went through Tesseract
    mean_confidence: float | None
    rotated_pages: list[int] = field(default_factory=list)  # 0-based, turned upright
    truncated: bool = False
    engine: str = ""  # "tesseract 5.5.4"
    languages: list[str] = field(default_factory=list)


def ocr_mime_types() -> frozenset[str]:
    return _MIME_TYPES


def tessdata_dir() -> Path:
    """Where the language models are: the daemon's own environment first (the tessdata.fast-*
    packages install into <prefix>/share/tessdata), then $TESSDATA_PREFIX, then Debian's."""
    own = Path(sys.prefix) / "share" / "tessdata"
    if _has_models(own):
        return own
    configured = os.environ.get("TESSDATA_PREFIX")
    if configured:
        return Path(configured)
    for candidate in _SYSTEM_TESSDATA:
        if _has_models(candidate):
            return candidate
    return own  # nothing anywhere: name the place a pip install would fill


def _has_models(folder: Path) -> bool:
    try:
        return any(folder.glob("*.traineddata"))
    except OSError:
        return False


def install_hint(language: str) -> str:
    package = language.replace("_", "-").lower()
    return (f"pip install tessdata.fast-{language} into the daemon's environment "
            f"({sys.prefix}), or apt install tesseract-ocr-{package} and set "
            f"TESSDATA_PREFIX=/usr/share/tesseract-ocr/5/tessdata")


def check_languages(languages: Sequence[str]) -> None:
    """Raise OcrUnavailable unless every language's model is in `tessdata_dir()`."""
    if not languages:
        raise OcrUnavailable("no OCR language configured (ocr.languages)")
    folder = tessdata_dir()
    for language in languages:
        if not _LANGUAGE.match(language):
            raise OcrUnavailable(f"OCR language {language!r} is not a Tesseract language code "
                                 f"such as eng or deu")
        if not (folder / f"{language}.traineddata").is_file():
            raise OcrUnavailable(f"Tesseract language data for {language!r} is missing in "
                                 f"{folder}: {install_hint(language)}")


@functools.cache
def _version() -> str:
    try:
        import tesserocr  # type: ignore[import-untyped]
    except ImportError as exc:
        raise OcrUnavailable(f"the OCR engine is not installed ({exc}): pip install tesserocr "
                             f"into the daemon's environment ({sys.prefix})") from exc
    first = str(tesserocr.tesseract_version()).strip().splitlines()
    return first[0].strip() if first else "tesseract"


def engine_version() -> str:
    """E.g. "tesseract 5.5.4"; raises OcrUnavailable when tesserocr cannot be imported."""
    return _version()


def start_ocr_pool(size: int, limits: OcrLimits) -> ExtractorPool:
    """`size` extractor children under the OCR memory limit, started (they load Tesseract on
    their first page, not before)."""
    pool = ExtractorPool(size, memory_limit_mb=limits.memory_limit_mb)
    pool.start()
    return pool


def ocr_document(pool: ExtractorPool, path: Path, mime: str, languages: Sequence[str],
                 limits: OcrLimits, *, detect_orientation: bool = True,
                 on_page: Callable[[int, int], None] | None = None) -> OcrOutcome:
    """The document's text: text-layer pages as they are, the others read by Tesseract.
    `on_page(done, total)` follows each page read; pages whose text would fall past
    `max_text_chars` are not read at all (truncated=True).

    Raises PermanentExtractionError (corrupt, bomb, too many pages, a page over its time or
    memory limit: the reason names the page), ExtractorUnavailable (pool closed or busy:
    transient) and OcrUnavailable (engine or languages missing).
    """
    if mime not in _MIME_TYPES:
        raise PermanentExtractionError(f"OCR does not read {mime}")
    engine = engine_version()
    check_languages(languages)
    language_list = list(languages)
    probe = pool.run("ocr_probe", path, limits, {
        "mime": mime, "max_megapixels": limits.max_megapixels,
        "min_page_chars": limits.pdf_min_page_chars,
    })
    page_text = _page_texts(probe)
    todo = [index for index, text in enumerate(page_text) if text is None]
    options: dict[str, Any] = {
        "mime": mime, "languages": "+".join(language_list), "dpi": limits.dpi,
        "max_megapixels": limits.max_megapixels, "detect_orientation": detect_orientation,
        "tessdata": str(tessdata_dir()),
    }
    confidences: list[float] = []
    rotated: list[int] = []
    truncated = probe.get("truncated") is True
    read_pages = 0
    for done, index in enumerate(todo, start=1):
        if _chars_before(page_text, index) >= limits.max_text_chars:
            # The text is cut in page order: nothing from this page on would be kept.
            truncated = True
            break
        result = _read_page(pool, path, limits, options, index, len(page_text))
        read_pages += 1
        page_text[index] = result["text"]
        if isinstance(result.get("confidence"), int | float):
            confidences.append(float(result["confidence"]))
        truncated = truncated or result.get("truncated") is True
        if result.get("rotated"):
            rotated.append(index)
        if on_page is not None:
            on_page(done, len(todo))
    text = clean_text(_PAGE_SEPARATOR.join(t.strip("\n") for t in page_text if t and t.strip()))
    truncated = truncated or len(text) > limits.max_text_chars
    return OcrOutcome(
        text=text[:limits.max_text_chars], pages=len(page_text), ocr_pages=read_pages,
        mean_confidence=sum(confidences) / len(confidences) if confidences else None,
        rotated_pages=rotated, truncated=truncated, engine=engine, languages=language_list)


def _chars_before(page_text: list[str | None], index: int) -> int:
    return sum(len(text) + len(_PAGE_SEPARATOR) for text in page_text[:index] if text)


def _page_texts(probe: dict[str, Any]) -> list[str | None]:
    pages, page_text = probe.get("pages"), probe.get("page_text")
    if (not isinstance(pages, int) or not isinstance(page_text, list) or len(page_text) != pages
            or not all(text is None or isinstance(text, str) for text in page_text)):
        raise PermanentExtractionError("OCR worker sent a malformed page list")
    return list(page_text)


def _read_page(pool: ExtractorPool, path: Path, limits: OcrLimits, options: dict[str, Any],
               index: int, pages: int) -> dict[str, Any]:
    try:
        result = pool.run("ocr_page", path, limits, {**options, "page": index})
    except PermanentExtractionError as exc:
        if exc.reason.startswith(ENGINE_UNAVAILABLE):
            raise OcrUnavailable(f"{exc.reason.removeprefix(ENGINE_UNAVAILABLE)}: reinstall "
                                 f"the language data") from exc
        raise PermanentExtractionError(f"page {index + 1} of {pages}: {exc.reason}") from exc
    if not isinstance(result.get("text"), str):
        raise PermanentExtractionError(f"OCR worker sent a malformed result for page {index + 1}")
    return result
