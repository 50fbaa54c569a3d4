"""Parsers for the text formats: plain text, Markdown, CSV/TSV, JSON and HTML.

Each takes the bytes of a bounded read (`partial`: the read was cut at the cap) and returns a
`Parsed`. They run in the daemon's own process, so each stays linear on hostile input.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
from collections.abc import Iterator
from itertools import islice
from typing import Any

from alfrd_daemon.extract.api import Parsed
from alfrd_daemon.extract.decode import decode_text
from alfrd_daemon.pgsafe import clean_text

_HSPACE = re.compile(r"[ \t\r\f\v\xa0]+")


def squash(text: str) -> str:
    """All runs of whitespace as one space: for titles and header values."""
    return " ".join(text.split())


def parse_plain(data: bytes, partial: bool) -> Parsed:
    text, encoding = decode_text(data, partial=partial)
    return Parsed(text, "plain", metadata={"encoding": encoding})


_MD_HEADING = re.compile(r"^#[ \t]+(.+?)[ \t#]*$", re.M)


def parse_markdown(data: bytes, partial: bool) -> Parsed:
    text, encoding = decode_text(data, partial=partial)
    heading = _MD_HEADING.search(text, 0, 65536)
    title = heading.group(1) if heading else None
    return Parsed(text, "markdown", title, {"encoding": encoding})


def parse_csv(data: bytes, partial: bool, *, delimiter: str | None = None) -> Parsed:
    text, encoding = decode_text(data, partial=partial)
    # Cleaned before the cells are split, so that a cell holding only NULs counts as empty.
    text = clean_text(text)
    delimiter = delimiter or _guess_delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        rows = [" ".join(cell.strip() for cell in row if cell.strip()) for row in reader]
    except csv.Error:
        # e.g. a field over csv.field_size_limit: the raw text is still searchable
        return Parsed(text, "csv", metadata={"encoding": encoding, "csv": "unparsable"})
    lines = [row for row in rows if row]
    return Parsed("\n".join(lines), "csv", metadata={"encoding": encoding, "rows": len(lines)})


def parse_tsv(data: bytes, partial: bool) -> Parsed:
    return parse_csv(data, partial, delimiter="\t")


def _guess_delimiter(text: str) -> str:
    # csv.Sniffer is regex-heavy and erratic; the first line's separator count is enough here.
    first = next((line for line in islice(text.splitlines(), 20) if line.strip()), "")
    return max(",;\t|", key=first.count)


def parse_json(data: bytes, partial: bool) -> Parsed:
    text, encoding = decode_text(data, partial=partial)
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return Parsed(text, "json", metadata={"encoding": encoding, "json": "invalid"})
    return Parsed("\n".join(_json_strings(doc)), "json", metadata={"encoding": encoding})


def _json_strings(doc: Any) -> Iterator[str]:
    # An explicit stack: deep nesting must not hit the recursion limit.
    stack = [doc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in reversed(node.items()):
                stack.extend((value, key))
        elif isinstance(node, list):
            stack.extend(reversed(node))
        elif isinstance(node, str):
            if node:
                yield node
        elif isinstance(node, int | float) and not isinstance(node, bool):
            yield str(node)  # invoice numbers and amounts are worth finding too


# HTML: a hand-written forward-only scanner. html.parser in Python 3.11.7 is quadratic on
# unterminated markup (measured: "<a " * 20_000, 60 KB, takes 25 s) and raises on some "<![".
_TAG_NAME = re.compile(r"</?([A-Za-z][A-Za-z0-9:-]*)")
_RAW_TAGS = ("script", "style", "title")  # content is not markup and not body text
_RAW_CLOSE = {tag: re.compile(rf"</{tag}\s*>", re.I) for tag in _RAW_TAGS}
_BLOCK_TAGS = frozenset({
    "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "figcaption",
    "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav",
    "ol", "p", "pre", "section", "table", "tr", "ul",
})
_CELL_TAGS = frozenset({"td", "th"})
_META_CHARSET = re.compile(rb"""<meta[^>]{0,512}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""",
                           re.I)


def _html_tokens(src: str) -> Iterator[tuple[str, str]]:
    """("text", chunk), ("tag", name) or (raw tag name, content), in one linear pass."""
    pos, end = 0, len(src)
    while pos < end:
        lt = src.find("<", pos)
        if lt < 0:
            yield "text", src[pos:]
            return
        if lt > pos:
            yield "text", src[pos:lt]
        if src.startswith("<!--", lt):
            close = src.find("-->", lt + 4)
            if close < 0:
                return  # an unterminated comment hides the rest, as in browsers
            pos = close + 3
            continue
        name = _TAG_NAME.match(src, lt)
        if name is None and not src.startswith(("<!", "<?"), lt):
            yield "text", "<"  # a bare "<" in text, e.g. "a < b"
            pos = lt + 1
            continue
        gt = src.find(">", lt)
        if gt < 0:
            return  # no ">" anywhere after: the rest is one unterminated tag
        pos = gt + 1
        if name is None:
            continue  # <!DOCTYPE>, <?xml?>, <![CDATA[: no text
        tag = name.group(1).lower()
        if tag in _RAW_CLOSE and src[lt + 1] != "/":
            closing = _RAW_CLOSE[tag].search(src, pos)
            content_end, pos = (closing.start(), closing.end()) if closing else (end, end)
            yield tag, src[gt + 1:content_end]
        else:
            yield "tag", tag


def html_to_text(src: str) -> tuple[str, str | None]:
    """(visible text, <title>) of an HTML document."""
    parts: list[str] = []
    title: str | None = None
    for kind, value in _html_tokens(src):
        if kind == "text":
            parts.append(html.unescape(value))
        elif kind == "title":
            title = title or squash(html.unescape(value))
        elif value in _BLOCK_TAGS:
            parts.append("\n")
        elif value in _CELL_TAGS:
            parts.append(" ")
    return _tidy_lines("".join(parts)), title


def _tidy_lines(text: str) -> str:
    lines = (_HSPACE.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def parse_html(data: bytes, partial: bool) -> Parsed:
    declared = _META_CHARSET.search(data, 0, 4096)
    charset = declared.group(1).decode("ascii") if declared else None
    text, encoding = decode_text(data, partial=partial, declared=charset)
    body, title = html_to_text(text)
    return Parsed(body, "html", title, {"encoding": encoding})
