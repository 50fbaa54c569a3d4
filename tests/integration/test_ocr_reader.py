"""OCR end to end with real Tesseract in real extractor children: every image format, page
order, orientation, two languages at once, mixed PDFs, and hostile input that must end as a
clear reason while the pool keeps serving."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from alfrd_daemon.extract.api import PermanentExtractionError
from alfrd_daemon.extract.pool import ExtractorPool
from alfrd_daemon.ocr.reader import (
    OcrLimits,
    OcrOutcome,
    OcrUnavailable,
    ocr_document,
    start_ocr_pool,
)
from tests.ocr_samples import (
    huge_png,
    image_bytes,
    image_pdf,
    make_text_image,
    mixed_pdf,
    multipage_tiff,
    slow_render_pdf,
)
from tests.samples import make_pdf

LANGUAGES = ["eng", "deu"]
LIMITS = OcrLimits(timeout_seconds=30, memory_limit_mb=1024)
WORDS = "Invoice quokka 4711 kilowatt hours total"


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


@pytest.fixture(scope="module")
def pool() -> Iterator[ExtractorPool]:
    """One OCR child for the module: it loads Tesseract's models once, as in the daemon."""
    before = _children(os.getpid())
    started = start_ocr_pool(1, LIMITS)
    try:
        yield started
    finally:
        started.close()
        left = _children(os.getpid()) - before
        for pid in left:  # only our own children, by pid
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        assert not left, f"processes left behind: {sorted(left)}"


def read(pool: ExtractorPool, path: Path, mime: str, limits: OcrLimits = LIMITS,
         **kwargs: object) -> OcrOutcome:
    return ocr_document(pool, path, mime, LANGUAGES, limits, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("fmt", "mime"), [
    ("png", "image/png"), ("jpeg", "image/jpeg"), ("tiff", "image/tiff"), ("webp", "image/webp"),
    ("bmp", "image/bmp"), ("gif", "image/gif"), ("heic", "image/heic"),
])
def test_each_image_format_gives_its_words(pool: ExtractorPool, tmp_path: Path, fmt: str,
                                           mime: str) -> None:
    path = tmp_path / f"scan.{fmt}"
    path.write_bytes(image_bytes(make_text_image(WORDS), fmt))
    outcome = read(pool, path, mime)
    assert outcome.text.split() == WORDS.split()
    assert (outcome.pages, outcome.ocr_pages, outcome.rotated_pages) == (1, 1, [])
    assert outcome.mean_confidence is not None and outcome.mean_confidence > 80
    assert outcome.engine.startswith("tesseract 5")
    assert outcome.languages == LANGUAGES and not outcome.truncated


def _alpha_text(image: Image.Image) -> Image.Image:
    """Black text on a fully transparent background (transparent is black in RGB)."""
    rgba = Image.new("RGBA", image.size, (0, 0, 0, 0))
    rgba.putalpha(Image.eval(image, lambda value: 255 - value))
    return rgba


@pytest.mark.parametrize(("name", "convert", "save"), [
    ("fax.tiff", lambda im: im.convert("1"), {"format": "TIFF", "compression": "group4"}),
    ("print.jpg", lambda im: im.convert("CMYK"), {"format": "JPEG"}),
    ("sixteen.png", lambda im: Image.frombytes(
        "I;16", im.size, bytes(b for v in im.tobytes() for b in (0, v))), {"format": "PNG"}),
    ("logo.png", _alpha_text, {"format": "PNG"}),
])
def test_pixel_formats_scanners_and_phones_write(pool: ExtractorPool, tmp_path: Path, name: str,
                                                 convert: Callable[[Image.Image], Image.Image],
                                                 save: dict[str, Any]) -> None:
    path = tmp_path / name
    convert(make_text_image(WORDS)).save(path, **save)
    mime = "image/tiff" if name.endswith(".tiff") else (
        "image/jpeg" if name.endswith(".jpg") else "image/png")
    assert read(pool, path, mime).text.split() == WORDS.split()


