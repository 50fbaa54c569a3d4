"""OCR, one page at a time, inside a long-lived extractor child (`worker.py`).

Two request kinds, both answered from the file's own bytes, never from anything the parent
decoded:

- ``ocr_probe``: how many pages the image or PDF has, and for a PDF which pages already carry a
  text layer (``page_text[i]`` is that text, or None when the page needs OCR). Only headers are
  read: an image's pixel count is checked before a single pixel is decoded, so a decompression
  bomb costs a few KiB of reading.
- ``ocr_page``: page ``page`` decoded (an image frame, or a PDF page rendered in memory at
  ``dpi``), turned upright if Tesseract's orientation detection is sure enough, and read.

Tesseract's models take ~0.1 s of CPU to load; the APIs are kept per (tessdata, languages) for
the child's life, so each page pays only for its own recognition. The child is killed by the
parent when a page overruns its wall time, which also covers a PDF page that is slow to render.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from alfrd_daemon.pgsafe import clean_text

if TYPE_CHECKING:
    import pypdfium2  # type: ignore[import-untyped]
    from PIL import Image as PILImage
    from tesserocr import PyTessBaseAPI  # type: ignore[import-untyped]

PDF = "application/pdf"
# A reason that starts so is the installation's fault, not the document's: the parent turns it
# into OcrUnavailable (the document waits) instead of failing the document.
ENGINE_UNAVAILABLE = "OCR engine unavailable: "
_POINTS_PER_INCH = 72.0
# Orientation: OSD's orient_conf is a margin between the best and the runner-up orientation, not
# a probability. Measured on 80 random test images of 2-9 words (DejaVuSans, 40 px, turned by
# 0/90/180/270): 52 answers, all right, at 1.5-4.9; 28 had too little text for an answer. A
# dense A4 page at 300 dpi: 21-27. A page is turned from 1.0 on, which catches small
# scans; below ROTATE_SURE_CONF the turned page is kept only when Tesseract reads it with a
# higher mean word confidence than the page as it came, so a weak guess costs one more
# recognition of a small page, never a page of garbage.
ROTATE_MIN_CONF = 1.0
ROTATE_SURE_CONF = 10.0
_LANGUAGE = re.compile(r"^[A-Za-z0-9_]+(?:\+[A-Za-z0-9_]+)*$")
# The only decoders an OCR'd file may reach, whatever its name says (a JPEG named .png is fine):
# Pillow would otherwise also try its other plugins, EPS among them, which runs Ghostscript.
# (The JPEG opener also opens cameras' multi-picture JPEGs, MPO; HEIF is pillow-heif's.)
IMAGE_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP", "BMP", "DIB", "GIF", "HEIF")

_apis: dict[tuple[str, str], PyTessBaseAPI] = {}  # (tessdata, "eng+deu") -> loaded models
_osd_apis: dict[str, PyTessBaseAPI] = {}  # tessdata -> the orientation model
_heif_registered = False


class BadImage(Exception):
    """The image or PDF cannot be read, or breaks a limit; `reason` is shown to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --- requests ------------------------------------------------------------------------------------

def probe(request: dict[str, Any]) -> dict[str, Any]:
    options = request.get("options", {})
    mime = _option(options, "mime", str)
    max_pixels = _max_pixels(options)
    if mime == PDF:
        return _probe_pdf(request["path"], request["max_pages"], request["max_chars"],
                          int(_option(options, "min_page_chars", int)))
    with _open_image(request["path"], max_pixels) as image:
        frames = _frame_count(image)
        if frames > request["max_pages"]:
            raise BadImage(f"image has {frames} pages, more than the limit of "
                           f"{request['max_pages']}")
        for index in range(1, frames):
            _seek(image, index)
            _check_pixels(image.size[0] * image.size[1], max_pixels, page=index)
    return {"text": "", "pages": frames, "page_text": [None] * frames, "truncated": False}


def ocr_page(request: dict[str, Any]) -> dict[str, Any]:
    options = request.get("options", {})
    mime = _option(options, "mime", str)
    page = _option(options, "page", int)
    languages = _option(options, "languages", str)
    tessdata = _option(options, "tessdata", str)
    if not _LANGUAGE.match(languages):
        raise BadImage(f"bad OCR language list {languages!r}")
    max_pixels = _max_pixels(options)
    if mime == PDF:
        image = _render_pdf_page(request["path"], page, _option(options, "dpi", int), max_pixels)
    else:
        image = _load_frame(request["path"], page, max_pixels)
    rotated = 0
    if options.get("detect_orientation", True):
        text, confidence, rotated = _read_upright(image, tessdata, languages)
    else:
        text, confidence = _recognise(image, tessdata, languages)
    text = clean_text(text)
    return {"text": text[:request["max_chars"]], "confidence": confidence, "rotated": rotated,
            "truncated": len(text) > request["max_chars"]}


def _option(options: dict[str, Any], name: str, kind: type) -> Any:
    value = options.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        # The parent's bug, not the file's; "internal" would kill a sound child for it.
        raise BadImage(f"OCR request without a valid {name!r}")
    return value


