"""Office files through a running daemon: a docx and an xlsx become searchable, a zip bomb
ends in failed/ with its reason, the daemon keeps going, and a docx stored before office files
were read gets its text from the next reindex."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import docx
import openpyxl
import pytest

from tests.helpers import (
    DaemonProcess,
    claimed_files,
    inbox_files,
    query,
    run_cli,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.timeout(120)


def test_office_files_are_searchable_and_a_zip_bomb_fails(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    inbox = tmp_path / "inbox"
    failed = tmp_path / "var" / "failed"
    staging = tmp_path / "staging"
    staging.mkdir()

    letter = docx.Document()
    letter.add_paragraph("Invoice from the flamingo florist")
    letter.sections[0].footer.paragraphs[0].text = "footer marmoset"
    letter.save(staging / "letter.docx")
    book = openpyxl.Workbook()
    book.active.append(["iguana supplies", 314])
    book.create_sheet("Second").append(["second sheet jerboa"])
    book.save(staging / "ledger.xlsx")
    with zipfile.ZipFile(staging / "letter.docx") as good, zipfile.ZipFile(
            staging / "bomb.docx", "w", zipfile.ZIP_DEFLATED) as bomb:
        for info in good.infolist():
            bomb.writestr(info.filename, good.read(info.filename))
        bomb.writestr("word/media/zeros.bin", bytes(64 << 20))

    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        for name in ("letter.docx", "ledger.xlsx", "bomb.docx"):
            (staging / name).rename(inbox / name)
        wait_for(lambda: not inbox_files(inbox) and not claimed_files(inbox), 60,
                 "inbox to empty", alive=daemon.assert_alive)
        rows = {r["original_name"]: r for r in query(
            db_url, "SELECT original_name, status, extractor, error FROM documents")}
        assert rows["letter.docx"]["status"] == "extracted"
        assert rows["letter.docx"]["extractor"] == "docx/1"
        assert rows["ledger.xlsx"]["extractor"] == "xlsx/1"
        assert rows["bomb.docx"]["status"] == "failed"
        for words, name in (("flamingo florist", "letter.docx"), ("marmoset", "letter.docx"),
                            ("iguana", "ledger.xlsx"), ("jerboa", "ledger.xlsx")):
            found = json.loads(run_cli(config, "search", words, "--json").stdout)
            assert [hit["name"] for hit in found] == [name], words
        note = json.loads((failed / "bomb.docx.error").read_text())
        assert "zip bomb" in note["reason"] and "word/media/zeros.bin" in note["reason"]
        assert (failed / "bomb.docx").stat().st_size > 0

        # A docx stored before office files had a reader: pending, no text, extractor none/1.
        # The next reindex reads it again from the store.
        query(db_url, "UPDATE documents SET status = 'pending', extracted_text = '', "
                      "extractor = 'none/1', metadata = '{}' "
                      "WHERE original_name = 'letter.docx' RETURNING id")
        assert json.loads(run_cli(config, "search", "flamingo", "--json").stdout) == []
        details = json.loads(run_cli(config, "jobs", "run", "reindex", "--json").stdout)
        assert details["details"]["reextracted"] == 1, details
        [row] = query(db_url, "SELECT status, extractor FROM documents "
                              "WHERE original_name = 'letter.docx'")
        assert row == {"status": "extracted", "extractor": "docx/1"}
        found = json.loads(run_cli(config, "search", "flamingo", "--json").stdout)
        assert [hit["name"] for hit in found] == ["letter.docx"]
        daemon.assert_alive()
