"""The text of office files, read in the extractor child (kind "office" in `worker.HANDLERS`).

Every zip container passes `zipguard.check_zip` before a reader opens it. XML is parsed with
entity expansion off: python-docx and python-pptx get an lxml parser that neither resolves
entities nor loads DTDs nor accepts huge trees; openpyxl and odfpy already parse through
defusedxml when it is installed (it is a dependency), which refuses entity declarations.
Text stops at max_chars; a workbook's sheets stop at MAX_SHEETS.

Legacy binary formats (.doc, .xls, .ppt) are read by catdoc's and antiword's command-line tools,
run here as a subprocess under the child's own limits. Without the tool the result is "pending"
with the reason, since the file may well be fine.

Imported by the child only when an office file arrives: a child that reads PDFs only never
loads these libraries.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

from alfrd_daemon.extract.zipguard import ZipRefused, check_zip

MAX_SHEETS = 1000
MAX_RTF_BYTES = 32 * 1024 * 1024
MAX_SHAPE_DEPTH = 20  # pptx group shapes nested deeper than this are not read
LEGACY_TIMEOUT_SECONDS = 20

OOXML = "application/vnd.openxmlformats-officedocument"
ODF = "application/vnd.oasis.opendocument"
DOCX = f"{OOXML}.wordprocessingml.document"
XLSX = f"{OOXML}.spreadsheetml.sheet"
PPTX = f"{OOXML}.presentationml.presentation"
RTF = "application/rtf"
DOC = "application/msword"
XLS = "application/vnd.ms-excel"
PPT = "application/vnd.ms-powerpoint"
OLE = "application/x-ole-storage"

# The tool that reads each legacy format, and the OLE stream name (UTF-16LE) that marks it.
_LEGACY: dict[str, tuple[str, str, str]] = {
    DOC: ("antiword", "antiword", "WordDocument"),
    XLS: ("xls2csv", "catdoc", "Workbook"),
    PPT: ("catppt", "catdoc", "PowerPoint Document"),
}


# The stream in which an OLE container keeps an encrypted OOXML document.
_ENCRYPTED = "EncryptedPackage".encode("utf-16-le")


class OfficeError(Exception):
    """The file's content cannot be read; `reason` is one sentence for the user."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Full(Exception):
    """The text reached max_chars: stop reading."""


class _Text:
    """Text pieces up to a character budget; `add` raises _Full once it is spent."""

    def __init__(self, max_chars: int) -> None:
        self.parts: list[str] = []
        self.left = max_chars
        self.truncated = False

    def add(self, piece: str) -> None:
        if not piece:
            return
        if len(piece) + 1 > self.left:
            self.parts.append(piece[:max(0, self.left)])
            self.left = 0
            self.truncated = True
            raise _Full
        self.parts.append(piece)
        self.left -= len(piece) + 1

    def text(self) -> str:
        return "\n".join(self.parts)


def extract_office(path: str, mime: str, max_chars: int,
                   tool_seconds: float = LEGACY_TIMEOUT_SECONDS) -> dict[str, Any]:
    """{"text", "truncated", "extractor", "title"?, "metadata", "pending"?} for one office
    file; raises OfficeError for bad content. `tool_seconds`: wall time for a legacy tool."""
    reader = _READERS.get(mime)
    if reader is None:
        if mime == OLE or mime in _LEGACY:
            return _legacy(path, mime, max_chars, tool_seconds)
        raise OfficeError(f"no office reader for {mime}")
    extractor = _extractor_name(mime)
    if extractor != "rtf":
        try:
            summary = check_zip(path)
        except ZipRefused as exc:
            raise OfficeError(exc.reason) from exc
    out = _Text(max_chars)
    result: dict[str, Any] = {"metadata": {}}
    try:
        # An open file, not the path: the daemon's claimed copy has no extension, and openpyxl
        # refuses a path that does not end in .xlsx.
        with open(path, "rb") as fh:
            reader(fh, out, result)
    except _Full:
        pass
    except (OfficeError, MemoryError):
        raise
    except Exception as exc:
        # Every library has its own ways of saying "corrupt"; none of them is our bug.
        raise OfficeError(f"cannot read the {extractor} file: {type(exc).__name__}: "
                          f"{str(exc)[:200]}") from exc
    if extractor != "rtf" and summary.embedded_archives:
        result["metadata"]["embedded_objects_not_read"] = summary.embedded_archives
    result.update(text=out.text(), truncated=out.truncated, extractor=extractor)
    return result


def _extractor_name(mime: str) -> str:
    if mime.startswith(ODF):
        return "odf"
    return {DOCX: "docx", XLSX: "xlsx", PPTX: "pptx", RTF: "rtf"}[mime]


# --- OOXML -------------------------------------------------------------------------------------

_HARDENED: set[str] = set()


