"""OCR of an ALFRD document folder: one document whose pages are files of their own (phone
photos of a receipt, a scan beside a text note). Ingest stored every page and kept the text of
those it could read; the folder waits as pending when a page is an image or a scan. Here the
pages are read again in their order: images and PDFs through `ocr_document` (a PDF's text-layer
pages keep their text), the others through the extractor that read them at ingest, so the
folder's text is every page's text in page order, as ingest would have made it with OCR."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from alfrd_daemon.extract.api import ExtractLimits, PermanentExtractionError
from alfrd_daemon.extract.dispatch import extract
from alfrd_daemon.extract.pool import ExtractorPool
from alfrd_daemon.ocr.reader import (
    OcrLimits,
    OcrOutcome,
    engine_version,
    ocr_document,
    ocr_mime_types,
)

_PAGE_SEPARATOR = "\n\n"


def stored_file(store_root: Path, stored_path: object) -> Path | None:
    """The store file a row names, or None when the name could point outside the store."""
    if not isinstance(stored_path, str) or not stored_path or stored_path.startswith("/") \
            or ".." in Path(stored_path).parts:
        return None
    return store_root / stored_path


def ocr_folder(pool: ExtractorPool, store_root: Path, pages: Sequence[dict[str, Any]],
               languages: Sequence[str], limits: OcrLimits, extract_limits: ExtractLimits, *,
               detect_orientation: bool = True,
               on_page: Callable[[int, int], None] | None = None) -> OcrOutcome:
    """The folder's text, page by page. `on_page(done, total)` after each page file.

    Raises what `ocr_document` raises; a page whose stored file is missing or whose name is not
    a store path is PermanentExtractionError naming the page."""
    texts: list[str] = []
    total_pages = ocr_pages = 0
    confidences: list[tuple[float, int]] = []
    rotated: list[int] = []
    truncated = False
    for done, page in enumerate(pages, start=1):
        name = str(page.get("file") or f"page {done}")
        path = stored_file(store_root, page.get("stored_path"))
        if path is None or not path.is_file():
            raise PermanentExtractionError(f"folder page {name}: the stored file is missing "
                                           f"({page.get('stored_path')!r})")
        mime = str(page.get("mime_type") or "")
        if mime in ocr_mime_types():
            outcome = ocr_document(pool, path, mime, languages, limits,
                                   detect_orientation=detect_orientation)
            texts.append(outcome.text)
            rotated.extend(total_pages + index for index in outcome.rotated_pages)
            total_pages += outcome.pages
            ocr_pages += outcome.ocr_pages
            truncated = truncated or outcome.truncated
            if outcome.mean_confidence is not None and outcome.ocr_pages:
                confidences.append((outcome.mean_confidence, outcome.ocr_pages))
        elif page.get("status") == "extracted":
            texts.append(extract(path, extract_limits, name=name, pool=pool).text)
            total_pages += 1
        else:
            total_pages += 1  # a type nothing reads: it adds no text, as at ingest
        if on_page is not None:
            on_page(done, len(pages))
    text = _PAGE_SEPARATOR.join(t.strip("\n") for t in texts if t.strip())
    truncated = truncated or len(text) > limits.max_text_chars
    weight = sum(n for _, n in confidences)
    return OcrOutcome(
        text=text[:limits.max_text_chars], pages=total_pages, ocr_pages=ocr_pages,
        mean_confidence=sum(c * n for c, n in confidences) / weight if weight else None,
        rotated_pages=rotated, truncated=truncated, engine=engine_version(),
        languages=list(languages))