def test_multipage_tiff_in_page_order_with_progress(pool: ExtractorPool, tmp_path: Path) -> None:
    words = ["first zebra", "second giraffe", "third pelican"]
    path = tmp_path / "fax.tiff"
    path.write_bytes(multipage_tiff([make_text_image(w) for w in words]))
    progress: list[tuple[int, int]] = []
    outcome = read(pool, path, "image/tiff", on_page=lambda done, total:
                   progress.append((done, total)))
    assert outcome.text.split("\n\n") == words
    assert (outcome.pages, outcome.ocr_pages) == (3, 3)
    assert progress == [(1, 3), (2, 3), (3, 3)]


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_a_turned_page_is_set_upright(pool: ExtractorPool, tmp_path: Path, degrees: int) -> None:
    path = tmp_path / f"turned{degrees}.png"
    path.write_bytes(image_bytes(make_text_image(WORDS, rotate=degrees), "png"))
    outcome = read(pool, path, "image/png")
    assert outcome.text.split() == WORDS.split()
    assert outcome.rotated_pages == [0]


def test_orientation_detection_can_be_turned_off(pool: ExtractorPool, tmp_path: Path) -> None:
    path = tmp_path / "upside_down.png"
    path.write_bytes(image_bytes(make_text_image(WORDS, rotate=180), "png"))
    outcome = read(pool, path, "image/png", detect_orientation=False)
    assert outcome.rotated_pages == []
    assert "quokka" not in outcome.text


