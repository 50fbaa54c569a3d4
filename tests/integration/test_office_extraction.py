"""Office files through the extractor child: every format made by the library that reads it,
with known words; legacy formats through their command-line tools; hostile containers (zip
bombs, billion laughs, 100,000 sheets, corrupt or disguised files) that must end with a reason
and leave the child able to serve the next file."""

from __future__ import annotations

import datetime as dt
import io
import os
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path

import docx
import openpyxl
import pptx
import psycopg
import pytest
from odf import draw, presentation, style, table, text
from odf.opendocument import (
    OpenDocumentPresentation,
    OpenDocumentSpreadsheet,
    OpenDocumentText,
)
from pptx.util import Inches
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from alfrd_daemon.config.parse import load_settings
from alfrd_daemon.extract import zipguard
from alfrd_daemon.extract.api import (
    EXTRACTOR_VERSIONS,
    Extraction,
    ExtractLimits,
    PermanentExtractionError,
)
from alfrd_daemon.extract.dispatch import extract
from alfrd_daemon.extract.pool import ExtractorPool
from alfrd_daemon.ingest.reextract import reextract_stale
from tests.helpers import write_config
from tests.samples import make_pdf

pytestmark = pytest.mark.timeout(120)

LIMITS = ExtractLimits(timeout_seconds=20)
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
LAUGHS = (b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
          + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;")
                                                 * 10) for i in range(1, 10))
          + b"]>\n")


@pytest.fixture(scope="module")
def pool() -> Iterator[ExtractorPool]:
    with ExtractorPool(1, memory_limit_mb=LIMITS.memory_limit_mb) as shared:
        yield shared


def read(path: Path, pool: ExtractorPool, limits: ExtractLimits = LIMITS) -> Extraction:
    return extract(path, limits, pool=pool)


def refused(path: Path, pool: ExtractorPool) -> str:
    with pytest.raises(PermanentExtractionError) as info:
        read(path, pool)
    return info.value.reason


# --- files made by their own libraries -----------------------------------------------------------

def make_docx(path: Path) -> Path:
    document = docx.Document()
    document.core_properties.title = "Aardvark report"
    document.add_heading("Quarterly pangolin review", level=1)
    document.add_paragraph("The wombat paid the plumber.")
    grid = document.add_table(rows=2, cols=2)
    grid.cell(0, 0).text = "vendor"
    grid.cell(0, 1).text = "amount"
    grid.cell(1, 0).text = "okapi insurance"
    grid.cell(1, 1).text = "99.50"
    document.add_paragraph("After the table: quokka.")
    section = document.sections[0]
    section.header.paragraphs[0].text = "Header narwhal"
    section.footer.paragraphs[0].text = "Footer axolotl"
    document.save(path)
    return path


def test_docx_paragraphs_tables_headers_and_footers(tmp_path: Path, pool: ExtractorPool) -> None:
    x = read(make_docx(tmp_path / "report.docx"), pool)
    assert (x.status, x.mime_type, x.extractor) == ("extracted", DOCX, "docx/1")
    assert x.title == "Aardvark report"
    lines = x.text.splitlines()
    for words in ("Quarterly pangolin review", "The wombat paid the plumber.",
                  "vendor\tamount", "okapi insurance\t99.50", "Header narwhal", "Footer axolotl"):
        assert words in lines, words
    # The body in reading order: the table sits between its paragraphs.
    assert lines.index("okapi insurance\t99.50") < lines.index("After the table: quokka.")


def test_xlsx_several_sheets_and_numbers(tmp_path: Path, pool: ExtractorPool) -> None:
    workbook = openpyxl.Workbook()
    first = workbook.active
    first.title = "Invoices"
    first.append(["vendor", "amount", "due"])
    first.append(["platypus hardware", 12.5, dt.date(2026, 3, 1)])
    first.append(["kiwi bakery", 42, None])
    second = workbook.create_sheet("Notes")
    second["C3"] = "capybara remark"
    second["A1"] = "=1+1"  # a formula without a cached value has no text of its own
    path = tmp_path / "book.xlsx"
    workbook.save(path)
    x = read(path, pool)
    assert (x.status, x.extractor) == ("extracted", "xlsx/1")
    lines = x.text.splitlines()
    assert "# Invoices" in lines and "# Notes" in lines
    assert "platypus hardware\t12.5\t2026-03-01T00:00:00" in lines
    assert "kiwi bakery\t42" in lines
    assert "\t\tcapybara remark" in lines
    assert x.metadata == {"sheets": 2}


