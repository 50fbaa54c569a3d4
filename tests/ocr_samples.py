"""Images and PDFs for OCR tests, drawn by the tests themselves (no binary fixtures).

Text is DejaVuSans at ~40 px, black on white, a few short lines: big enough for Tesseract to
read reliably, small enough that a page costs tens of milliseconds.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from tests.samples import pdf_file

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
FONT_PX = 40
LINE_PX = 60
MARGIN_PX = 40


def make_text_image(words: Sequence[str] | str, rotate: int = 0, *, per_line: int = 3,
                    width: int = 1000, mode: str = "L") -> Image.Image:
    """`words` (a list, or one string split on spaces) drawn `per_line` to a line, then turned
    counter-clockwise by `rotate` degrees (0, 90, 180, 270), as a scanner might have fed it."""
    items = words.split() if isinstance(words, str) else list(words)
    lines = [" ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    font = ImageFont.truetype(FONT, FONT_PX)
    image = Image.new("L", (width, 2 * MARGIN_PX + LINE_PX * len(lines)), 255)
    draw = ImageDraw.Draw(image)
    for number, line in enumerate(lines):
        draw.text((MARGIN_PX, MARGIN_PX + LINE_PX * number), line, font=font, fill=0)
    if rotate:
        image = image.rotate(rotate, expand=True, fillcolor=255)
    return image.convert(mode) if mode != "L" else image


def image_bytes(image: Image.Image, fmt: str, **save: object) -> bytes:
    """The image saved as `fmt` ("png", "jpeg", "webp", "bmp", "gif", "tiff", "heic")."""
    if fmt.lower() in ("heic", "heif"):
        from pillow_heif import register_heif_opener

        register_heif_opener()
        fmt = "heif"  # pillow-heif writes HEIC under Pillow's format name HEIF
        image = image.convert("RGB")
    out = io.BytesIO()
    if fmt.lower() == "jpeg":
        save.setdefault("quality", 90)
    image.save(out, format=fmt.upper(), **save)  # type: ignore[arg-type]
    return out.getvalue()


def write_image(path: Path, image: Image.Image, fmt: str | None = None) -> Path:
    path.write_bytes(image_bytes(image, fmt or path.suffix.lstrip(".")))
    return path


def multipage_tiff(pages: Sequence[Image.Image]) -> bytes:
    out = io.BytesIO()
    pages[0].save(out, format="TIFF", save_all=True, append_images=list(pages[1:]),
                  compression="tiff_deflate")
    return out.getvalue()


def image_pdf(pages: Sequence[Image.Image], resolution: float = 150.0) -> bytes:
    """An image-only PDF (no text layer), one scanned page per image, by Pillow."""
    out = io.BytesIO()
    pages[0].save(out, format="PDF", save_all=True, append_images=list(pages[1:]),
                  resolution=resolution)
    return out.getvalue()


def _stream(data: bytes, extra: str = "") -> bytes:
    packed = zlib.compress(data)
    return (f"<< /Length {len(packed)} /Filter /FlateDecode {extra}>>\nstream\n".encode()
            + packed + b"\nendstream")


def mixed_pdf(text_lines: Sequence[str], scan: Image.Image, dpi: float = 150.0) -> bytes:
    """Page 1: Helvetica text (a real text layer); page 2: `scan` as an image, no text."""
    grey = scan.convert("L")
    width_pt, height_pt = grey.width * 72 / dpi, grey.height * 72 / dpi
    escaped = [line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
               for line in text_lines]
    shows = " ".join(f"({line}) Tj 0 -16 Td" for line in escaped)
    text_ops = f"BT /F1 12 Tf 72 720 Td {shows} ET".encode("latin-1")
    image_ops = f"q {width_pt:.2f} 0 0 {height_pt:.2f} 0 0 cm /Im1 Do Q".encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R 5 0 R] /Count 2 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 8 0 R >> >> >>",
        _stream(text_ops),
        (f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {width_pt:.2f} {height_pt:.2f}] "
         f"/Contents 6 0 R /Resources << /XObject << /Im1 7 0 R >> >> >>").encode(),
        _stream(image_ops),
        _stream(grey.tobytes(), f"/Type /XObject /Subtype /Image /Width {grey.width} "
                                f"/Height {grey.height} /ColorSpace /DeviceGray "
                                f"/BitsPerComponent 8 "),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    return pdf_file(objects)


def slow_render_pdf(curves: int = 40_000) -> bytes:
    """One page of `curves` long stroked Bezier curves criss-crossing it: parsed in a fraction
    of a second (its text layer is read quickly), rasterised in seconds at 300 dpi (200,000 of
    them took 30 s of CPU). Tiny filled rectangles or dashes are no good: pdfium draws those
    fast."""
    ops = [b"0.3 w"]
    for i in range(curves):
        ops.append(b"%d %d m %d %d %d %d %d %d c S" % (
            i % 600, i % 780, (i * 7) % 600, (i * 3) % 780, (i * 11) % 600, (i * 5) % 780,
            (i * 13) % 600, (i * 17) % 780))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        _stream(b"\n".join(ops)),
    ]
    return pdf_file(objects)


def huge_png(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height 1-bit pixels, with a tiny (incomplete) IDAT:
    anything that decodes it before checking its size is caught out."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 4096)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows)
            + chunk(b"IEND", b""))