def test_a_phone_photo_is_turned_as_its_exif_says(pool: ExtractorPool, tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 3  # Orientation: stored upside down, show turned by 180 degrees
    path = tmp_path / "IMG_0001.jpg"
    make_text_image(WORDS, rotate=180).save(path, format="JPEG", exif=exif.tobytes())
    outcome = read(pool, path, "image/jpeg", detect_orientation=False)
    assert outcome.text.split() == WORDS.split()


def test_english_and_german_together(pool: ExtractorPool, tmp_path: Path) -> None:
    words = "Rechnung Straße Größe Bärenhöhle invoice total über"
    path = tmp_path / "rechnung.png"
    path.write_bytes(image_bytes(make_text_image(words), "png"))
    assert read(pool, path, "image/png").text.split() == words.split()


def test_the_first_language_wins_where_both_could_read_a_word(pool: ExtractorPool,
                                                              tmp_path: Path) -> None:
    # "für Müller" also reads as English "fur Muller": put the documents' main language first.
    path = tmp_path / "brief.png"
    path.write_bytes(image_bytes(make_text_image("Rechnung für Müller"), "png"))
    assert ocr_document(pool, path, "image/png", ["deu", "eng"], LIMITS).text == (
        "Rechnung für Müller")
    assert ocr_document(pool, path, "image/png", ["eng", "deu"], LIMITS).text == (
        "Rechnung fur Muller")


def test_mixed_pdf_keeps_the_text_page_and_reads_the_scan(pool: ExtractorPool,
                                                          tmp_path: Path) -> None:
    path = tmp_path / "mixed.pdf"
    path.write_bytes(mixed_pdf(["Typed page about pangolins and their burrows"],
                               make_text_image(WORDS)))
    outcome = read(pool, path, "application/pdf")
    typed, scanned = outcome.text.split("\n\n")
    assert typed == "Typed page about pangolins and their burrows"
    assert scanned.split() == WORDS.split()
    assert (outcome.pages, outcome.ocr_pages) == (2, 1)


def test_image_only_pdf_is_read_page_by_page(pool: ExtractorPool, tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    path.write_bytes(image_pdf([make_text_image("first zebra"), make_text_image("second lemur")]))
    outcome = read(pool, path, "application/pdf")
    assert outcome.text.split("\n\n") == ["first zebra", "second lemur"]
    assert (outcome.pages, outcome.ocr_pages) == (2, 2)


def test_a_pdf_with_text_on_every_page_needs_no_ocr(pool: ExtractorPool, tmp_path: Path) -> None:
    path = tmp_path / "typed.pdf"
    path.write_bytes(make_pdf(["A typed page with plenty of characters",
                               "Another such page, long enough"]))
    outcome = read(pool, path, "application/pdf")
    assert (outcome.pages, outcome.ocr_pages, outcome.mean_confidence) == (2, 0, None)
    assert outcome.text == ("A typed page with plenty of characters\n\n"
                            "Another such page, long enough")


def test_a_pdf_page_with_only_a_few_characters_is_read_by_ocr(pool: ExtractorPool,
                                                              tmp_path: Path) -> None:
    path = tmp_path / "short.pdf"
    path.write_bytes(make_pdf(["A typed page with plenty of characters", "Page 2 of 2"]))
    outcome = read(pool, path, "application/pdf")
    assert (outcome.pages, outcome.ocr_pages) == (2, 1)
    assert outcome.text.startswith("A typed page with plenty of characters\n\n")


def test_long_text_is_cut_at_the_limit(pool: ExtractorPool, tmp_path: Path) -> None:
    path = tmp_path / "long.png"
    path.write_bytes(image_bytes(make_text_image(WORDS), "png"))
    limits = OcrLimits(timeout_seconds=30, memory_limit_mb=1024, max_text_chars=12)
    outcome = read(pool, path, "image/png", limits)
    assert outcome.truncated and outcome.text == "Invoice quok"


def test_pages_past_the_text_limit_are_not_read(pool: ExtractorPool, tmp_path: Path) -> None:
    path = tmp_path / "fax.tiff"
    path.write_bytes(multipage_tiff([make_text_image(w) for w in
                                     ("first zebra", "second giraffe", "third pelican")]))
    limits = OcrLimits(timeout_seconds=30, memory_limit_mb=1024, max_text_chars=8)
    outcome = read(pool, path, "image/tiff", limits)
    assert (outcome.text, outcome.truncated, outcome.pages, outcome.ocr_pages) == (
        "first ze", True, 3, 1)


# --- hostile input -------------------------------------------------------------------------------

def test_a_50000_megapixel_png_is_refused_from_its_header(pool: ExtractorPool,
                                                          tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(huge_png(223_607, 223_607))  # 50,000 megapixels in 200 bytes
    with pytest.raises(PermanentExtractionError) as caught:
        read(pool, path, "image/png")
    assert caught.value.reason == ("image of 50,000 megapixels is over the limit of 150 "
                                   "(ocr.max_megapixels)")
    assert pool.replaced == 0  # refused, not survived: the child never decoded it


def test_a_pdf_page_over_the_pixel_cap_is_refused_before_rendering(pool: ExtractorPool,
                                                                    tmp_path: Path) -> None:
    path = tmp_path / "poster.pdf"
    path.write_bytes(image_pdf([make_text_image("poster")], resolution=0.5))  # 2000 x 320 in
    with pytest.raises(PermanentExtractionError) as caught:
        read(pool, path, "application/pdf")
    assert caught.value.reason.startswith("page 1 of 1: image of ")
    assert "megapixels at 300 dpi is over the limit of 150 (ocr.max_megapixels)" in (
        caught.value.reason)


def test_truncated_jpeg_fails_with_a_reason(pool: ExtractorPool, tmp_path: Path) -> None:
    data = image_bytes(make_text_image(WORDS), "jpeg")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(PermanentExtractionError) as caught:
        read(pool, path, "image/jpeg")
    assert caught.value.reason.startswith("page 1 of 1: corrupt image: image file is truncated")


def test_garbage_image_and_garbage_pdf(pool: ExtractorPool, tmp_path: Path) -> None:
    path = tmp_path / "noise.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    with pytest.raises(PermanentExtractionError, match=r"^unreadable image: "):
        read(pool, path, "image/png")
    path = tmp_path / "really.png"  # a format OCR does not decode, whatever the name says
    make_text_image(WORDS).save(path, format="PCX")
    with pytest.raises(PermanentExtractionError, match=r"^unreadable image: cannot identify"):
        read(pool, path, "image/png")
    path = tmp_path / "noise.pdf"
    path.write_bytes(b"%PDF-1.4\n" + os.urandom(300))
    with pytest.raises(PermanentExtractionError, match=r"^corrupt PDF: "):
        read(pool, path, "application/pdf")


def test_too_many_pages(pool: ExtractorPool, tmp_path: Path) -> None:
    path = tmp_path / "many.tiff"
    path.write_bytes(multipage_tiff([make_text_image(str(i)) for i in range(4)]))
    limits = OcrLimits(timeout_seconds=30, memory_limit_mb=1024, max_pdf_pages=3)
    with pytest.raises(PermanentExtractionError) as caught:
        read(pool, path, "image/tiff", limits)
    assert caught.value.reason == "image has 4 pages, more than the limit of 3"


def test_a_slow_page_times_out_and_the_pool_keeps_serving(pool: ExtractorPool,
                                                          tmp_path: Path) -> None:
    slow = tmp_path / "slow.pdf"
    slow.write_bytes(slow_render_pdf())
    limits = OcrLimits(timeout_seconds=1.5, memory_limit_mb=1024)
    replaced = pool.replaced
    with pytest.raises(PermanentExtractionError) as caught:
        read(pool, slow, "application/pdf", limits)
    assert caught.value.reason == "page 1 of 1: OCR extraction timed out after 1.5 s"
    assert pool.replaced == replaced + 1
    good = tmp_path / "after.png"
    good.write_bytes(image_bytes(make_text_image(WORDS), "png"))
    assert read(pool, good, "image/png").text.split() == WORDS.split()


def test_a_page_over_the_memory_limit_names_the_page(pool: ExtractorPool,
                                                     tmp_path: Path) -> None:
    path = tmp_path / "letter.pdf"
    path.write_bytes(make_pdf(["x"]))  # no text to speak of: rendered, at 1200 dpi 135 MP
    limits = OcrLimits(timeout_seconds=30, memory_limit_mb=250, dpi=1200)
    with pytest.raises(PermanentExtractionError) as caught:
        read(pool, path, "application/pdf", limits)
    assert caught.value.reason == ("page 1 of 1: OCR extraction exceeded the memory limit of "
                                   "250 MB")
    good = tmp_path / "after.png"
    good.write_bytes(image_bytes(make_text_image(WORDS), "png"))
    assert read(pool, good, "image/png").text.split() == WORDS.split()


def test_a_missing_language_is_unavailable_naming_the_package(pool: ExtractorPool,
                                                              tmp_path: Path) -> None:
    path = tmp_path / "scan.png"
    path.write_bytes(image_bytes(make_text_image(WORDS), "png"))
    with pytest.raises(OcrUnavailable) as caught:
        ocr_document(pool, path, "image/png", ["eng", "fra"], LIMITS)
    assert "'fra'" in str(caught.value)
    assert "pip install tessdata.fast-fra" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_damaged_model_is_unavailable_not_a_bad_document(pool: ExtractorPool, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    models = tmp_path / "tessdata"
    models.mkdir()
    (models / "eng.traineddata").write_bytes(b"half a download" * 100)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "empty-env"))
    monkeypatch.setenv("TESSDATA_PREFIX", str(models))
    path = tmp_path / "scan.png"
    path.write_bytes(image_bytes(make_text_image(WORDS), "png"))
    replaced = pool.replaced
    with pytest.raises(OcrUnavailable) as caught:
        ocr_document(pool, path, "image/png", ["eng"], LIMITS)
    assert str(caught.value).startswith(f"Tesseract cannot load eng from {models}")
    assert pool.replaced == replaced  # the child is fine; only the models are not