def _max_pixels(options: dict[str, Any]) -> float:
    value = options.get("max_megapixels")
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise BadImage("OCR request without a valid 'max_megapixels'")
    return float(value) * 1_000_000


def _check_pixels(pixels: float, max_pixels: float, *, page: int | None = None,
                  dpi: int | None = None) -> None:
    """`page` only where the parent does not name the page itself (the probe)."""
    if pixels > max_pixels:
        where = f"page {page + 1}: " if page is not None else ""
        at = f" at {dpi} dpi" if dpi is not None else ""
        raise BadImage(f"{where}image of {pixels / 1e6:,.0f} megapixels{at} is over the "
                       f"limit of {max_pixels / 1e6:g} (ocr.max_megapixels)")


# --- images --------------------------------------------------------------------------------------

def _pil() -> Any:
    global _heif_registered
    from PIL import Image

    if not _heif_registered:
        from pillow_heif import register_heif_opener

        Image.init()  # every plugin registered, so that IMAGE_FORMATS all name known openers
        register_heif_opener()
        _heif_registered = True
    return Image


@contextmanager
def _open_image(path: str, max_pixels: float) -> Iterator[PILImage.Image]:
    """The image with only its header read; its pixel count checked against the limit."""
    image_module = _pil()
    # Pillow's own bomb check (an error from twice this) backs ours up for formats whose frames
    # it sizes late; a warning at once this is no news, we check the same number ourselves.
    image_module.MAX_IMAGE_PIXELS = int(max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", image_module.DecompressionBombWarning)
            image = image_module.open(path, formats=IMAGE_FORMATS)
    except image_module.DecompressionBombError as exc:
        raise BadImage(_bomb_reason(exc, max_pixels)) from exc
    except MemoryError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError,
            KeyError, RuntimeError) as exc:
        # Pillow reports unreadable headers with all of these, depending on the plugin.
        raise BadImage(f"unreadable image: {_brief(exc)}") from exc
    try:
        _check_pixels(image.size[0] * image.size[1], max_pixels)
        yield image
    finally:
        image.close()


def _bomb_reason(exc: Exception, max_pixels: float) -> str:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    if found:
        pixels = int(found.group(1))
        return (f"image of {pixels / 1e6:,.0f} megapixels is over the limit of "
                f"{max_pixels / 1e6:g} (ocr.max_megapixels)")
    return f"image is over the limit of {max_pixels / 1e6:g} megapixels (ocr.max_megapixels)"


def _frame_count(image: PILImage.Image) -> int:
    try:
        return max(1, int(getattr(image, "n_frames", 1)))
    except MemoryError:
        raise
    except Exception as exc:
        raise BadImage(f"corrupt image: {_brief(exc)}") from exc


def _seek(image: PILImage.Image, index: int) -> None:
    try:
        image.seek(index)
    except EOFError as exc:
        raise BadImage(f"image has no page {index + 1}") from exc
    except MemoryError:
        raise
    except Exception as exc:
        raise BadImage(f"corrupt image: {_brief(exc)}") from exc


def _load_frame(path: str, page: int, max_pixels: float) -> PILImage.Image:
    from PIL import ImageOps

    with _open_image(path, max_pixels) as image:
        if page:
            _seek(image, page)
            _check_pixels(image.size[0] * image.size[1], max_pixels)
        try:
            image.load()
            # Phones store a photo as the sensor saw it and say how to turn it in EXIF.
            upright = ImageOps.exif_transpose(image)
            return _grey(upright)
        except MemoryError:
            raise
        except Exception as exc:
            raise BadImage(f"corrupt image: {_brief(exc)}") from exc


