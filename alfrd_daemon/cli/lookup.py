"""Finding the document a user's command names (an id or the start of one), and the file of
it that this host can read: the rows of a shared database may be held by other hosts' stores.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import DictRow

from alfrd_daemon.cli.common import local_store_id
from alfrd_daemon.config.settings import Settings
from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.ingest.reconcile import undisplay

Q = load_named_queries("userside.sql")


class NotFound(Exception):
    """No document, or more than one, matches what the user typed (the message says which)."""


def find_document(conn: psycopg.Connection[DictRow], ident: str) -> dict[str, Any]:
    rows = conn.execute(Q["find_document"], {"id": ident, "prefix": ident + "%"}).fetchall()
    if len(rows) != 1:
        raise NotFound(f"{'no document' if not rows else 'more than one document'} "
                       f"matches {ident!r}")
    return rows[0]


@dataclass(frozen=True)
class Part:
    """One stored file of a document: the document itself, or a page of a document folder."""

    name: str          # the name it arrived under, as the database shows it
    stored_path: str   # relative to the store (or failed/<name>)
    sha256: str | None
    size: int | None


def parts_of(doc: dict[str, Any]) -> list[Part]:
    """The files a document is made of: a document folder (metadata.folder.pages) is its pages
    in their order, anything else its one stored file."""
    pages = ((doc.get("metadata") or {}).get("folder") or {}).get("pages")
    if isinstance(pages, list) and pages:
        ordered = sorted((p for p in pages if isinstance(p, dict) and p.get("stored_path")),
                         key=lambda p: (p.get("order") is None, p.get("order") or 0))
        return [Part(str(p.get("file") or p["stored_path"]), str(p["stored_path"]),
                     p.get("sha256"), p.get("size")) for p in ordered]
    if not doc.get("stored_path"):
        return []
    return [Part(doc["original_name"], doc["stored_path"], doc["sha256"], doc["size_bytes"])]


def is_folder(doc: dict[str, Any]) -> bool:
    return isinstance(((doc.get("metadata") or {}).get("folder") or {}).get("pages"), list)


class NotHere(Exception):
    """The document's file is not readable on this host: held by another host's store, or
    missing here. The message says where it is, as far as the database knows."""


def local_file(settings: Settings, doc: dict[str, Any], part: Part) -> Path:
    """Where this host holds `part` of `doc`. Raises NotHere."""
    ident = str(doc["id"])
    if part.stored_path.startswith("failed/"):
        name = part.stored_path[len("failed/"):]
        for candidate in (settings.failed_path / name, settings.failed_path / undisplay(name)):
            if os.path.lexists(candidate):
                return candidate
        raise NotHere(f"document {ident}: its file {part.stored_path} is not in this host's "
                      f"failed folder {settings.failed_path} (another host's daemon may have "
                      "failed it)")
    path = settings.store_path / part.stored_path
    if doc["store_id"] is not None:
        local_id, problem = local_store_id(settings)
        if problem is not None:
            raise NotHere(f"document {ident}: cannot read this host's store identity: {problem}")
        if str(doc["store_id"]) != local_id:
            raise NotHere(
                f"document {ident} is held by store {doc['store_id']} on host "
                f"{doc['store_hostname']} (path {doc['store_path']}), not by this host's store "
                f"{settings.store_path}: run the command on {doc['store_hostname']}")
    elif not path.exists():
        raise NotHere(f"document {ident}: its file {path} is not in this host's store (the row "
                      "is from before stores had an identity; another host may hold it)")
    return path
