"""ALFRD document folders from the inbox: a folder holding meta.json and its pages becomes one
document row. Each page is read, extracted and stored by its own content; the row's text is the
pages' text, its identity the folder digest (folderdoc.py), its id the one meta.json gives."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

from alfrd_daemon.db.pool import Database
from alfrd_daemon.extract.api import Extraction
from alfrd_daemon.extract.sniff import FOLDER
from alfrd_daemon.ingest import folderdoc, rows
from alfrd_daemon.ingest.claim import ClaimArea
from alfrd_daemon.ingest.errors import Permanent
from alfrd_daemon.ingest.paths import merge_tags
from alfrd_daemon.ingest.reading import Reader, ReadResult, kind_of
from alfrd_daemon.ingest.rows import RowBuilder
from alfrd_daemon.ingest.work import Outcome
from alfrd_daemon.pgsafe import display_text


class FolderIngestor:
    def __init__(self, *, db: Database, claims: ClaimArea, reader: Reader,
                 builder: RowBuilder):
        self.db = db
        self.claims = claims
        self.reader = reader
        self.builder = builder

    def process(self, relpath: str, path: Path) -> Outcome:
        """Ingest the claimed folder at `path`; a problem with any page fails the whole
        folder (Permanent), and nothing of it is stored."""
        pages: list[tuple[folderdoc.Page, ReadResult, Extraction]] = []
        reads: list[ReadResult] = []  # each page's private copy, removed unless adopted
        try:
            try:
                meta = read_meta(path)
                for page in meta.pages:
                    read = self.reader.read(path / page.file)
                    reads.append(read)
                    pages.append((page, read, self.reader.extract(read.incoming.path,
                                                                  page.file)))
            except folderdoc.InvalidFolder as exc:
                raise Permanent(f"invalid document folder: {exc}") from exc
            except Permanent as exc:
                raise Permanent(f"document folder page: {exc.reason}") from exc
            page_meta: list[dict[str, Any]] = []
            for page, read, extraction in pages:
                stored = self.reader.adopt(read)
                page_meta.append({"file": display_text(page.file), "type": page.type,
                                  "order": page.order, "sha256": read.sha256,
                                  "size": read.size, "mime_type": extraction.mime_type,
                                  "stored_path": stored, "status": extraction.status})
        finally:
            for read in reads:
                self.reader.store.discard(read.incoming)  # an adopted copy is gone already
        digest = folderdoc.folder_digest([(p, r.sha256) for p, r, _ in pages])
        text = "\n\n".join(x.text for _, _, x in pages if x.text)
        status = "extracted" if all(x.status == "extracted" for *_, x in pages) else "pending"
        combined = Extraction(text=text, mime_type=FOLDER, status=status,
                              extractor="folder/1+" + "+".join(sorted({x.extractor for *_, x
                                                                       in pages})))
        first_key = pages[0][1].claim_key
        metadata = {"folder": {"id": meta.id, "created_at": meta.created_at,
                               "source": meta.source, "extra": meta.extra, "pages": page_meta}}
        prepared = self.builder.prepare(
            relpath, sha256=digest, size=sum(r.size for _, r, _ in pages),
            claim_key=f"folder:{meta.id}:{first_key}", extraction=combined,
            stored_path=page_meta[0]["stored_path"], doc_id=meta.id,
            tags=merge_tags(self.builder.tags(relpath), list(meta.tags)),
            metadata=metadata)
        outcome, document_id = rows.write_one(self.db, prepared)
        self.claims.release(relpath)
        rows.log_outcome(outcome, relpath, digest, document_id)
        return outcome


def read_meta(folder: Path) -> folderdoc.FolderMeta:
    """meta.json of a claimed folder, read without following links or blocking, and each
    page it names checked to be a regular file in the folder."""
    meta_path = folder / folderdoc.META_NAME
    st = os.lstat(meta_path)
    if not stat.S_ISREG(st.st_mode):
        raise folderdoc.InvalidFolder("meta.json is not a regular file")
    if st.st_size > folderdoc.MAX_META_BYTES:
        raise folderdoc.InvalidFolder(
            f"meta.json is {st.st_size} bytes, more than {folderdoc.MAX_META_BYTES}")
    fd = os.open(meta_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        raw = os.read(fd, folderdoc.MAX_META_BYTES + 1)
    finally:
        os.close(fd)
    meta = folderdoc.parse_meta(raw)
    for page in meta.pages:
        try:
            page_st = os.lstat(folder / page.file)
        except FileNotFoundError as exc:
            raise folderdoc.InvalidFolder(f"page {page.file!r} is missing") from exc
        if not stat.S_ISREG(page_st.st_mode):
            raise folderdoc.InvalidFolder(f"page {page.file!r} is {kind_of(page_st.st_mode)}")
    return meta
