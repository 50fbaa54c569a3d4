"""PDF extraction through its killable child process: text, limits, corrupt and encrypted
files, the timeout that kills the worker, the memory limit, and the worker's own reply."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from pypdf import PdfWriter

from alfrd_daemon.extract.api import Extraction, ExtractLimits, PermanentExtractionError
from alfrd_daemon.extract.dispatch import extract
from tests.ocr_samples import make_text_image, mixed_pdf

LIMITS = ExtractLimits()
PACKAGE_ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def run(tmp_path: Path, name: str, data: bytes | str, limits: ExtractLimits = LIMITS) -> Extraction:
    return extract(write(tmp_path, name, data), limits)


# --- PDF fixtures built by hand ------------------------------------------------------------------

def pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def text_stream(text: str) -> bytes:
    return f"BT /F1 12 Tf 72 720 Td ({pdf_escape(text)}) Tj ET".encode("latin-1")


def build_pdf(contents: list[bytes], *, title: str | None = None, compress: bool = False) -> bytes:
    """A minimal valid PDF: one page per content stream, Helvetica, a correct xref table."""
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(len(contents)))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(contents)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for i, content in enumerate(contents):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>".encode())
        data = zlib.compress(content) if compress else content
        flate = b" /Filter /FlateDecode" if compress else b""
        objects.append(b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(data), flate, data))
    info = ""
    if title is not None:
        objects.append(f"<< /Title ({pdf_escape(title)}) >>".encode("latin-1"))
        info = f" /Info {len(objects)} 0 R"
    return assemble_pdf(objects, info)


def assemble_pdf(objects: list[bytes], trailer_extra: str = "") -> bytes:
    """Objects numbered from 1 (1 is the catalog), with byte-exact xref offsets."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R{trailer_extra} >>\n".encode()
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


TWO_PAGES = build_pdf([text_stream("Invoice quokka 4711 for March"),
                       text_stream("Second page zebra crossing")],
                      title="Quarterly Report")


def pypdf_bytes(writer: PdfWriter) -> bytes:
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def slow_pdf() -> bytes:
    # A million text operators on one page: pypdf needs ~20 s for it, it compresses to ~30 KB.
    return build_pdf([b"BT /F1 12 Tf 72 720 Td " + b"(ab) Tj 1 0 Td " * 1_000_000 + b"ET"],
                     compress=True)


def processes_mentioning(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry.name))
    return found


def zombie_children() -> list[int]:
    zombies = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if state == "Z" and int(ppid) == os.getpid():
            zombies.append(int(entry.name))
    return zombies


# --- PDF -----------------------------------------------------------------------------------------

def test_pdf_with_two_pages(tmp_path: Path) -> None:
    x = run(tmp_path, "report.pdf", TWO_PAGES)
    assert "Invoice quokka 4711" in x.text and "Second page zebra" in x.text
    assert x.text.index("quokka") < x.text.index("zebra")
    assert (x.mime_type, x.status, x.extractor) == ("application/pdf", "extracted", "pdf/1")
    assert x.title == "Quarterly Report"
    assert x.metadata == {"pages": 2}
    assert x.truncated is False


def test_pdf_is_recognised_by_content_under_a_claim_name(tmp_path: Path) -> None:
    x = extract(write(tmp_path, "claim-0001", TWO_PAGES), LIMITS)
    assert x.mime_type == "application/pdf" and "zebra" in x.text


def test_pdf_text_is_truncated(tmp_path: Path) -> None:
    x = run(tmp_path, "report.pdf", TWO_PAGES, ExtractLimits(max_text_chars=12))
    assert x.text == "Invoice quok"
    assert x.truncated is True


def test_pdf_written_by_pypdf_without_text_is_pending(tmp_path: Path) -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=595, height=842)
    writer.add_blank_page(width=595, height=842)
    x = run(tmp_path, "scan.pdf", pypdf_bytes(writer))
    assert (x.text, x.status, x.mime_type) == ("", "pending", "application/pdf")
    assert x.metadata["pages"] == 2
    assert x.metadata["ocr_pages"] == [0, 1]


def test_pdf_with_a_scanned_page_keeps_its_text_and_is_pending(tmp_path: Path) -> None:
    data = mixed_pdf(["A typed cover letter about the pangolin claim"],
                     make_text_image("scanned receipt"))
    x = run(tmp_path, "claim.pdf", data)
    assert x.status == "pending"
    assert x.text.strip() == "A typed cover letter about the pangolin claim"
    assert x.metadata == {"pages": 2, "ocr_pages": [1]}


def test_pdf_page_below_the_character_threshold_needs_ocr(tmp_path: Path) -> None:
    data = build_pdf([text_stream("Invoice quokka 4711 for March"), text_stream("Page 2 of 3"),
                      text_stream("Third page with enough text")])
    x = run(tmp_path, "stamped.pdf", data)
    assert x.status == "pending" and "Page 2 of 3" in x.text
    assert x.metadata["ocr_pages"] == [1]
    x = run(tmp_path, "stamped.pdf", data, ExtractLimits(pdf_min_page_chars=5))
    assert x.status == "extracted" and "ocr_pages" not in x.metadata


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9])
def test_truncated_pdf_is_corrupt(tmp_path: Path, keep: float) -> None:
    with pytest.raises(PermanentExtractionError) as err:
        run(tmp_path, "cut.pdf", TWO_PAGES[:int(len(TWO_PAGES) * keep)])
    assert err.value.reason.startswith("corrupt PDF")


