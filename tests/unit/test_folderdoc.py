"""meta.json parsing: names from metadata never become paths."""

from __future__ import annotations

import json

import pytest

from alfrd_daemon.ingest.folderdoc import InvalidFolder, parse_meta

GOOD = {"id": "7b0c3f0e-9a8e-4f5c-9d61-2f4f3c2b1a00", "created_at": "2024-05-01T10:00:00Z",
        "documents": [{"file": "p2.txt", "type": "text", "order": 2},
                      {"file": "p1.jpg", "type": "image", "order": 1}],
        "metadata": {"source": "scanner", "tags": ["bills", 3, ""], "original_filename": "x"}}


def test_good_meta_sorted_by_order() -> None:
    meta = parse_meta(json.dumps(GOOD).encode())
    assert [p.file for p in meta.pages] == ["p1.jpg", "p2.txt"]
    assert meta.tags == ("bills",)
    assert meta.source == "scanner"
    assert meta.extra == {"original_filename": "x"}


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "a/b.txt", "..", ".",
                                  "", None, 5, "meta.json", "a\\b"])
def test_page_names_that_are_paths_are_refused(name: object) -> None:
    bad = {**GOOD, "documents": [{"file": name, "type": "text", "order": 1}]}
    with pytest.raises(InvalidFolder):
        parse_meta(json.dumps(bad).encode())


@pytest.mark.parametrize("raw", [b"{", b"[]", b"\xff\xfe", json.dumps({**GOOD, "id": "nope"}),
                                 json.dumps({**GOOD, "documents": []}),
                                 json.dumps({**GOOD, "documents": [{"file": "a", "order": "x"}]}),
                                 b" " * (1024 * 1024 + 1)])
def test_invalid_meta_is_refused_with_a_reason(raw: bytes | str) -> None:
    with pytest.raises(InvalidFolder) as err:
        parse_meta(raw.encode() if isinstance(raw, str) else raw)
    assert str(err.value)
