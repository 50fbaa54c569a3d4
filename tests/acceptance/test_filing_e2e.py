"""The question a personal archive is for, asked end to end: "the electricity bills of 2024".

A running daemon with one rule and OCR takes a text bill, a PDF bill, a photographed bill (OCR),
a bill of 2023 and a letter from someone else. Rules file them (type, correspondent), the
document's own date is read from each, and `alfrd list`/`alfrd search` with --type,
--correspondent, --date and --after/--before find exactly the 2024 bills, by prefix too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.helpers import DaemonProcess, query, run_cli, wait_for, write_config
from tests.ocr_samples import image_bytes, make_text_image
from tests.samples import make_pdf

RULES = [{"name": "electricity", "any": ["electricity", "strom"],
          "document_type": "bill", "correspondent": "Stadtwerke"}]
OCR = {"enabled": True, "workers": 1, "dpi": 150, "detect_orientation": False,
       "page_timeout_seconds": 20, "poll_seconds": 60}


def names(config: Path, *args: str) -> set[str]:
    rows: list[dict[str, Any]] = json.loads(run_cli(config, *args, "--json").stdout)
    return {row.get("name") or row["original_name"] for row in rows}  # search | list


def test_the_electricity_bills_of_2024(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url, rules={"inline": RULES}, ocr=OCR)
    inbox = tmp_path / "inbox"
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        (inbox / "march.txt").write_text("Stadtwerke electricity bill\nDate: 05.03.2024\n"
                                         "Amount due 84.20 EUR\n")
        (inbox / "june.pdf").write_bytes(make_pdf(["Electricity bill of 14 June 2024, "
                                                   "meter 4711"]))
        (inbox / "old.txt").write_text("Electricity bill\nDate: 12.11.2023\n")
        (inbox / "letter.txt").write_text("Dear neighbour, the party is on 01.06.2024\n")
        (inbox / "photo.png").write_bytes(image_bytes(make_text_image(
            "Electricity bill September 2, 2024 Stadtwerke", per_line=4), "png"))

        def filed() -> list[dict[str, Any]] | None:
            rows = query(db_url, "SELECT original_name, status, document_type, correspondent, "
                         "document_date::text AS date FROM documents ORDER BY 1")
            done = len(rows) == 5 and all(r["status"] == "extracted" for r in rows)
            return rows if done else None

        rows = wait_for(filed, 60, "five documents read (one by OCR)", alive=daemon.assert_alive)
        assert {r["original_name"]: (r["document_type"], r["correspondent"], r["date"])
                for r in rows} == {
            "june.pdf": ("bill", "Stadtwerke", "2024-06-14"),
            "letter.txt": (None, None, "2024-06-01"),
            "march.txt": ("bill", "Stadtwerke", "2024-03-05"),
            "old.txt": ("bill", "Stadtwerke", "2023-11-12"),
            "photo.png": ("bill", "Stadtwerke", "2024-09-02"),
        }
        bills_2024 = {"march.txt", "june.pdf", "photo.png"}
        assert names(config, "list", "--type", "bill", "--date", "2024") == bills_2024
        assert names(config, "list", "--correspondent", "stadtwerke",
                     "--after", "2024-01-01", "--before", "2024-12-31") == bills_2024
        assert names(config, "search", "electric", "--date", "2024") == bills_2024
        assert names(config, "search", "electricity", "--before", "2023-12-31") == {"old.txt"}
        assert names(config, "list", "--date", "2024-06") == {"june.pdf", "letter.txt"}
        assert names(config, "list", "--from", "2024-06-02", "--to", "2024-12-31") == \
            {"june.pdf", "photo.png"}