def test_junk_behind_a_pdf_header(tmp_path: Path) -> None:
    with pytest.raises(PermanentExtractionError) as err:
        run(tmp_path, "junk.pdf", b"%PDF-1.7\n" + bytes(range(256)) * 16)
    assert err.value.reason.startswith("corrupt PDF")


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-256"])
def test_encrypted_pdf(tmp_path: Path, algorithm: str) -> None:
    writer = PdfWriter(clone_from=io.BytesIO(TWO_PAGES))
    writer.encrypt(user_password="s3cret", algorithm=algorithm)
    with pytest.raises(PermanentExtractionError) as err:
        run(tmp_path, "locked.pdf", pypdf_bytes(writer))
    assert err.value.reason == "encrypted PDF"


def test_pdf_encrypted_with_an_empty_user_password_is_read(tmp_path: Path) -> None:
    writer = PdfWriter(clone_from=io.BytesIO(TWO_PAGES))
    writer.encrypt(user_password="", owner_password="owner", algorithm="AES-256")
    x = run(tmp_path, "restricted.pdf", pypdf_bytes(writer))
    assert "zebra" in x.text


def test_pdf_page_limit(tmp_path: Path) -> None:
    with pytest.raises(PermanentExtractionError, match="2 pages, more than the limit of 1"):
        run(tmp_path, "report.pdf", TWO_PAGES, ExtractLimits(max_pdf_pages=1))


@pytest.mark.timeout(30)
def test_pdf_timeout_kills_the_limited_worker(tmp_path: Path) -> None:
    """At the timeout the parent kills the worker: it is gone when extract() raises, having
    used no more CPU than the 1.5 s it was given (one thread), well short of the 3 s CPU limit
    that would otherwise end it (left alone, pypdf needs ~20 s on this file). No wall-clock
    bound: a loaded machine gives the worker less CPU, never more."""
    path = write(tmp_path, "slow.pdf", slow_pdf())
    limits = ExtractLimits(timeout_seconds=1.5, memory_limit_mb=512)
    seen: dict[int, str] = {}
    cpu_seconds: dict[int, float] = {}
    returned = threading.Event()
    tick = os.sysconf("SC_CLK_TCK")

    def spy() -> None:  # looks at the worker while extract() is blocked on it
        while not returned.is_set():
            for pid in processes_mentioning(str(path)):
                try:
                    # The worker limits itself first thing: keep reading until that shows.
                    if "536870912" not in seen.get(pid, ""):
                        seen[pid] = Path(f"/proc/{pid}/limits").read_text()
                    utime, stime = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[
                        1].split()[11:13]
                except OSError:
                    continue  # it just ended
                cpu_seconds[pid] = (int(utime) + int(stime)) / tick
            time.sleep(0.02)

    watcher = threading.Thread(target=spy)
    watcher.start()
    try:
        with pytest.raises(PermanentExtractionError) as err:
            extract(path, limits)
    finally:
        returned.set()
        watcher.join()

    assert err.value.reason == "PDF extraction timed out after 1.5 s"
    assert len(seen) == 1, "the worker process was never observed"
    [(pid, proc_limits)] = seen.items()
    assert any(line.startswith("Max address space") and line.split()[3:5] == ["536870912"] * 2
               for line in proc_limits.splitlines())
    assert any(line.startswith("Max cpu time") and line.split()[3:5] == ["3", "5"]
               for line in proc_limits.splitlines())
    assert not Path(f"/proc/{pid}").exists(), "the worker survived the timeout"
    assert cpu_seconds[pid] < 2.5, "the worker ran on towards its CPU limit: it was not killed"
    assert processes_mentioning(str(path)) == []
    assert zombie_children() == []


@pytest.mark.timeout(30)
def test_pdf_tiny_timeout_raises_at_once(tmp_path: Path) -> None:
    path = write(tmp_path, "report.pdf", TWO_PAGES)
    started = time.monotonic()
    with pytest.raises(PermanentExtractionError, match=r"timed out after 0\.001 s"):
        extract(path, ExtractLimits(timeout_seconds=0.001))
    assert time.monotonic() - started < 2
    assert processes_mentioning(str(path)) == []
    assert zombie_children() == []


@pytest.mark.timeout(60)
def memory_bomb_pdf() -> bytes:
    """Six content streams of 70 MB each (pypdf's per-stream cap is 75 MB) on one page."""
    stream = zlib.compress(b"BT /F1 12 Tf " + b" " * 70_000_000 + b" ET", 9)
    contents = " ".join(f"{n} 0 R" for n in range(4, 10))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 "
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >> >> >> "
        + f"/Contents [{contents}] >>".encode(),
    ]
    objects += [b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream"
                % (len(stream), stream)] * 6
    return assemble_pdf(objects)


def test_pdf_memory_blow_up_hits_the_limit(tmp_path: Path) -> None:
    with pytest.raises(PermanentExtractionError, match="memory limit of 256 MB"):
        run(tmp_path, "bomb.pdf", memory_bomb_pdf(), ExtractLimits(memory_limit_mb=256))


def test_pdf_worker_prints_exactly_one_json_reply(tmp_path: Path) -> None:
    path = write(tmp_path, "report.pdf", TWO_PAGES)
    done = subprocess.run(
        [sys.executable, "-m", "alfrd_daemon.extract.pdf_worker", str(path), "10", "1000"],
        capture_output=True, cwd=PACKAGE_ROOT, timeout=30, check=False)
    assert done.returncode == 0
    reply = json.loads(done.stdout)
    assert reply["pages"] == 2 and "quokka" in reply["text"]
    broken = write(tmp_path, "broken.pdf", TWO_PAGES[:200])
    failed = subprocess.run(
        [sys.executable, "-m", "alfrd_daemon.extract.pdf_worker", str(broken), "10", "1000"],
        capture_output=True, cwd=PACKAGE_ROOT, timeout=30, check=False)
    assert failed.returncode == 2
    assert json.loads(failed.stdout)["error"].startswith("corrupt PDF")