def test_pptx_slides_tables_groups_and_speaker_notes(tmp_path: Path, pool: ExtractorPool) -> None:
    deck = pptx.Presentation()
    slide = deck.slides.add_slide(deck.slide_layouts[1])
    slide.shapes.title.text = "Meerkat strategy"
    slide.placeholders[1].text = "Bullet about lemurs"
    group = slide.shapes.add_group_shape()
    group.shapes.add_textbox(Inches(1), Inches(1), Inches(2), Inches(1)).text = "grouped gecko"
    slide.notes_slide.notes_text_frame.text = "Remember the tapir"
    second = deck.slides.add_slide(deck.slide_layouts[5])
    grid = second.shapes.add_table(2, 2, Inches(1), Inches(2), Inches(4), Inches(1)).table
    grid.cell(0, 0).text = "ibex"
    grid.cell(1, 1).text = "yak"
    path = tmp_path / "deck.pptx"
    deck.save(path)
    x = read(path, pool)
    assert (x.status, x.extractor) == ("extracted", "pptx/1")
    for words in ("Meerkat strategy", "Bullet about lemurs", "grouped gecko",
                  "Remember the tapir", "ibex", "yak"):
        assert words in x.text, words
    assert x.metadata == {"slides": 2}


def test_odt_ods_odp(tmp_path: Path, pool: ExtractorPool) -> None:
    document = OpenDocumentText()
    document.text.addElement(text.H(outlinelevel=1, text="Heading about herons"))
    document.text.addElement(text.P(text="Paragraph about puffins"))
    document.save(str(tmp_path / "letter.odt"))

    sheet_doc = OpenDocumentSpreadsheet()
    sheet = table.Table(name="Budget")
    for cells in (("marmot", "17"), ("beaver", "23")):
        row = table.TableRow()
        for value in cells:
            cell = table.TableCell()
            cell.addElement(text.P(text=value))
            row.addElement(cell)
        sheet.addElement(row)
    sheet_doc.spreadsheet.addElement(sheet)
    sheet_doc.save(str(tmp_path / "budget.ods"))

    slides = OpenDocumentPresentation()
    layout = style.PageLayout(name="layout")
    slides.automaticstyles.addElement(layout)
    master = style.MasterPage(name="master", pagelayoutname=layout)
    slides.masterstyles.addElement(master)
    page = draw.Page(masterpagename=master)
    frame = draw.Frame(width="10cm", height="2cm", x="1cm", y="1cm")
    box = draw.TextBox()
    box.addElement(text.P(text="Slide about salamanders"))
    frame.addElement(box)
    page.addElement(frame)
    notes = presentation.Notes()
    notes_frame = draw.Frame(width="10cm", height="2cm", x="1cm", y="1cm")
    notes_box = draw.TextBox()
    notes_box.addElement(text.P(text="Note about newts"))
    notes_frame.addElement(notes_box)
    notes.addElement(notes_frame)
    page.addElement(notes)
    slides.presentation.addElement(page)
    slides.save(str(tmp_path / "talk.odp"))

    found = {name: read(tmp_path / name, pool) for name in ("letter.odt", "budget.ods",
                                                             "talk.odp")}
    assert all(x.status == "extracted" and x.extractor == "odf/1" for x in found.values())
    assert found["letter.odt"].text.splitlines() == ["Heading about herons",
                                                     "Paragraph about puffins"]
    assert found["budget.ods"].text.splitlines() == ["marmot", "17", "beaver", "23"]
    assert "Slide about salamanders" in found["talk.odp"].text
    assert "Note about newts" in found["talk.odp"].text


def test_rtf_with_escapes(tmp_path: Path, pool: ExtractorPool) -> None:
    path = tmp_path / "memo.rtf"
    path.write_bytes(rb"{\rtf1\ansi\deff0{\fonttbl{\f0 Times;}}\f0 Caf\'e9 for the "
                     rb"\b ocelot\b0 .\par Second line \u8364? euro.}")
    x = read(path, pool)
    assert (x.status, x.extractor) == ("extracted", "rtf/1")
    assert "Café for the ocelot." in x.text
    assert "Second line € euro." in x.text