def _hardened(module: Any) -> None:
    """Replace a library's module-level lxml parser by one that says every option that keeps
    hostile XML small: no entity expansion, no DTD, no network, no huge trees. The libraries'
    own parsers turn off entity resolution and rely on lxml's defaults for the rest; a new
    default must not loosen this."""
    if module.__name__ not in _HARDENED:
        from lxml import etree

        parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False,
                                 load_dtd=False, no_network=True, huge_tree=False)
        parser.set_element_class_lookup(module.element_class_lookup)
        module.oxml_parser = parser
        _HARDENED.add(module.__name__)


def _docx(fh: BinaryIO, out: _Text, result: dict[str, Any]) -> None:
    import docx
    import docx.oxml.parser
    from docx.table import Table

    _hardened(docx.oxml.parser)
    document = docx.Document(fh)
    result["title"] = document.core_properties.title or None

    def blocks(items: Iterable[Any]) -> None:
        for item in items:
            if isinstance(item, Table):
                _table_rows(((cell.text for cell in row.cells) for row in item.rows), out)
            else:
                out.add(item.text)

    blocks(document.iter_inner_content())
    seen: set[int] = set()
    for section in document.sections:
        for part in (section.header, section.first_page_header, section.even_page_header,
                     section.footer, section.first_page_footer, section.even_page_footer):
            # Asked first: `.part` of an undefined header would add one to the document.
            if part.is_linked_to_previous:
                continue
            if id(part.part) in seen:
                continue
            seen.add(id(part.part))
            blocks(part.iter_inner_content())


def _table_rows(rows: Iterable[Iterable[str]], out: _Text) -> None:
    for row in rows:
        cells: list[str] = []
        for cell in row:
            # Merged cells repeat their text in every grid cell they span; this also drops a
            # neighbour that happens to hold the same text, which search does not miss.
            if not cells or cell != cells[-1]:
                cells.append(cell)
        out.add("\t".join(cells).strip())


def _xlsx(fh: BinaryIO, out: _Text, result: dict[str, Any]) -> None:
    from openpyxl.reader.excel import ExcelReader
    from openpyxl.styles.stylesheet import apply_stylesheet

    # load_workbook() would open every sheet's member to size it, even read-only (8 s for
    # 100,000 sheets); the reader's steps are run here instead, with the sheet list cut first.
    reader = ExcelReader(fh, read_only=True, data_only=True)
    try:
        reader.read_manifest()
        reader.read_strings()
        reader.read_workbook()
        declared = len(reader.parser.sheets)
        result["metadata"]["sheets"] = declared
        if declared > MAX_SHEETS:
            result["metadata"]["sheets_skipped"] = declared - MAX_SHEETS
            reader.parser.sheets = reader.parser.sheets[:MAX_SHEETS]
        reader.read_properties()
        apply_stylesheet(reader.archive, reader.wb)  # number formats tell dates from numbers
        reader.read_worksheets()
        workbook = reader.wb
        result["title"] = workbook.properties.title or None
        for sheet in workbook.worksheets:
            out.add(f"# {sheet.title}")
            # Rows would be padded to the declared <dimension>: a 1 KB sheet that claims
            # A1:XFD1048576 is 17 billion empty cells. Without it, a row is as wide as its cells.
            sheet.reset_dimensions()
            for row in sheet.iter_rows(values_only=True):
                line = "\t".join(_cell_text(value) for value in row).rstrip("\t")
                if line:
                    out.add(line)
    finally:
        reader.archive.close()


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def _pptx(fh: BinaryIO, out: _Text, result: dict[str, Any]) -> None:
    import pptx
    import pptx.oxml

    _hardened(pptx.oxml)
    presentation = pptx.Presentation(fh)
    result["title"] = presentation.core_properties.title or None
    slides = list(presentation.slides)
    result["metadata"]["slides"] = len(slides)
    for slide in slides:
        for shape in _shapes(slide.shapes, 0):
            if shape.has_text_frame:
                out.add(shape.text_frame.text)
            elif getattr(shape, "has_table", False):  # a graphic frame holding a table
                _table_rows(((cell.text for cell in row.cells) for row in shape.table.rows), out)
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            if notes is not None:
                out.add(notes.text)


def _shapes(shapes: Iterable[Any], depth: int) -> Iterator[Any]:
    for shape in shapes:
        if hasattr(shape, "shapes"):  # a group
            if depth < MAX_SHAPE_DEPTH:
                yield from _shapes(shape.shapes, depth + 1)
        else:
            yield shape


# --- ODF ---------------------------------------------------------------------------------------

