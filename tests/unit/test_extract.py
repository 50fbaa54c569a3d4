"""Text extraction: type detection, every supported format, and the bounded PDF child process."""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path

import pytest

from alfrd_daemon.extract.api import (
    EXTRACTOR_VERSIONS,
    Extraction,
    ExtractLimits,
    PermanentExtractionError,
)
from alfrd_daemon.extract.dispatch import extract
from alfrd_daemon.extract.sniff import detect_mime

LIMITS = ExtractLimits()


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def run(tmp_path: Path, name: str, data: bytes | str, limits: ExtractLimits = LIMITS) -> Extraction:
    return extract(write(tmp_path, name, data), limits)


# --- detect_mime ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "head", "expected"),
    [
        ("Scan.PDF", b"", "application/pdf"),
        ("photo.JPG", b"", "image/jpeg"),
        ("IMG_0001.heic", b"", "image/heic"),
        ("notes.txt", b"%PDF-1.7\n", "text/plain"),  # the extension wins over the content
        ("report.final.Md", b"# x", "text/markdown"),
        ("data.tsv", b"a\tb", "text/tab-separated-values"),
        ("mail.eml", b"From: a@b", "message/rfc822"),
        ("page.HTM", b"", "text/html"),
        ("letter.docx", b"", "application/vnd.openxmlformats-officedocument"
                             ".wordprocessingml.document"),
        ("claim-1", b"%PDF-1.7\n%\xe2\xe3", "application/pdf"),
        ("claim-1", b"\r\n%PDF-1.4 junk before header", "application/pdf"),
        ("claim-1", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "image/png"),
        ("claim-1", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
        ("claim-1", b"GIF89a\x01\x00\x01\x00", "image/gif"),
        ("claim-1", b"II*\x00\x08\x00\x00\x00", "image/tiff"),
        ("claim-1", b"MM\x00*\x00\x00\x00\x08", "image/tiff"),
        ("claim-1", b"RIFF\x24\x00\x00\x00WEBPVP8 ", "image/webp"),
        ("claim-1", b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00", "image/heic"),
        ("claim-1", b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00", "image/heif"),
        ("claim-1", b"BM\x16'\x02\x00\x00\x00\x00\x006\x04\x00\x00(\x00\x00\x00\xe8\x03",
         "image/bmp"),
        ("claim-1", b"BMW service invoice, March\n", "text/plain"),  # not every "BM" is a BMP
        ("scan.bmp", b"", "image/bmp"),
        ("IMG_0002.HEIF", b"", "image/heif"),
        ("scan.webp", b"", "image/webp"),
        ("fax.tif", b"", "image/tiff"),
        ("anim.gif", b"", "image/gif"),
        ("claim-1", b"PK\x03\x04\x14\x00\x06\x00" + b"\x00" * 22 + b"[Content_Types].xml word/",
         "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("claim-1", b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
         + (39).to_bytes(4, "little") * 2 + b"\x08\x00\x00\x00mimetype"
         + b"application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.text"),
        ("claim-1", b"PK\x03\x04\x14\x00\x00\x00" + b"\x00" * 40, "application/zip"),
        ("claim-1", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1\x00", "application/x-ole-storage"),
        ("claim-1", b"  <!DOCTYPE html><html><body>x", "text/html"),
        ("claim-1", b"Dear Sir,\nplease find attached.\n", "text/plain"),
        ("claim-1", "Grüße aus Köln".encode("cp1252"), "text/plain"),
        ("claim-1", codecs.BOM_UTF16_LE + "hi".encode("utf-16-le"), "text/plain"),
        ("claim-1", b"", "text/plain"),
        ("claim-1", b"\x00\x01\x02\x03binary\x00\xff", "application/octet-stream"),
        ("claim-1", bytes(range(1, 32)) * 4, "application/octet-stream"),
    ],
)
def test_detect_mime(name: str, head: bytes, expected: str) -> None:
    assert detect_mime(name, head) == expected


def test_detect_mime_only_looks_at_the_first_8_kib() -> None:
    head = b"plain words " * 700 + b"\x00" * 100  # the NULs start after 8400 bytes
    assert detect_mime("claim-1", head) == "text/plain"


# --- plain text and charsets ---------------------------------------------------------------------

def test_utf8_text(tmp_path: Path) -> None:
    x = run(tmp_path, "note.txt", "Grüße — naïve café ✓\nline two\n")
    assert x.text == "Grüße — naïve café ✓\nline two\n"
    assert (x.mime_type, x.status, x.extractor) == ("text/plain", "extracted", "plain/1")
    assert x.metadata == {"encoding": "utf-8"}
    assert x.title is None and x.truncated is False


@pytest.mark.parametrize(
    "text",
    [
        "Sehr geehrter Herr Müller, anbei die Rechnung für März. Grüße aus Köln, Jürgen Weiß.\n"
        "Prix: 12,50 €, déjà payé à la crème brûlée.\n",
        "Rechnung für Herrn Müller, Straße 5 — café à la crème, €12,50",
    ],
)
def test_cp1252_text_is_detected(tmp_path: Path, text: str) -> None:
    x = run(tmp_path, "old.txt", text.encode("cp1252"))
    assert x.text == text
    assert x.metadata["encoding"] == "cp1252"


def test_latin1_french_text(tmp_path: Path) -> None:
    text = "Élève, garçon, où êtes-vous? Le cœur a ses raisons que la raison ne connaît point."
    x = run(tmp_path, "fr.log", text.replace("œ", "oe").encode("latin-1"))
    assert x.text == text.replace("œ", "oe")


def test_polish_cp1250_is_not_forced_to_cp1252(tmp_path: Path) -> None:
    text = "Zażółć gęślą jaźń. Łódź, Kraków, Gdańsk — faktura nr 12 za usługi księgowe."
    x = run(tmp_path, "pl.txt", text.encode("cp1250"))
    assert "Zażółć" in x.text and "Łódź" in x.text


@pytest.mark.parametrize(
    ("bom", "codec", "label"),
    [
        (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16-be"),
        (codecs.BOM_UTF32_LE, "utf-32-le", "utf-32-le"),
    ],
)
def test_utf16_and_utf32_with_bom(tmp_path: Path, bom: bytes, codec: str, label: str) -> None:
    text = "Übersicht: 3 Positionen, Summe 99 €\n"
    x = run(tmp_path, "wide.txt", bom + text.encode(codec))
    assert x.text == text
    assert x.metadata["encoding"] == label


def test_utf16_with_bom_is_text_without_an_extension(tmp_path: Path) -> None:
    x = run(tmp_path, "README", codecs.BOM_UTF16_LE + "hello wide world".encode("utf-16-le"))
    assert (x.mime_type, x.status, x.text) == ("text/plain", "extracted", "hello wide world")


def test_utf8_bom_is_stripped(tmp_path: Path) -> None:
    x = run(tmp_path, "bom.txt", codecs.BOM_UTF8 + "Köln".encode())
    assert x.text == "Köln"
    assert x.metadata["encoding"] == "utf-8"


def test_nul_bytes_are_removed(tmp_path: Path) -> None:
    x = run(tmp_path, "nul.txt", b"alpha\x00beta\x00\x00gamma")
    assert x.text == "alphabetagamma"


def test_empty_text_file_is_a_valid_extraction(tmp_path: Path) -> None:
    x = run(tmp_path, "empty.txt", b"")
    assert (x.text, x.status, x.mime_type, x.truncated) == ("", "extracted", "text/plain", False)


def test_text_is_truncated_to_max_chars(tmp_path: Path) -> None:
    x = run(tmp_path, "long.txt", "abcdefghij" * 100, ExtractLimits(max_text_chars=95))
    assert x.text == ("abcdefghij" * 10)[:95]
    assert x.truncated is True


def test_bounded_read_does_not_split_a_character(tmp_path: Path) -> None:
    # 10 chars allowed -> 40 bytes read: 13 whole euro signs and a third of one.
    x = run(tmp_path, "euro.txt", "€" * 100, ExtractLimits(max_text_chars=10))
    assert x.text == "€" * 10
    assert x.truncated is True
    assert x.metadata["encoding"] == "utf-8"


def test_short_file_is_not_truncated_at_the_exact_limit(tmp_path: Path) -> None:
    x = run(tmp_path, "exact.txt", "x" * 40, ExtractLimits(max_text_chars=10))
    assert x.truncated is True
    y = run(tmp_path, "fits.txt", "x" * 10, ExtractLimits(max_text_chars=10))
    assert (y.text, y.truncated) == ("x" * 10, False)


def test_extension_less_text_is_sniffed(tmp_path: Path) -> None:
    x = run(tmp_path, "LICENSE", "Permission is hereby granted, free of charge\n")
    assert (x.mime_type, x.status, x.extractor) == ("text/plain", "extracted", "plain/1")
    assert "hereby granted" in x.text


def test_name_overrides_the_claim_file_name(tmp_path: Path) -> None:
    path = write(tmp_path, "claim-7f3a9c", "<html><title>Renamed</title><p>kept</p></html>")
    x = extract(path, LIMITS, name="Original.HTML")
    assert (x.mime_type, x.title, x.text) == ("text/html", "Renamed", "kept")


# --- markdown, CSV, JSON -------------------------------------------------------------------------

def test_markdown_keeps_text_and_takes_the_first_heading_as_title(tmp_path: Path) -> None:
    source = "Intro line\n\n# Travel expenses 2024 #\n\n* train **Berlin**\n* hotel [link](x)\n"
    x = run(tmp_path, "notes.markdown", source)
    assert x.text == source
    assert x.title == "Travel expenses 2024"
    assert (x.mime_type, x.extractor) == ("text/markdown", "markdown/1")


def test_csv_cells_become_searchable_text(tmp_path: Path) -> None:
    source = 'date,payee,amount\n2024-01-05,"Stadtwerke, Köln",89.90\n2024-02-01,Miete,950\n'
    x = run(tmp_path, "bank.csv", source)
    assert x.text == "date payee amount\n2024-01-05 Stadtwerke, Köln 89.90\n2024-02-01 Miete 950"
    assert x.metadata["rows"] == 3
    assert (x.mime_type, x.extractor) == ("text/csv", "csv/1")


def test_csv_semicolon_and_tsv(tmp_path: Path) -> None:
    semi = run(tmp_path, "export.csv", "Name;Betrag\nMüller;12,50\n".encode("cp1252"))
    assert semi.text == "Name Betrag\nMüller 12,50"
    tsv = run(tmp_path, "sheet.tsv", "a b\tc\n1\t2\n")
    assert tsv.text == "a b c\n1 2"
    assert tsv.mime_type == "text/tab-separated-values"


def test_csv_with_a_giant_field_falls_back_to_raw_text(tmp_path: Path) -> None:
    source = 'a,b\n"' + "x" * 200_000 + '",tail\n'
    x = run(tmp_path, "huge.csv", source)
    assert x.status == "extracted"
    assert x.text.endswith('",tail\n')
    assert x.metadata["csv"] == "unparsable"


def test_json_keys_and_values_are_flattened(tmp_path: Path) -> None:
    doc = {"invoice": {"number": 4711, "customer": "Jürgen Weiß", "paid": True,
                       "lines": [{"item": "Hosting"}, {"item": "Domain"}], "note": None}}
    x = run(tmp_path, "invoice.json", json.dumps(doc))
    assert x.text.split("\n") == ["invoice", "number", "4711", "customer", "Jürgen Weiß", "paid",
                                  "lines", "item", "Hosting", "item", "Domain", "note"]
    assert (x.mime_type, x.status, x.extractor) == ("application/json", "extracted", "json/1")


def test_invalid_json_is_plain_text(tmp_path: Path) -> None:
    x = run(tmp_path, "broken.json", '{"customer": "Müller", "total": 12,}')
    assert x.text == '{"customer": "Müller", "total": 12,}'
    assert x.status == "extracted"
    assert x.metadata["json"] == "invalid"


def test_deeply_nested_json_does_not_crash(tmp_path: Path) -> None:
    x = run(tmp_path, "deep.json", "[" * 200_000 + "]" * 200_000)
    assert x.status == "extracted"
    assert x.metadata["json"] == "invalid"


def test_json_escapes_for_nul_and_lone_surrogates_are_cleaned(tmp_path: Path) -> None:
    x = run(tmp_path, "odd.json", r'{"a\u0000b": "x\ud800y"}')
    assert x.text == "ab\nx\ufffdy"
    x.text.encode("utf-8")  # what PostgreSQL will need


# --- HTML ----------------------------------------------------------------------------------------

def test_html_text_without_tags_scripts_or_styles(tmp_path: Path) -> None:
    source = """<!DOCTYPE html>
<html><head><title> Rechnung &amp; Mahnung </title>
<style>body { color: red }</style>
<script>var secret = "<p>not text</p>";</script></head>
<body><h1>Dear Mr. M&uuml;ller</h1><p>Total:&nbsp;12&#8364; &lt;net&gt;</p>
<!-- a comment with <b>tags</b> -->
<table><tr><td>Item</td><td>Price</td></tr></table>
<SCRIPT type="text/javascript">alert(1)</SCRIPT>a &lt; b</body></html>"""
    x = run(tmp_path, "mail.html", source)
    assert x.title == "Rechnung & Mahnung"
    assert x.text == "Dear Mr. Müller\nTotal: 12€ <net>\nItem Price\na < b"
    assert (x.mime_type, x.extractor) == ("text/html", "html/1")


def test_html_declared_charset_is_used(tmp_path: Path) -> None:
    body = "Grüße \u2013 café"  # the en dash is 0x96 in cp1252, not a Latin-1 character
    source = f'<html><head><meta charset="windows-1252"></head><body>{body}</body></html>'
    x = run(tmp_path, "old.htm", source.encode("cp1252"))
    assert x.text == body
    assert x.metadata["encoding"] == "windows-1252"


# Each of these makes html.parser on Python 3.11.7 quadratic (or raise): minutes, not the
# fraction of a second a linear parse takes, so a hang guard catches a regression without
# asserting a speed.
@pytest.mark.timeout(30)
def test_unterminated_html_stays_linear(tmp_path: Path) -> None:
    hostile = ("<p>start</p>" + "<a " * 200_000 + "</" * 200_000 + "<![" * 100_000
               + "<!--x>" * 100_000)
    x = run(tmp_path, "hostile.html", hostile)
    assert x.text.startswith("start")


# --- email ---------------------------------------------------------------------------------------

PLAIN_MAIL = (
    "From: =?utf-8?q?J=C3=BCrgen_Wei=C3=9F?= <juergen@example.org>\r\n"
    "To: Archive <archive@example.org>\r\n"
    "Date: Tue, 05 Mar 2024 10:15:00 +0100\r\n"
    "Subject: =?utf-8?q?Rechnung_f=C3=BCr_M=C3=A4rz?=\r\n"
    "MIME-Version: 1.0\r\n"
    "Content-Type: text/plain; charset=iso-8859-1\r\n"
    "Content-Transfer-Encoding: quoted-printable\r\n"
    "\r\n"
    "Anbei die Rechnung f=FCr M=E4rz.\r\nGr=FC=DFe\r\n"
)


def test_plain_email(tmp_path: Path) -> None:
    x = run(tmp_path, "message.eml", PLAIN_MAIL)
    assert x.title == "Rechnung für März"
    assert x.text == "Anbei die Rechnung für März.\nGrüße\n"
    assert x.metadata["from"] == "Jürgen Weiß <juergen@example.org>"
    assert x.metadata["to"] == "Archive <archive@example.org>"
    assert x.metadata["date"] == "Tue, 05 Mar 2024 10:15:00 +0100"
    assert (x.mime_type, x.status, x.extractor) == ("message/rfc822", "extracted", "email/1")


def multipart_mail(parts: str, boundary: str = "BOUNDARY") -> str:
    return (
        "From: shop@example.com\r\nTo: me@example.org\r\nSubject: Your order\r\n"
        f'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
        f"{parts}--{boundary}--\r\n"
    )


HTML_PART = (
    "--BOUNDARY\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    "<html><head><style>p {color: red}</style></head>"
    "<body><p>Order &#35;123 shipped</p><script>track()</script></body></html>\r\n"
)
PLAIN_PART = "--BOUNDARY\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nOrder 123 shipped\r\n"
PDF_ATTACHMENT = (
    "--BOUNDARY\r\nContent-Type: application/pdf\r\n"
    'Content-Disposition: attachment; filename="invoice-123.pdf"\r\n'
    "Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n"
)


def test_multipart_email_with_html_only(tmp_path: Path) -> None:
    x = run(tmp_path, "order.eml", multipart_mail(HTML_PART + PDF_ATTACHMENT))
    assert x.text == "Order #123 shipped"
    assert x.title == "Your order"
    assert x.metadata["attachments"] == ["invoice-123.pdf"]


def test_multipart_email_prefers_the_plain_body(tmp_path: Path) -> None:
    alternative = (
        '--BOUNDARY\r\nContent-Type: multipart/alternative; boundary="ALT"\r\n\r\n'
        + PLAIN_PART.replace("--BOUNDARY", "--ALT")
        + HTML_PART.replace("--BOUNDARY", "--ALT")
        + "--ALT--\r\n"
    )
    x = run(tmp_path, "order.eml", multipart_mail(alternative))
    assert x.text.strip() == "Order 123 shipped"


@pytest.mark.parametrize(
    "raw",
    [
        b"this is not\x00 an email at all \xff\xfe\n\n\n",
        b"Subject: broken\r\nContent-Type: multipart/mixed\r\n\r\nno boundary anywhere\r\n",
        b"Subject: =?utf-8?q?unterminated\r\nFrom: <<<@@@>>>\r\nDate: yesterday-ish\r\n"
        b"Content-Type: text/plain; charset=x-no-such-charset\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!\xe9\r\n",
        b"Content-Type: multipart/mixed; boundary=X\r\n\r\n--X\r\nContent-Type: text/plain\r\n",
        b"To: " + b'"a' * 100_000 + b"\r\nSubject: slow header\r\n\r\nbody text\r\n",
    ],
)
@pytest.mark.timeout(30)  # a hang guard, not a speed assertion
def test_malformed_email_never_crashes(tmp_path: Path, raw: bytes) -> None:
    x = run(tmp_path, "bad.eml", raw)
    assert (x.mime_type, x.status, x.extractor) == ("message/rfc822", "extracted", "email/1")
    assert "\x00" not in x.text
    x.text.encode("utf-8")
    json.dumps(x.metadata)


def test_email_body_with_unknown_charset_is_still_decoded(tmp_path: Path) -> None:
    raw = (b"Subject: odd\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n\r\n"
           + "Grüße aus Köln".encode())
    x = run(tmp_path, "odd.eml", raw)
    assert x.text.strip() == "Grüße aus Köln"


# --- types left for OCR --------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "data", "mime"),
    [
        ("scan.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png"),
        ("photo.jpeg", b"\xff\xd8\xff\xe0" + b"\x00" * 64, "image/jpeg"),
        ("fax.tif", b"II*\x00" + b"\x00" * 64, "image/tiff"),
        ("blob.bin", bytes(range(256)) * 8, "application/octet-stream"),
        ("claim-9", b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "image/png"),
    ],
)
def test_unreadable_types_are_pending(tmp_path: Path, name: str, data: bytes, mime: str) -> None:
    x = run(tmp_path, name, data)
    assert (x.text, x.mime_type, x.status, x.extractor) == ("", mime, "pending", "none/2")


def test_extractor_names_are_versioned() -> None:
    assert all(version.isdigit() for version in EXTRACTOR_VERSIONS.values())
    assert {"plain", "markdown", "csv", "json", "html", "email", "pdf", "none", "docx", "xlsx",
            "pptx", "odf", "rtf", "antiword", "xls2csv", "catppt"} <= set(EXTRACTOR_VERSIONS)


@pytest.mark.parametrize(
    "bad", [{"timeout_seconds": 0}, {"max_text_chars": -1}, {"max_pdf_pages": 0},
            {"memory_limit_mb": 0}])
def test_limits_must_be_positive(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="positive"):
        ExtractLimits(**bad)


# --- PDF: refused before a worker is spawned (the rest: integration/test_pdf_extraction.py) ---

def test_binary_junk_named_pdf(tmp_path: Path) -> None:
    with pytest.raises(PermanentExtractionError) as err:
        run(tmp_path, "junk.pdf", os.urandom(4096).replace(b"%", b"&"))
    assert err.value.reason.startswith("not a PDF")


def test_short_german_cp1252_is_not_read_as_a_dos_code_page(tmp_path: Path) -> None:
    """charset-normalizer's first guess for this line is cp775 (ü → ³): a real miss seen in the
    end-to-end test."""
    text = "Rechnung für Müller: zahlbar bis Frühling, quokka"
    x = run(tmp_path, "latin1.txt", text.encode("cp1252"))
    assert x.text == text
    assert x.metadata["encoding"] == "cp1252"
