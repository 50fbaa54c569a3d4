"""Pure decisions about inbox paths: ignore rules, tags, displayable names."""

from __future__ import annotations

import os

import pytest

from alfrd_daemon.config.settings import DEFAULT_IGNORE_DIRS, DEFAULT_IGNORE_FILES
from alfrd_daemon.ingest.paths import is_ignored, merge_tags, tags_for
from alfrd_daemon.pgsafe import display_text


@pytest.mark.parametrize("path", [
    ".DS_Store", "._bill.pdf", ".bill.pdf.Xa81bC", "bill.pdf.part", "x.crdownload", "a.tmp",
    "~$report.docx", ".~lock.report.odt#", "Thumbs.db", "desktop.ini",
    ".stfolder/a.pdf", ".stversions/a.pdf", "@eaDir/a.pdf", "sub/.Spotlight-V100/x",
    ".Trashes/501/a.pdf", "__MACOSX/a.pdf", ".alfrd/claimed/host-1/a.pdf",
])
def test_default_ignores(path: str) -> None:
    assert is_ignored(path, DEFAULT_IGNORE_FILES, DEFAULT_IGNORE_DIRS)


@pytest.mark.parametrize("path", [
    "bill.pdf", "bills/2024/x.pdf", "notes.txt", "-rf.txt", "a b.txt", "partial.pdf",
    "tmp/x.pdf", "name with\nnewline.txt",
])
def test_not_ignored(path: str) -> None:
    assert not is_ignored(path, DEFAULT_IGNORE_FILES, DEFAULT_IGNORE_DIRS)


def test_tags_from_folders_nfc_and_deduplicated() -> None:
    nfd = "Rechnu\u0308ngen"  # ü written as u + combining diaeresis (a Mac's NFD)
    assert tags_for(f"{nfd}/2024/{nfd}/x.pdf", subdirs_as_tags=True) == ["Rechnüngen", "2024"]
    assert tags_for("x.pdf", subdirs_as_tags=True) == []
    assert tags_for("a/x.pdf", subdirs_as_tags=False) == []


def test_merge_tags_keeps_order_and_drops_blanks() -> None:
    assert merge_tags(["bills", "2024"], ["2024", " ", "utility"]) == ["bills", "2024", "utility"]


def test_display_text_escapes_invalid_utf8_and_keeps_the_rest() -> None:
    raw = os.fsdecode(b"caf\xe9 \xff.txt")
    assert display_text(raw) == "caf\\xe9 \\xff.txt"
    assert display_text("caf\u00e9.txt") == "caf\u00e9.txt"
    assert display_text("cafe\u0301.txt") == "cafe\u0301.txt"  # NFD kept as it was