def _odf(fh: BinaryIO, out: _Text, result: dict[str, Any]) -> None:
    from odf import teletype
    from odf.namespaces import TEXTNS
    from odf.opendocument import load

    document = load(fh)
    title = document.meta.getElementsByType(_odf_title_class())
    result["title"] = teletype.extractText(title[0]).strip() or None if title else None
    paragraph_tags = {(TEXTNS, "p"), (TEXTNS, "h")}
    # Depth-first, in document order, without recursion: nesting is the attacker's to choose.
    stack: list[Any] = [document.body]
    while stack:
        node = stack.pop()
        if getattr(node, "qname", None) in paragraph_tags:
            out.add(teletype.extractText(node))
            continue
        stack.extend(reversed(getattr(node, "childNodes", ())))


def _odf_title_class() -> Any:
    from odf.dc import Title

    return Title


# --- RTF ---------------------------------------------------------------------------------------

def _rtf(fh: BinaryIO, out: _Text, result: dict[str, Any]) -> None:
    from striprtf.striprtf import rtf_to_text

    data = fh.read(MAX_RTF_BYTES + 1)
    if not data.lstrip().startswith(b"{\\rtf"):
        raise OfficeError("not an RTF file: no {\\rtf header")
    if len(data) > MAX_RTF_BYTES:
        data = data[:MAX_RTF_BYTES]
        result["metadata"]["read_bytes"] = MAX_RTF_BYTES
        out.truncated = True
    # RTF is 7-bit: other characters come as escapes, which striprtf decodes (cp1252 default).
    out.add(rtf_to_text(data.decode("latin-1"), errors="replace").strip())


_READERS: dict[str, Callable[[BinaryIO, _Text, dict[str, Any]], None]] = {
    DOCX: _docx, XLSX: _xlsx, PPTX: _pptx, RTF: _rtf,
    f"{ODF}.text": _odf, f"{ODF}.spreadsheet": _odf, f"{ODF}.presentation": _odf,
}


# --- legacy binary formats ---------------------------------------------------------------------

def _legacy(path: str, mime: str, max_chars: int, seconds: float) -> dict[str, Any]:
    if mime == OLE:
        mime = _ole_kind(path)
        if not mime:
            # Not a bad file, just one we have no reader for: left to downstream workers.
            return {"text": "", "truncated": False, "extractor": "none", "pending": True,
                    "metadata": {"pending_reason": "an OLE compound file that is not a Word, "
                                                   "Excel or PowerPoint document"}}
    tool, package, _ = _LEGACY[mime]
    extractor = tool
    found = shutil.which(tool)
    if found is None:
        return {"text": "", "truncated": False, "extractor": extractor, "pending": True,
                "metadata": {"pending_reason": f"{tool} is not installed "
                                               f"(apt install {package})"}}
    text, truncated = _run_tool([found, path] if tool != "xls2csv" else [found, "-q0", path],
                                tool, max_chars, seconds)
    return {"text": text, "truncated": truncated, "extractor": extractor, "metadata": {}}


def _ole_kind(path: str) -> str:
    """Which legacy format an OLE file (found by content, not name) holds, "" for none: by the
    name of its main stream, stored in UTF-16LE in the directory."""
    markers = [(name.encode("utf-16-le"), mime) for mime, (_, _, name) in _LEGACY.items()]
    markers.append(("Book".encode("utf-16-le"), XLS))  # Excel 5/95
    markers.insert(0, (_ENCRYPTED, ""))
    tail = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            window = tail + chunk
            for marker, mime in markers:
                if marker in window:
                    if not mime:
                        raise OfficeError("the document is encrypted (password-protected)")
                    return mime
            tail = window[-64:]
    return ""


def _run_tool(command: list[str], tool: str, max_chars: int,
              seconds: float) -> tuple[str, bool]:
    cap = max_chars * 4

    cpu = math.ceil(seconds) + 1

    def limit_tool() -> None:
        # Runs in the forked tool, before exec; this child is single-threaded, so it is safe.
        # The tool stays in our process group, so the parent's kill on overrun reaches it; its
        # own CPU limit covers a parent that died. RLIMIT_AS it inherits from us.
        resource.setrlimit(resource.RLIMIT_FSIZE, (cap + 1, cap + 1))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))

    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        try:
            proc = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                                  timeout=seconds, preexec_fn=limit_tool,
                                  env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8"},
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise OfficeError(f"{tool} did not finish within {seconds:g} s") from exc
        stdout.seek(0)
        data = stdout.read(cap + 1)
        stderr.seek(0)
        complaint = stderr.read(2000).decode("utf-8", "replace").strip().splitlines()
    truncated = len(data) > cap
    # catdoc's tools exit 0 on a file they cannot read; only their stderr says so.
    if not data.strip() and (proc.returncode != 0 or complaint):
        detail = complaint[-1][:200] if complaint else f"exit status {proc.returncode}"
        raise OfficeError(f"{tool} could not read the file: {detail}")
    text = data[:cap].decode("utf-8", "replace")
    if len(text) > max_chars:
        text, truncated = text[:max_chars], True
    return text, truncated

