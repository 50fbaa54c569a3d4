"""Child process that reads the text layer of one PDF.

Usage: ``python -m alfrd_daemon.extract.pdf_worker <path> <max_pages> <max_chars>``

pypdf can spin or balloon on hostile input, so it runs here, under resource limits set by the
parent (`alfrd_daemon.extract.pdf`), which kills the whole process group on timeout. The reply
is exactly one JSON object on stdout: ``{"text", "pages", "title", "truncated", "page_errors",
"page_chars"}`` (page_chars: non-space characters of each page's text layer, for the pages read)
with exit code EXIT_OK, or ``{"error": reason}`` with EXIT_BAD_PDF / EXIT_NO_MEMORY.
"""

import json
import logging
import os
import resource
import sys
import warnings
from typing import Any

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError, FileNotDecryptedError

from alfrd_daemon.extract.pdf_protocol import EXIT_BAD_PDF, EXIT_NO_MEMORY, EXIT_OK, EXIT_USAGE
from alfrd_daemon.pgsafe import clean_text

# Acrobat accepts the header anywhere in the first KiB; so do we.
_HEADER_WINDOW = 1024
_PAGE_SEPARATOR = "\n\n"


class BadPdf(Exception):
    """The file's content cannot be read as a PDF; `reason` is shown to the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _brief(exc: BaseException) -> str:
    message = str(exc).strip().splitlines()
    return (message[0] if message else type(exc).__name__)[:160]


def _check_header(path: str) -> None:
    with open(path, "rb") as fh:
        head = fh.read(_HEADER_WINDOW)
    if b"%PDF-" not in head:
        raise BadPdf("not a PDF: no %PDF- header")


def _open(path: str) -> PdfReader:
    try:
        reader = PdfReader(path, strict=False)
        locked = reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED
    except MemoryError:
        raise
    except (DependencyError, FileNotDecryptedError) as exc:
        # DependencyError: AES without a crypto backend; either way we cannot read it.
        raise BadPdf("encrypted PDF") from exc
    except Exception as exc:
        raise BadPdf(f"corrupt PDF: {_brief(exc)}") from exc
    if locked:
        raise BadPdf("encrypted PDF")
    return reader


def _page_count(reader: PdfReader) -> int:
    try:
        return len(reader.pages)
    except MemoryError:
        raise
    except FileNotDecryptedError as exc:
        raise BadPdf("encrypted PDF") from exc
    except Exception as exc:
        raise BadPdf(f"corrupt PDF: {_brief(exc)}") from exc


def _page_text(reader: PdfReader, index: int) -> str | None:
    try:
        return reader.pages[index].extract_text()
    except MemoryError:
        raise
    except Exception:
        # One broken page should not cost the text of all the others.
        return None


def _texts(reader: PdfReader, pages: int, max_chars: int) -> tuple[str, bool, int, list[int]]:
    """(text, truncated, pages that failed, non-space characters of each page read); pages
    past the character limit are not read, so `page_chars` can be shorter than `pages`."""
    parts: list[str] = []
    page_chars: list[int] = []
    total = errors = 0
    skipped_pages = False
    for index in range(pages):
        text = _page_text(reader, index)
        page_chars.append(0 if text is None else len("".join(text.split())))
        if text is None:
            errors += 1
            continue
        if not text.strip():
            continue  # a page without a text layer adds nothing, not even a separator
        parts.append(text)
        total += len(text) + len(_PAGE_SEPARATOR)
        if total > max_chars:
            skipped_pages = index < pages - 1
            break
    joined = _PAGE_SEPARATOR.join(parts)
    clean = clean_text(joined)
    return clean[:max_chars], skipped_pages or len(clean) > max_chars, errors, page_chars


def _title(reader: PdfReader) -> str | None:
    try:
        meta = reader.metadata
        title = meta.title if meta is not None else None
    except MemoryError:
        raise
    except Exception:
        return None
    if not title:
        return None
    return clean_text(str(title)).strip() or None


def extract_pdf(path: str, max_pages: int, max_chars: int) -> dict[str, Any]:
    """Text layer of the PDF at `path`; raises BadPdf when the content is unusable."""
    _check_header(path)
    reader = _open(path)
    pages = _page_count(reader)
    if pages > max_pages:
        raise BadPdf(f"PDF has {pages} pages, more than the limit of {max_pages}")
    text, truncated, errors, page_chars = _texts(reader, pages, max_chars)
    if pages and errors == pages:
        raise BadPdf("corrupt PDF: no page could be read")
    return {"text": text, "pages": pages, "title": _title(reader), "truncated": truncated,
            "page_errors": errors, "page_chars": page_chars}


def _quiet_libraries() -> None:
    # Warnings about sloppy PDFs are routine; they may go to stderr, never to the reply.
    logging.basicConfig(stream=sys.stderr, level=logging.ERROR)
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    warnings.simplefilter("ignore")


def apply_limits(spec: str | None) -> None:
    """ALFRD_PDF_RLIMITS="address_space,cpu_soft,cpu_hard" from the parent, applied before the
    file is opened; core dumps off, since SIGXCPU would otherwise write one."""
    if not spec:
        return
    memory, cpu_soft, cpu_hard = (int(v) for v in spec.split(","))
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_soft, cpu_hard))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    apply_limits(os.environ.get("ALFRD_PDF_RLIMITS"))
    channel = sys.stdout.buffer
    # Anything a library prints must not corrupt the one JSON reply on the real stdout.
    sys.stdout = sys.stderr
    _quiet_libraries()
    try:
        path, max_pages, max_chars = args[0], int(args[1]), int(args[2])
    except (IndexError, ValueError):
        print("usage: python -m alfrd_daemon.extract.pdf_worker PATH MAX_PAGES MAX_CHARS",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        reply, code = extract_pdf(path, max_pages, max_chars), EXIT_OK
    except BadPdf as exc:
        reply, code = {"error": exc.reason}, EXIT_BAD_PDF
    except MemoryError:
        reply, code = {"error": "PDF extraction exceeded the memory limit"}, EXIT_NO_MEMORY
    channel.write(json.dumps(reply, ensure_ascii=False).encode("utf-8"))
    channel.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
