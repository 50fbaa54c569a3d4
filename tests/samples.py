"""Real sample documents built by the tests themselves (no binary fixtures in the repo)."""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from pathlib import Path


def make_pdf(pages: list[str]) -> bytes:
    """A minimal, valid PDF with one line of Helvetica text per page (real xref offsets)."""
    objects: list[bytes] = []
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    font_obj = 3 + 2 * len(pages)
    for i, text in enumerate(pages):
        safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = zlib.compress(f"BT /F1 12 Tf 72 720 Td ({safe}) Tj ET".encode("latin-1"))
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font_obj} 0 R >> >> >>".encode())
        objects.append(f"<< /Length {len(stream)} /Filter /FlateDecode >>\nstream\n".encode()
                       + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return pdf_file(objects)


def pdf_file(objects: Sequence[bytes]) -> bytes:
    """A PDF of these numbered objects (1 is the catalog), with a real xref table."""
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{n} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
            .encode())
    return bytes(out)


def make_eml(subject: str, body: str) -> bytes:
    return (f"From: Utility Co <billing@utility.example>\r\nTo: me@example.org\r\n"
            f"Subject: {subject}\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}\r\n"
            ).encode()


PNG_1PX = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082")


def write_folder_document(folder: Path, doc_id: str, pages: dict[str, bytes],
                          tags: list[str]) -> None:
    """ALFRD's way: pages first, meta.json last, written in place (not atomically)."""
    folder.mkdir(parents=True)
    entries = []
    for order, (name, data) in enumerate(pages.items(), start=1):
        (folder / name).write_bytes(data)
        entries.append({"file": name, "type": "text" if name.endswith(".txt") else "image",
                        "order": order})
    meta = {"id": doc_id, "created_at": "2024-03-01T12:00:00Z", "documents": entries,
            "metadata": {"source": "scanner", "tags": tags}}
    (folder / "meta.json").write_text(json.dumps(meta))
