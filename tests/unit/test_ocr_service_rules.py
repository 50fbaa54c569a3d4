"""The OCR service's pure rules: how many workers, the limits from the settings, and which
stored paths may be opened."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from alfrd_daemon.config.settings import OcrSettings, Settings
from alfrd_daemon.ocr.service import EXTRACTOR, ocr_limits, ocr_pool_size, stored_file


def test_workers_default_to_the_cores_less_one_and_at_least_one() -> None:
    cores = len(os.sched_getaffinity(0))
    assert ocr_pool_size(0) == max(1, cores - 1)
    assert ocr_pool_size(3) == 3


def test_the_limits_follow_the_ocr_settings() -> None:
    settings = replace(Settings(), ocr=OcrSettings(page_timeout_seconds=7, memory_limit_mb=900,
                                                   max_pages=12, max_megapixels=3.5, dpi=200,
                                                   pdf_min_page_chars=5))
    limits = ocr_limits(settings)
    assert (limits.timeout_seconds, limits.memory_limit_mb, limits.max_pdf_pages,
            limits.max_megapixels, limits.dpi, limits.pdf_min_page_chars) == (
        7, 900, 12, 3.5, 200, 5)
    assert limits.max_text_chars == settings.extract.max_text_chars


def test_a_stored_path_never_leaves_the_store() -> None:
    root = Path("/srv/store")
    assert stored_file(root, "ab/abcdef") == root / "ab/abcdef"
    for bad in (None, "", "/etc/passwd", "../outside", "ab/../../x"):
        assert stored_file(root, bad) is None


def test_the_extractor_is_recorded_with_its_version() -> None:
    assert EXTRACTOR == "ocr/1"
