"""The `alfrd` argument types (pure): each refuses what would fail later, saying what was
expected; the exit codes README.md documents are the ones cli/common.py defines."""

from __future__ import annotations

import argparse
import io
import json
import re
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from alfrd_daemon.cli.common import (
    EXIT_CODES,
    conninfo_arg,
    document_id,
    print_json,
    seconds_arg,
    shown,
    tag_arg,
    utf8_text,
    whole_number,
)

REPO = Path(__file__).resolve().parents[2]
BAD = argparse.ArgumentTypeError


def argv(raw: bytes) -> str:
    """What Python makes of bytes in argv."""
    return raw.decode("utf-8", "surrogateescape")


@pytest.mark.parametrize("text", ["-1", "0", "10001", "9" * 5000, "nan", "1.5", "", "ten",
                                  argv(b"\xff")])
def test_whole_numbers_out_of_range_are_refused(text: str) -> None:
    with pytest.raises(BAD, match="expected a whole number from 1 to 10000"):
        whole_number(1, 10000)(text)


def test_whole_numbers_in_range() -> None:
    assert whole_number(1, 10)(" 10 ") == 10 and whole_number(0, 5)("0") == 0


@pytest.mark.parametrize("text", ["nan", "inf", "-inf", "-1", "1e400", "x"])
def test_seconds_out_of_range_are_refused(text: str) -> None:
    with pytest.raises(BAD, match="expected a number of seconds from 0 to 60"):
        seconds_arg(0, 60)(text)


def test_text_that_is_not_utf8_names_the_byte() -> None:
    with pytest.raises(BAD) as err:
        utf8_text(argv(b"caf\xe9"))
    assert str(err.value).startswith("got 'caf\\xe9', expected UTF-8 text (byte 0xe9 at "
                                     "character 4")
    assert utf8_text("café") == "café"
    for blank in ("", "  "):
        with pytest.raises(BAD):
            utf8_text(blank)


def test_tags_take_the_form_the_daemon_stores() -> None:
    assert tag_arg(argv(b"\xff")) == "\\xff"  # rules.display_text of a folder named b'\xff'
    assert tag_arg("Cafe\u0301 ") == "Café"  # NFD typed on a Mac: NFC, stripped
    with pytest.raises(BAD):
        tag_arg(" ")


@pytest.mark.parametrize("text", ["%", "_", "", "-", "---", "g", "0" * 37, argv(b"ab\xff"),
                                  "ab cd"])
def test_document_ids_are_hex_and_dashes(text: str) -> None:
    with pytest.raises(BAD, match="expected a document id"):
        document_id(text)


def test_document_id_prefixes_are_lowered() -> None:
    assert document_id(" 3F2A ") == "3f2a"


@pytest.mark.parametrize("text", ["", "not a url", argv(b"postgresql://h/\xff")])
def test_connection_strings_are_checked(text: str) -> None:
    with pytest.raises(BAD, match="expected"):
        conninfo_arg(text)


def test_shown_values_stay_on_one_line_without_passwords() -> None:
    assert shown(argv(b"a\xffb\n")) == "'a\\xffb\\n'"
    assert "hunter2" not in shown("postgresql://u:hunter2@h/db")


def test_json_with_names_that_are_not_utf8_is_valid_utf8() -> None:
    name = argv(b"scan\xff.pdf")
    out = io.StringIO()
    with redirect_stdout(out):
        print_json({"name": name})
    text = out.getvalue()
    text.encode("utf-8")  # no lone surrogates left
    assert json.loads(text) == {"name": name}


def test_the_readme_documents_every_exit_code() -> None:
    readme = (REPO / "README.md").read_text()
    table = dict(re.findall(r"^\| (\d+) +\| (.+?) \|$", readme, re.MULTILINE))
    assert {int(code) for code in table} == set(EXIT_CODES)