def test_rtf_by_content_and_not_rtf_by_name(tmp_path: Path, pool: ExtractorPool) -> None:
    sniffed = tmp_path / "claim-7"
    sniffed.write_bytes(rb"{\rtf1 Sniffed jackal text.}")
    x = read(sniffed, pool)
    assert (x.mime_type, x.text.strip()) == ("application/rtf", "Sniffed jackal text.")
    fake = tmp_path / "fake.rtf"
    fake.write_bytes(b"plain words, no header")
    assert "not an RTF file" in refused(fake, pool)


def test_files_without_an_extension_are_read_by_their_given_name(
        tmp_path: Path, pool: ExtractorPool) -> None:
    # The daemon extracts from its claimed copy, whose name has no extension.
    workbook = openpyxl.Workbook()
    workbook.active["A1"] = "claimed coati"
    workbook.save(tmp_path / "claim-1")
    make_docx(tmp_path / "claim-2")
    deck = pptx.Presentation()
    deck.slides.add_slide(deck.slide_layouts[5]).shapes.title.text = "claimed caracal"
    deck.save(tmp_path / "claim-3")
    odt = OpenDocumentText()
    odt.text.addElement(text.P(text="claimed civet"))
    odt.save(str(tmp_path / "claim-4"))
    for claim, name, words in (("claim-1", "b.xlsx", "claimed coati"),
                               ("claim-2", "l.docx", "wombat"),
                               ("claim-3", "d.pptx", "claimed caracal"),
                               ("claim-4", "t.odt", "claimed civet")):
        assert words in extract(tmp_path / claim, LIMITS, name=name, pool=pool).text, name
        assert words in read(tmp_path / claim, pool).text, claim  # sniffed from the content


def test_text_stops_at_max_chars(tmp_path: Path, pool: ExtractorPool) -> None:
    document = docx.Document()
    for i in range(200):
        document.add_paragraph(f"paragraph {i} " + "x" * 50)
    path = tmp_path / "long.docx"
    document.save(path)
    x = read(path, pool, ExtractLimits(timeout_seconds=20, max_text_chars=500))
    assert x.truncated and len(x.text) <= 500
    assert x.text.startswith("paragraph 0 ")


def test_one_off_extraction_starts_and_ends_its_own_child(tmp_path: Path) -> None:
    x = extract(make_docx(tmp_path / "solo.docx"), LIMITS)
    assert "The wombat paid the plumber." in x.text


def test_a_pdf_only_child_never_loads_the_office_libraries(tmp_path: Path) -> None:
    pdf = tmp_path / "a.pdf"
    pdf.write_bytes(make_pdf(["gazelle"]))
    with ExtractorPool(1) as own:
        (pid,) = own.pids()
        assert "gazelle" in read(pdf, own).text
        assert "lxml" not in Path(f"/proc/{pid}/maps").read_text()
        read(make_docx(tmp_path / "b.docx"), own)
        assert "lxml" in Path(f"/proc/{pid}/maps").read_text()


# --- legacy formats ------------------------------------------------------------------------------

def ole_file(stream: str) -> bytes:
    """An OLE compound file header and a directory entry naming `stream`: enough to be
    recognised, not a document any tool can read."""
    name = stream.encode("utf-16-le")
    return (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
            + name + b"\x00" * (128 - len(name)) + b"\x00" * 512)