def _grey(image: PILImage.Image) -> PILImage.Image:
    """8-bit greyscale, transparency flattened onto white: transparent pixels are black in most
    modes, and black text on black is no text to Tesseract."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P"
                                               and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        image = image.point(lambda value: value / 256)  # 16-bit scans: keep the top byte
    return image.convert("L")


# --- PDF -----------------------------------------------------------------------------------------

def _pdfium() -> Any:
    import pypdfium2

    return pypdfium2


@contextmanager
def _open_pdf(path: str) -> Iterator[pypdfium2.PdfDocument]:
    pdfium = _pdfium()
    try:
        document = pdfium.PdfDocument(path)
    except pdfium.PdfiumError as exc:
        message = str(exc).lower()
        if "password" in message:
            raise BadImage("encrypted PDF") from exc
        raise BadImage(f"corrupt PDF: {_brief(exc)}") from exc
    try:
        yield document
    finally:
        document.close()


def _probe_pdf(path: str, max_pages: int, max_chars: int, min_chars: int) -> dict[str, Any]:
    with _open_pdf(path) as document:
        pages = len(document)
        if pages > max_pages:
            raise BadImage(f"PDF has {pages} pages, more than the limit of {max_pages}")
        page_text: list[str | None] = []
        total = 0
        truncated = False
        for index in range(pages):
            if total >= max_chars:
                # Past the text limit nothing more is kept, so nothing more is read either.
                truncated = True
                page_text.append("")
                continue
            text = _text_layer(document, index)
            if len(re.sub(r"\s+", "", text)) < min_chars:
                page_text.append(None)
                continue
            text = text[:max_chars - total]
            total += len(text)
            page_text.append(text)
    return {"text": "", "pages": pages, "page_text": page_text, "truncated": truncated}


def _text_layer(document: pypdfium2.PdfDocument, index: int) -> str:
    try:
        page = document[index]
        try:
            textpage = page.get_textpage()
            try:
                return clean_text(textpage.get_text_bounded()).replace("\r\n", "\n")
            finally:
                textpage.close()
        finally:
            page.close()
    except MemoryError:
        raise
    except Exception:
        return ""  # a page whose text layer cannot be read is OCR'd like a scan


def _render_pdf_page(path: str, page: int, dpi: int, max_pixels: float) -> PILImage.Image:
    if not 10 <= dpi <= 1200:
        raise BadImage(f"OCR request with a dpi of {dpi}")
    with _open_pdf(path) as document:
        if not 0 <= page < len(document):
            raise BadImage(f"PDF has no page {page + 1}")
        try:
            pdf_page = document[page]
        except MemoryError:
            raise
        except Exception as exc:
            raise BadImage(f"corrupt PDF page: {_brief(exc)}") from exc
        try:
            width, height = pdf_page.get_size()
            scale = dpi / _POINTS_PER_INCH
            _check_pixels(abs(width * scale) * abs(height * scale), max_pixels, dpi=dpi)
            try:
                bitmap = pdf_page.render(scale=scale, grayscale=True, may_draw_forms=True)
                return bitmap.to_pil().convert("L")
            except MemoryError:
                raise
            except Exception as exc:
                raise BadImage(f"the PDF page cannot be rendered: {_brief(exc)}"
                               ) from exc
        finally:
            pdf_page.close()


# --- Tesseract -----------------------------------------------------------------------------------

def _api(tessdata: str, languages: str) -> PyTessBaseAPI:
    api = _apis.get((tessdata, languages))
    if api is None:
        from tesserocr import PyTessBaseAPI  # type: ignore[import-untyped]

        try:
            api = PyTessBaseAPI(path=tessdata, lang=languages)
        except RuntimeError as exc:
            # The parent saw the files; a model that does not load is a broken install.
            raise BadImage(f"{ENGINE_UNAVAILABLE}Tesseract cannot load {languages} from "
                           f"{tessdata} (a damaged .traineddata file?)") from exc
        _apis[(tessdata, languages)] = api
    return api


def _osd_api(tessdata: str) -> PyTessBaseAPI | None:
    api = _osd_apis.get(tessdata)
    if api is None:
        import os

        if not os.path.isfile(os.path.join(tessdata, "osd.traineddata")):
            return None
        from tesserocr import PSM, PyTessBaseAPI  # type: ignore[import-untyped]

        try:
            api = PyTessBaseAPI(path=tessdata, lang="osd", psm=PSM.OSD_ONLY)
        except RuntimeError:
            return None  # orientation is a nicety: pages are read as they come
        _osd_apis[tessdata] = api
    return api


def _recognise(image: PILImage.Image, tessdata: str, languages: str) -> tuple[str, float | None]:
    api = _api(tessdata, languages)
    try:
        api.SetImage(image)
        text = api.GetUTF8Text()
        confidence = float(api.MeanTextConf())
    finally:
        api.Clear()  # the page's image and results; the models stay loaded
    return text, (confidence if text.strip() else None)


def orientation(image: PILImage.Image, tessdata: str) -> tuple[int, float]:
    """(degrees to turn the image counter-clockwise to make it upright, OSD's confidence);
    (0, 0.0) when there is no orientation model or too little text to tell."""
    api = _osd_api(tessdata)
    if api is None:
        return 0, 0.0
    try:
        api.SetImage(image)
        found = api.DetectOrientationScript()
    except RuntimeError:
        return 0, 0.0
    finally:
        api.Clear()
    if not found:
        return 0, 0.0
    return int(found.get("orient_deg", 0)) % 360, float(found.get("orient_conf", 0.0))


def orientation_plan(degrees: int, confidence: float) -> str:
    """What to do with OSD's verdict: "as_is", "turn" (sure enough), or "compare" (read the
    page both ways and keep the reading Tesseract is more confident of)."""
    if degrees % 360 == 0 or confidence < ROTATE_MIN_CONF:
        return "as_is"
    return "turn" if confidence >= ROTATE_SURE_CONF else "compare"


def _read_upright(image: PILImage.Image, tessdata: str,
                  languages: str) -> tuple[str, float | None, int]:
    degrees, confidence = orientation(image, tessdata)
    plan = orientation_plan(degrees, confidence)
    if plan == "as_is":
        return (*_recognise(image, tessdata, languages), 0)
    turned = image.rotate(degrees, expand=True, fillcolor=255)
    text, mean = _recognise(turned, tessdata, languages)
    if plan == "compare":
        as_is, as_is_mean = _recognise(image, tessdata, languages)
        if (as_is_mean or 0.0) > (mean or 0.0):
            return as_is, as_is_mean, 0
    return text, mean, degrees


def _brief(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()
    return (message[0] if message else type(exc).__name__)[:160]
