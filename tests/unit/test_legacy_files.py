"""Finding ALFRD's files and bringing them into the store without touching the originals."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from alfrd_daemon.ingest.folderdoc import Page, folder_digest
from alfrd_daemon.ingest.store import Store
from alfrd_daemon.legacy.files import FileImporter, candidate_paths


def test_candidates_try_the_recorded_path_then_tails_under_files_root() -> None:
    found = candidate_paths("/home/u/alfrd/docs/a_1/raw.pdf", Path("/mnt/new"), Path("/db"))
    assert found == [Path("/home/u/alfrd/docs/a_1/raw.pdf"),
                     Path("/mnt/new/home/u/alfrd/docs/a_1/raw.pdf"),
                     Path("/mnt/new/u/alfrd/docs/a_1/raw.pdf"),
                     Path("/mnt/new/alfrd/docs/a_1/raw.pdf"),
                     Path("/mnt/new/docs/a_1/raw.pdf"),
                     Path("/mnt/new/a_1/raw.pdf")]  # never the bare name raw.pdf


def test_a_folder_may_match_by_its_own_name() -> None:
    found = candidate_paths("/old/inbox/scan_20240101_000000", Path("/new"), Path("/db"),
                            min_parts=1)
    assert found[-1] == Path("/new/scan_20240101_000000")


def test_relative_paths_resolve_against_files_root_then_the_database_folder() -> None:
    assert candidate_paths("docs/a/x.pdf", None, Path("/db")) == [Path("/db/docs/a/x.pdf")]
    assert candidate_paths("docs/a/x.pdf", Path("/r"), Path("/db"))[:2] == [
        Path("/r/docs/a/x.pdf"), Path("/db/docs/a/x.pdf")]
    # A path climbing out with .. is not re-based under files_root.
    assert candidate_paths("../../etc/passwd", Path("/r"), Path("/db")) == [
        Path("/r/../../etc/passwd"), Path("/db/../../etc/passwd")]


def test_files_are_copied_not_linked_and_originals_keep_their_mode(tmp_path: Path) -> None:
    original = tmp_path / "old" / "raw.pdf"
    original.parent.mkdir()
    original.write_bytes(b"content")
    original.chmod(0o664)
    store = Store(tmp_path / "store", fsync=False)
    store.open()
    facts = FileImporter(store, files_root=None, base_dir=tmp_path).facts(
        {"file_type": "pdf", "raw_document_path": str(original)})
    assert facts.sha256 == hashlib.sha256(b"content").hexdigest()
    stored = store.path(facts.sha256)
    assert stored.read_bytes() == b"content" and facts.size == 7
    assert stored.stat().st_ino != original.stat().st_ino
    assert original.stat().st_mode & 0o777 == 0o664
    assert not [p for p in store.root.iterdir() if p.name.startswith(".incoming")]


def test_dry_run_hashes_but_stores_nothing(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.txt").write_bytes(b"x")
    importer = FileImporter(None, files_root=None, base_dir=tmp_path)
    facts = importer.facts({"file_type": "txt", "raw_document_path": "a/f.txt"})
    assert facts.sha256 == hashlib.sha256(b"x").hexdigest() and facts.stored_path is None


def test_missing_files_and_non_regular_files_are_reported(tmp_path: Path) -> None:
    fifo = tmp_path / "d" / "pipe"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    importer = FileImporter(None, files_root=None, base_dir=tmp_path)
    assert importer.facts({"raw_document_path": str(fifo)}).missing == (str(fifo),)
    assert importer.facts({"raw_document_path": None}).missing == ("(no file path recorded)",)


def test_folder_documents_from_meta_json_or_the_recorded_copy(tmp_path: Path) -> None:
    folder = tmp_path / "scan_1"
    folder.mkdir()
    (folder / "p1.txt").write_bytes(b"one")
    meta = {"id": "7b0c3f0e-9a8e-4f5c-9d61-2f4f3c2b1a00",
            "documents": [{"file": "p1.txt", "type": "text", "order": 1},
                          {"file": "p2.jpg", "type": "image", "order": 2}],
            "metadata": {"tags": ["bank"]}}
    importer = FileImporter(None, files_root=None, base_dir=tmp_path)
    row = {"file_type": "folder", "folder_path": str(folder), "folder_metadata": json.dumps(meta)}

    partial = importer.facts(row)  # no meta.json on disk: ALFRD's parsed copy is used
    assert partial.sha256 is None and partial.missing == (f"{folder}/p2.jpg",)
    assert partial.folder_tags == ("bank",) and partial.size == 3

    (folder / "p2.jpg").write_bytes(b"two")
    (folder / "meta.json").write_text(json.dumps(meta))
    whole = importer.facts({**row, "folder_metadata": None})
    pages = whole.folder["pages"] if whole.folder else []
    assert whole.missing == () and whole.sha256 == folder_digest(
        [(Page(p["file"], p["type"], p["order"]), p["sha256"]) for p in pages])


def test_page_names_from_metadata_never_escape_the_folder(tmp_path: Path) -> None:
    folder = tmp_path / "scan_2"
    folder.mkdir()
    (tmp_path / "secret").write_bytes(b"s")
    meta = {"id": "7b0c3f0e-9a8e-4f5c-9d61-2f4f3c2b1a00",
            "documents": [{"file": "../secret", "type": "text", "order": 1}]}
    (folder / "meta.json").write_text(json.dumps(meta))
    facts = FileImporter(None, files_root=None, base_dir=tmp_path).facts(
        {"file_type": "folder", "folder_path": str(folder)})
    assert facts.sha256 is None and "meta.json" in facts.missing[0]