def test_a_missing_legacy_tool_leaves_the_file_pending(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "no-tools"
    empty.mkdir()
    (tmp_path / "old.doc").write_bytes(ole_file("WordDocument"))
    (tmp_path / "claim-3").write_bytes(ole_file("Workbook"))
    monkeypatch.setenv("PATH", str(empty))  # the child inherits it
    with ExtractorPool(1) as own:
        doc = read(tmp_path / "old.doc", own)
        sniffed = read(tmp_path / "claim-3", own)
    assert (doc.status, doc.text, doc.extractor) == ("pending", "", "antiword/1")
    assert doc.metadata == {"pending_reason": "antiword is not installed (apt install antiword)"}
    assert sniffed.mime_type == "application/x-ole-storage"
    assert sniffed.metadata == {"pending_reason": "xls2csv is not installed (apt install catdoc)"}


def test_a_broken_legacy_file_fails_with_the_tools_reason(tmp_path: Path,
                                                          pool: ExtractorPool) -> None:
    for name, stream, tool in (("old.doc", "WordDocument", "antiword"),
                               ("old.xls", "Workbook", "xls2csv"),
                               ("old.ppt", "PowerPoint Document", "catppt")):
        (tmp_path / name).write_bytes(ole_file(stream))
        assert refused(tmp_path / name, pool).startswith(f"{tool} could not read the file")
    encrypted = tmp_path / "secret.docx"  # a password-protected docx is an OLE container
    encrypted.write_bytes(ole_file("EncryptedPackage"))
    assert refused(encrypted, pool) == "the document is encrypted (password-protected)"
    other = tmp_path / "claim-4"
    other.write_bytes(ole_file("__substg1.0_0037001F"))  # an Outlook message: not bad, unread
    x = read(other, pool)
    assert (x.status, x.extractor, x.mime_type) == ("pending", "none/2",
                                                    "application/x-ole-storage")
    assert "not a Word, Excel or PowerPoint document" in x.metadata["pending_reason"]


def test_a_legacy_tool_that_hangs_is_stopped_and_the_file_fails(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    hanging = tools / "antiword"
    hanging.write_text("#!/bin/sh\nexec sleep 30\n")
    hanging.chmod(0o755)
    (tmp_path / "old.doc").write_bytes(ole_file("WordDocument"))
    monkeypatch.setenv("PATH", f"{tools}:/usr/bin:/bin")
    # 3 s for the document leaves the tool 1 s (cpu_seconds 4, less 3 for the reply).
    with ExtractorPool(1) as own:
        with pytest.raises(PermanentExtractionError, match="antiword did not finish within 1 s"):
            read(tmp_path / "old.doc", own, ExtractLimits(timeout_seconds=3))
        assert "wombat" in read(make_docx(tmp_path / "next.docx"), own).text


# --- hostile containers --------------------------------------------------------------------------

def rewrite(source: Path, target: Path, replace: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w",
                                                         zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            new.writestr(info.filename, replace.get(info.filename, old.read(info.filename)))
        for name in replace.keys() - set(old.namelist()):
            new.writestr(name, replace[name])
    return target


def test_a_zip_bomb_member_is_refused_from_its_compression_ratio(
        tmp_path: Path, pool: ExtractorPool) -> None:
    good = make_docx(tmp_path / "good.docx")
    bomb = rewrite(good, tmp_path / "bomb.docx", {"word/media/zeros.bin": bytes(64 << 20)})
    reason = refused(bomb, pool)
    assert "compressed" in reason and "zip bomb" in reason
    assert "wombat" in read(good, pool).text  # the child still serves


def declare_size(path: Path, member: str, size: int) -> None:
    """Rewrite `member`'s uncompressed size in the central directory, as a forged bomb does."""
    data = bytearray(path.read_bytes())
    at = data.find(b"PK\x01\x02")
    while at != -1:
        name_len = struct.unpack_from("<H", data, at + 28)[0]
        if data[at + 46:at + 46 + name_len] == member.encode():
            struct.pack_into("<I", data, at + 24, size)
        at = data.find(b"PK\x01\x02", at + 4)
    path.write_bytes(bytes(data))


def test_a_member_declared_at_2_gb_is_refused(tmp_path: Path, pool: ExtractorPool) -> None:
    bomb = make_docx(tmp_path / "forged.docx")
    declare_size(bomb, "word/document.xml", 2 << 30)
    assert "unpacks to 2048 MB" in refused(bomb, pool)


def test_many_members_and_overlapping_members_are_refused(tmp_path: Path,
                                                          pool: ExtractorPool) -> None:
    crowded = tmp_path / "crowded.xlsx"
    with zipfile.ZipFile(crowded, "w") as archive:
        for i in range(zipguard.MAX_MEMBERS + 1):
            archive.writestr(f"xl/m{i}", b"")
    assert "members (limit" in refused(crowded, pool)

    # Two central-directory entries for one local file: one stream unpacked twice over.
    one = io.BytesIO()
    with zipfile.ZipFile(one, "w") as archive:
        archive.writestr("word/document.xml", b"<x/>")
    data = one.getvalue()
    cd_at, end_at = data.find(b"PK\x01\x02"), data.find(b"PK\x05\x06")
    entry = data[cd_at:end_at]
    twin = entry.replace(b"word/document.xml", b"word/documenu.xml")
    end = bytearray(data[end_at:])
    struct.pack_into("<HHI", end, 8, 2, 2, len(entry) * 2)
    overlap = tmp_path / "overlap.docx"
    overlap.write_bytes(data[:cd_at] + entry + twin + bytes(end))
    assert "overlap" in refused(overlap, pool)


def with_laughs(xml: bytes) -> bytes:
    return LAUGHS + (xml.split(b"?>", 1)[1] if xml.startswith(b"<?xml") else xml)


def test_a_large_document_hits_the_memory_limit_and_the_next_one_is_read(
        tmp_path: Path) -> None:
    # 45 MB of XML in 1,000,000 paragraphs, 8.6 MB zipped (random text: no zip bomb). Parsed,
    # it needs more than 300 MB; the child's RLIMIT_AS stops it, in libxml2 (a parse error)
    # or in Python (MemoryError: the child is replaced).
    words = os.urandom(6_000_000).hex()
    paras = "".join(f"<w:p><w:r><w:t>{words[i:i + 12]}</w:t></w:r></w:p>"
                    for i in range(0, len(words), 12))
    body = ('<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
            f"<w:body>{paras}</w:body></w:document>").encode()
    big = rewrite(make_docx(tmp_path / "good.docx"), tmp_path / "big.docx",
                  {"word/document.xml": body})
    limits = ExtractLimits(timeout_seconds=20, memory_limit_mb=300)
    with ExtractorPool(1, memory_limit_mb=300) as own:
        with pytest.raises(PermanentExtractionError) as info:
            read(big, own, limits)
        assert info.value.reason.startswith(("cannot read the docx file: XMLSyntaxError",
                                             "Office file extraction exceeded the memory limit"))
        assert "wombat" in read(tmp_path / "good.docx", own, limits).text


def test_billion_laughs_expand_nowhere(tmp_path: Path, pool: ExtractorPool) -> None:
    good = make_docx(tmp_path / "good.docx")
    body = (LAUGHS + b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/'
            b'2006/main"><w:body><w:p><w:r><w:t>laughing hyena &lol9;</w:t></w:r></w:p>'
            b"</w:body></w:document>")
    laughs = rewrite(good, tmp_path / "laughs.docx", {"word/document.xml": body})
    assert "entity amplification" in refused(laughs, pool)  # libxml2's own limit
    # Below that limit, an entity is still never expanded into the text.
    small = body.replace(b"&lol9;", b"&lol1;")
    x = read(rewrite(good, tmp_path / "small.docx", {"word/document.xml": small}), pool)
    assert "laughing hyena" in x.text and "lol" not in x.text

    book = tmp_path / "book.xlsx"
    openpyxl.Workbook().save(book)
    with zipfile.ZipFile(book) as archive:
        sheet = archive.read("xl/worksheets/sheet1.xml")
    bad_book = rewrite(book, tmp_path / "laughs.xlsx", {
        "xl/worksheets/sheet1.xml": with_laughs(sheet)})
    assert "EntitiesForbidden" in refused(bad_book, pool)

    odt = tmp_path / "plain.odt"
    OpenDocumentText().save(str(odt))
    with zipfile.ZipFile(odt) as archive:
        content = archive.read("content.xml")
    bad_odt = rewrite(odt, tmp_path / "laughs.odt", {
        "content.xml": with_laughs(content)})
    assert "EntitiesForbidden" in refused(bad_odt, pool)


def test_a_100000_sheet_workbook_keeps_the_first_sheets(tmp_path: Path,
                                                        pool: ExtractorPool) -> None:
    # Written by hand: every sheet entry points at one small member, so the zip stays small and
    # passes the member checks; the workbook still lists 100,000 sheets.
    count = 100_000
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    sheets = "".join(f'<sheet name="S{i}" sheetId="{i}" r:id="rId{i}"/>'
                     for i in range(1, count + 1))
    rels = "".join(f'<Relationship Id="rId{i}" Type="{rel}/worksheet" '
                   f'Target="worksheets/sheet1.xml"/>' for i in range(1, count + 1))
    path = tmp_path / "many.xlsx"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", (
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/'
            'sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.'
            'spreadsheetml.worksheet+xml"/></Types>'))
        archive.writestr("_rels/.rels", (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId1" Type="{rel}/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>"))
        archive.writestr("xl/workbook.xml", f'<workbook xmlns="{main}" xmlns:r="{rel}">'
                                            f"<sheets>{sheets}</sheets></workbook>")
        archive.writestr("xl/_rels/workbook.xml.rels", (
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f"{rels}</Relationships>"))
        archive.writestr("xl/worksheets/sheet1.xml", (
            f'<worksheet xmlns="{main}"><sheetData><row r="1"><c r="A1" t="inlineStr"><is>'
            "<t>chinchilla</t></is></c></row></sheetData></worksheet>"))
    x = read(path, pool)
    assert x.metadata == {"sheets": count, "sheets_skipped": count - 1000}
    assert x.text.count("chinchilla") == 1000
    assert "# S1000" in x.text and "# S1001" not in x.text


def test_a_sheet_that_declares_a_huge_dimension_is_read_by_its_cells(
        tmp_path: Path, pool: ExtractorPool) -> None:
    book = tmp_path / "book.xlsx"
    openpyxl.Workbook().save(book)
    sheet = (b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
             b'<dimension ref="A1:XFD1048576"/><sheetData>'
             b'<row r="1"><c r="A1" t="inlineStr"><is><t>first dormouse</t></is></c></row>'
             b'<row r="1048576"><c r="B1048576" t="inlineStr"><is><t>last vole</t></is></c>'
             b"</row></sheetData></worksheet>")
    claims = rewrite(book, tmp_path / "claims.xlsx", {"xl/worksheets/sheet1.xml": sheet})
    # Padded to its dimension, this 1 KB sheet would be 17 billion cells.
    assert read(claims, pool).text.splitlines() == ["# Sheet", "first dormouse", "\tlast vole"]


def test_corrupt_truncated_and_disguised_containers_fail_with_reasons(
        tmp_path: Path, pool: ExtractorPool) -> None:
    good = make_docx(tmp_path / "good.docx").read_bytes()
    (tmp_path / "truncated.docx").write_bytes(good[:len(good) // 2])
    garbled = bytearray(good)
    at = garbled.find(b"word/document.xml") + len("word/document.xml")  # its compressed data
    garbled[at + 10:at + 400] = bytes(390)
    (tmp_path / "garbled.docx").write_bytes(bytes(garbled))
    (tmp_path / "really-a-pdf.docx").write_bytes(make_pdf(["not an office file"]))
    (tmp_path / "random.xlsx").write_bytes(bytes(range(256)) * 16)
    (tmp_path / "empty.pptx").write_bytes(b"")
    not_office = io.BytesIO()
    with zipfile.ZipFile(not_office, "w") as archive:
        archive.writestr("hello.txt", b"a zip, but not a document")
    (tmp_path / "plainzip.docx").write_bytes(not_office.getvalue())
    reasons = {name: refused(tmp_path / name, pool) for name in (
        "truncated.docx", "garbled.docx", "really-a-pdf.docx", "random.xlsx", "empty.pptx",
        "plainzip.docx")}
    assert reasons["truncated.docx"].startswith("not a valid zip container")
    assert reasons["garbled.docx"].startswith("cannot read the docx file")
    assert reasons["really-a-pdf.docx"] == (
        "not an office document: the file is not a zip container")
    assert reasons["random.xlsx"] == reasons["really-a-pdf.docx"]
    assert reasons["empty.pptx"] == reasons["really-a-pdf.docx"]
    assert reasons["plainzip.docx"].startswith("cannot read the docx file")
    assert all(len(reason) < 400 and "\n" not in reason for reason in reasons.values())
    assert "wombat" in read(tmp_path / "good.docx", pool).text


def test_a_nested_archive_outside_the_embeddings_is_refused(tmp_path: Path,
                                                            pool: ExtractorPool) -> None:
    good = make_docx(tmp_path / "good.docx")
    inner = good.read_bytes()
    embedded = rewrite(good, tmp_path / "embedded.docx",
                       {"word/embeddings/sheet.xlsx": inner})
    x = read(embedded, pool)
    assert x.metadata == {"embedded_objects_not_read": 1}
    smuggled = rewrite(good, tmp_path / "smuggled.docx", {"word/inner.zip": inner})
    assert "holds another archive" in refused(smuggled, pool)


def test_office_extractors_are_versioned() -> None:
    assert EXTRACTOR_VERSIONS["none"] == "2"  # office files stored as pending before are stale


# --- documents stored before office files were read ----------------------------------------------

def test_stale_pending_rows_are_read_again_from_the_store(tmp_path: Path, db_url: str) -> None:
    settings = load_settings(str(write_config(tmp_path, db_url)), environ={})
    store = settings.store_path
    store.mkdir(parents=True)
    good = make_docx(store / "good").read_bytes()
    (store / "broken").write_bytes(good[:len(good) // 2])
    (store / "taken").write_bytes(good)
    (store / "photo").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (store / "ole").write_bytes(ole_file("WordDocument"))
    missing = {"pending_reason": "antiword is not installed (apt install antiword)"}
    rows = [  # name, stored file, status, extractor, mime type, metadata
        ("old.docx", "good", "pending", "none/1", DOCX, {}),
        ("broken.docx", "broken", "pending", "none/1", DOCX, {}),
        ("taken.docx", "taken", "processing", "none/1", DOCX, {}),  # a downstream worker's
        ("photo.png", "photo", "pending", "none/1", "image/png", {}),  # still nothing reads it
        ("new.docx", "good", "pending", "none/2", DOCX, {}),  # looked at by today's readers
        # Stored while antiword was missing; it is installed now (and finds the file bad).
        ("old.doc", "ole", "pending", "antiword/1", "application/msword", missing),
    ]
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        for i, (name, stored, status, extractor, mime, meta) in enumerate(rows):
            conn.execute("INSERT INTO documents (sha256, original_name, source_path, status, "
                         "extracted_text, extractor, mime_type, stored_path, metadata) "
                         "VALUES (%s, %s, %s, %s, '', %s, %s, %s, %s)",
                         (f"{i:064x}", name, name, status, extractor, mime, stored,
                          Jsonb(meta)))
        counts = reextract_stale(settings, conn, batch_size=2, check=lambda: None)
        assert counts == {"reextracted": 1, "reextract_unreadable": 2, "reextract_later": 0,
                          "reextract_still_pending": 0}
        found = {r["original_name"]: r for r in conn.execute(
            "SELECT original_name, status, extractor, title, error, extracted_text, metadata "
            "FROM documents").fetchall()}
        assert reextract_stale(settings, conn, batch_size=2, check=lambda: None)[
            "reextracted"] == 0  # nothing is read twice
    assert found["old.docx"]["status"] == "extracted"
    assert found["old.docx"]["extractor"] == "docx/1"
    assert found["old.docx"]["title"] == "Aardvark report"
    assert "wombat" in found["old.docx"]["extracted_text"]
    assert found["broken.docx"]["status"] == "pending"
    assert found["broken.docx"]["extractor"] == "none/2"
    assert found["broken.docx"]["error"].startswith("not a valid zip container")
    assert (found["old.doc"]["status"], found["old.doc"]["extractor"]) == ("pending", "none/2")
    assert found["old.doc"]["error"].startswith("antiword could not read the file")
    assert found["old.doc"]["metadata"] == {}  # the old reason no longer holds
    for name, status, extractor in (("taken.docx", "processing", "none/1"),
                                    ("photo.png", "pending", "none/1"),
                                    ("new.docx", "pending", "none/2")):
        assert (found[name]["status"], found[name]["extractor"],
                found[name]["extracted_text"]) == (status, extractor, ""), name


def test_a_row_whose_tool_is_still_missing_is_left_as_it_was(
        tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(str(write_config(tmp_path, db_url)), environ={})
    settings.store_path.mkdir(parents=True)
    (settings.store_path / "ole").write_bytes(ole_file("WordDocument"))
    (tmp_path / "no-tools").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    missing = {"pending_reason": "antiword is not installed (apt install antiword)"}
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("INSERT INTO documents (sha256, original_name, source_path, status, "
                     "extracted_text, extractor, mime_type, stored_path, metadata) VALUES "
                     "(%s, 'old.doc', 'old.doc', 'pending', '', 'antiword/1', "
                     "'application/msword', 'ole', %s)", ("0" * 64, Jsonb(missing)))
        before = conn.execute("SELECT * FROM documents").fetchall()
        counts = reextract_stale(settings, conn, batch_size=10, check=lambda: None)
        assert counts["reextract_still_pending"] == 1 and counts["reextracted"] == 0
        assert conn.execute("SELECT * FROM documents").fetchall() == before
