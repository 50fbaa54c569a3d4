"""ALFRD's document-folder format: a folder holding meta.json plus page files is one document.

Pure validation: names from meta.json never become paths unless they are a plain file name
that exists inside the folder itself.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

MAX_META_BYTES = 1024 * 1024
META_NAME = "meta.json"


class InvalidFolder(Exception):
    """meta.json is missing, unparsable or names files it may not; `str()` says which."""


@dataclass(frozen=True)
class Page:
    file: str
    type: str
    order: int


@dataclass(frozen=True)
class FolderMeta:
    id: str
    created_at: str | None
    pages: tuple[Page, ...]
    source: str | None
    tags: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict)


def safe_page_name(name: object) -> str:
    if not isinstance(name, str) or not name or name in (".", ".."):
        raise InvalidFolder(f"page file name {name!r} is not a plain file name")
    if "/" in name or "\\" in name or "\x00" in name or name == META_NAME:
        raise InvalidFolder(f"page file name {name!r} is not a plain file name in the folder")
    return name


def parse_meta(raw: bytes) -> FolderMeta:
    if len(raw) > MAX_META_BYTES:
        raise InvalidFolder(f"meta.json is {len(raw)} bytes, more than {MAX_META_BYTES}")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidFolder(f"meta.json is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidFolder("meta.json must hold a JSON object")
    try:
        doc_id = str(uuid.UUID(str(data.get("id"))))
    except ValueError as exc:
        raise InvalidFolder(f"meta.json id {data.get('id')!r} is not a UUID") from exc
    docs = data.get("documents")
    if not isinstance(docs, list) or not docs:
        raise InvalidFolder("meta.json 'documents' must be a non-empty list")
    pages = []
    for i, entry in enumerate(docs):
        if not isinstance(entry, dict):
            raise InvalidFolder(f"meta.json documents[{i}] must be an object")
        order = entry.get("order", i)
        if isinstance(order, bool) or not isinstance(order, int):
            raise InvalidFolder(f"meta.json documents[{i}].order must be a whole number")
        pages.append(Page(safe_page_name(entry.get("file")), str(entry.get("type", "")), order))
    if len({p.file for p in pages}) != len(pages):
        raise InvalidFolder("meta.json lists the same page file twice")
    raw_meta = data.get("metadata")
    meta: dict[str, Any] = raw_meta if isinstance(raw_meta, dict) else {}
    raw_tags = meta.get("tags")
    tags: list[Any] = raw_tags if isinstance(raw_tags, list) else []
    created = data.get("created_at")
    return FolderMeta(
        id=doc_id,
        created_at=created if isinstance(created, str) else None,
        pages=tuple(sorted(pages, key=lambda p: p.order)),
        source=meta.get("source") if isinstance(meta.get("source"), str) else None,
        tags=tuple(t for t in tags if isinstance(t, str) and t.strip()),
        extra={k: v for k, v in meta.items() if k not in ("tags", "source")},
    )


def folder_digest(page_hashes: list[tuple[Page, str]]) -> str:
    """The folder's content identity: its pages' names, order and content."""
    h = hashlib.sha256(b"alfrd-folder-v1\n")
    for page, sha in page_hashes:
        h.update(f"{page.order}\t{sha}\t{page.file}\n".encode())
    return h.hexdigest()
