"""CPU and wall time per OCR page, in a real OCR child on one thread (OMP_THREAD_LIMIT=1).

    python -m benchmarks.ocr_cpu [--runs 3] [--languages eng,deu]

Pages (drawn with `tests.ocr_samples`, DejaVuSans):

  first      a small image (2 lines, 40 px) as the child's first document: imports of Pillow,
             pdfium and tesserocr and the loading of the models are paid here
  small      the same image again: the models are cached in the child (the steady cost)
  small180   the same image upside down: orientation detection, then two recognitions
  a4_pdf     a dense A4 page (62 lines, ~870 words, 42 px) as an image-only PDF, rendered at
             300 dpi, with orientation detection; `a4_pdf_no_osd` without it
  uncached   in this process: a fresh PyTessBaseAPI per small page (what a page would cost if
             the child did not keep its models), beside the cached API

CPU = user + system of the child from /proc (children_cpu_seconds), around one document.
Prints the median of the runs in ms per page.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from alfrd_daemon.extract.pool import children_cpu_seconds
from alfrd_daemon.ocr.reader import OcrLimits, ocr_document, start_ocr_pool, tessdata_dir
from tests.ocr_samples import FONT, image_bytes, image_pdf, make_text_image

WORDS = "Invoice quokka 4711 kilowatt hours total"
VOCABULARY = " ".join([
    "invoice total amount payment account number customer date quarter electricity water",
    "heating rent deposit insurance policy claim reference Rechnung Betrag Zahlung Konto",
    "Kunde Datum Strom Wasser Heizung Miete Versicherung Größe über Straße",
]).split()


def dense_a4(seed: int = 1) -> Image.Image:
    rng = random.Random(seed)
    page = Image.new("L", (2480, 3508), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(FONT, 42)
    for line in range(62):
        draw.text((150, 150 + line * 52), " ".join(rng.choice(VOCABULARY) for _ in range(14)),
                  font=font, fill=0)
    return page


def per_document(languages: list[str], folder: Path) -> dict[str, tuple[float, float]]:
    files = {
        "small": (folder / "small.png", "image/png"),
        "small180": (folder / "small180.png", "image/png"),
        "a4_pdf": (folder / "a4.pdf", "application/pdf"),
    }
    files["small"][0].write_bytes(image_bytes(make_text_image(WORDS), "png"))
    files["small180"][0].write_bytes(image_bytes(make_text_image(WORDS, rotate=180), "png"))
    files["a4_pdf"][0].write_bytes(image_pdf([dense_a4()], resolution=300))
    limits = OcrLimits()
    out: dict[str, tuple[float, float]] = {}
    with start_ocr_pool(1, limits) as pool:
        for label, name, osd in (("first", "small", True), ("small", "small", True),
                                 ("small180", "small180", True), ("a4_pdf", "a4_pdf", True),
                                 ("a4_pdf_no_osd", "a4_pdf", False)):
            path, mime = files[name]
            cpu0, wall0 = children_cpu_seconds(pool.pids()), time.perf_counter()
            ocr_document(pool, path, mime, languages, limits, detect_orientation=osd)
            out[label] = (children_cpu_seconds(pool.pids()) - cpu0, time.perf_counter() - wall0)
    return out


def uncached(languages: list[str], pages: int = 5) -> tuple[float, float]:
    """(CPU s per page with a fresh API each, with one cached API), in this process."""
    from tesserocr import PyTessBaseAPI  # type: ignore[import-untyped]

    image = make_text_image(WORDS)
    lang, path = "+".join(languages), str(tessdata_dir())
    start = time.process_time()
    for _ in range(pages):
        api = PyTessBaseAPI(path=path, lang=lang)
        api.SetImage(image)
        api.GetUTF8Text()
        api.End()
    fresh = (time.process_time() - start) / pages
    api = PyTessBaseAPI(path=path, lang=lang)
    start = time.process_time()
    for _ in range(pages):
        api.SetImage(image)
        api.GetUTF8Text()
        api.Clear()
    cached = (time.process_time() - start) / pages
    api.End()
    return fresh, cached


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ocr_cpu")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--languages", default="eng,deu")
    args = parser.parse_args()
    os.environ["OMP_THREAD_LIMIT"] = "1"  # as the pool's children run (and before tesserocr)
    languages = args.languages.split(",")
    runs: list[dict[str, tuple[float, float]]] = []
    with tempfile.TemporaryDirectory(prefix="alfrd-ocr-bench-") as tmp:
        for _ in range(args.runs):
            runs.append(per_document(languages, Path(tmp)))
    for label in runs[0]:
        cpu = statistics.median(run[label][0] for run in runs) * 1000
        wall = statistics.median(run[label][1] for run in runs) * 1000
        print(f"{label:14} cpu {cpu:8.0f} ms   wall {wall:8.0f} ms")
    fresh, cached = uncached(languages)
    print(f"{'uncached':14} cpu {fresh * 1000:8.0f} ms   (cached API: {cached * 1000:.0f} ms)"
          f"   python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
