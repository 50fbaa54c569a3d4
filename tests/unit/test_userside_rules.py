"""The pure parts of the user's commands: names a copy gets, how `alfrd tag` reads its
words and what it does to the three tag lists, and which files a purged row owns."""

from __future__ import annotations

import argparse
import os

import pytest

from alfrd_daemon.cli.copyout import numbered, safe_name
from alfrd_daemon.cli.edit import Usage, apply_tags, date_or_none, parse_changes
from alfrd_daemon.jobs.trash import files_of
from alfrd_daemon.pgsafe import display_text


@pytest.mark.parametrize(("name", "expected"), [
    ("invoice.pdf", "invoice.pdf"),
    ("-rf.txt", "rf.txt"),
    (".bashrc", "bashrc"),
    ("../../etc/passwd", "_.._etc_passwd"),
    ("a/b.txt", "a_b.txt"),
    ("tab\there\n.txt", "tab_here_.txt"),
    ("...", "fallback"),
    ("", "fallback"),
    (" - ", "fallback"),
])
def test_safe_names(name: str, expected: str) -> None:
    assert safe_name(name, "fallback") == expected


def test_a_name_that_was_not_utf8_gets_its_bytes_back_and_long_names_keep_their_suffix() -> None:
    raw = os.fsdecode(b"caf\xe9.txt")
    assert safe_name(display_text(raw), "x") == raw
    long = "é" * 300 + ".pdf"
    got = safe_name(long, "x")
    assert len(os.fsencode(got)) <= 255 and got.endswith(".pdf")


def test_numbered_copies() -> None:
    assert numbered("report.pdf", 1) == "report.pdf"
    assert numbered("report.pdf", 2) == "report (2).pdf"
    assert numbered("README", 3) == "README (3)"
    assert numbered("archive.tar.gz", 2) == "archive.tar (2).gz"


def test_tag_words_and_trailing_options() -> None:
    changes, as_json, config = parse_changes(["+a", "-b", "--json", "--config", "x.yaml"])
    assert changes == [("+", "a"), ("-", "b")] and as_json and config == "x.yaml"
    # -c is a tag named c: only the long options are read after the id.
    assert parse_changes(["-c"])[0] == [("-", "c")]
    assert parse_changes(["--", "--json"])[0] == [("-", "-json")]
    for bad in (["a"], [], ["+"], ["+ "], ["--config"]):
        with pytest.raises(Usage):
            parse_changes(bad)


def test_tag_changes_and_the_three_lists() -> None:
    row = {"id": "x", "tags": ["inbox-folder", "bills", "old"], "rule_tags": ["bills", "old"],
           "user_removed_tags": ["spam"], "user_fields": ["title"]}
    out = apply_tags(row, [("-", "bills"), ("+", "spam"), ("+", "old")])
    assert out["tags"] == ["inbox-folder", "old", "spam"]
    assert out["rule_tags"] == []  # "old" is the user's now, "bills" is gone
    assert out["user_removed_tags"] == ["bills"]
    assert out["user_fields"] == ["title", "tags"]
    assert apply_tags(out, [("+", "spam")])["tags"] == ["inbox-folder", "old", "spam"]


def test_dates() -> None:
    assert date_or_none("none") is None and str(date_or_none("2024-03-05")) == "2024-03-05"
    for bad in ("2024-13-01", "yesterday", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            date_or_none(bad)


def test_files_of_a_folder_document() -> None:
    row = {"stored_path": "ab/1", "metadata": {"folder": {"pages": [
        {"stored_path": "ab/1"}, {"stored_path": "cd/2"}, {"file": "no path"}]}}}
    assert files_of(row) == ["ab/1", "cd/2"]
    assert files_of({"stored_path": None, "metadata": None}) == []
