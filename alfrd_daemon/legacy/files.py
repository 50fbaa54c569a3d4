"""Finding an ALFRD document's files on this host and copying them into our store.

ALFRD recorded absolute paths on its own host; `--files-root` names where those files live
now. The import copies into the store rather than hard-linking: a link would share the inode
with the user's archive, so a later edit there would change a content-addressed file, and the
store's chmod would change the user's file mode.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from alfrd_daemon.ingest import folderdoc
from alfrd_daemon.ingest.store import SourceReadError, Store
from alfrd_daemon.legacy.mapping import FileFacts, parse_json

READ_CHUNK = 1024 * 1024
UNLIMITED = 1 << 62  # imported files are whatever the old archive held


def candidate_paths(recorded: str, files_root: Path | None, base_dir: Path,
                    *, min_parts: int = 2) -> list[Path]:
    """Where a path recorded by ALFRD may be now, most trustworthy first: the path itself,
    then under `files_root` with ever shorter tails of it. A file's tail keeps at least a
    folder and a name (min_parts=2), because a bare name such as raw.pdf would match some other
    document's file; a document folder's own name ({stem}_{time}) is distinctive enough."""
    old = PurePosixPath(recorded)
    found: list[Path] = []
    if old.is_absolute():
        found.append(Path(old))
    else:
        if files_root is not None:
            found.append(files_root / old)
        found.append(base_dir / old)
    parts = [p for p in old.parts if p not in ("/", "", ".")]
    if files_root is not None and ".." not in parts:
        for start in range(max(len(parts) - min_parts, 0) + 1):
            found.append(files_root.joinpath(*parts[start:]))
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


@dataclass(frozen=True)
class Copied:
    sha256: str
    size: int
    stored_path: str | None


class FileImporter:
    """Turns one ALFRD documents row into FileFacts: hashes its file(s) and, unless this is a
    dry run (store is None), copies them into the store."""

    def __init__(self, store: Store | None, *, files_root: Path | None, base_dir: Path,
                 fsync: bool = True):
        self.store = store
        self.files_root = files_root
        self.base_dir = base_dir
        self.fsync = fsync
        self.files_stored = 0

    def facts(self, row: Mapping[str, Any]) -> FileFacts:
        is_folder = row.get("file_type") == "folder" or (
            bool(row.get("folder_path")) and not row.get("raw_document_path"))
        return self._folder(row) if is_folder else self._file(row)

    # --- single files -----------------------------------------------------------------------
    def _file(self, row: Mapping[str, Any]) -> FileFacts:
        recorded = [p for p in (row.get("raw_document_path"), row.get("original_path"))
                    if isinstance(p, str) and p]
        if not recorded:
            return FileFacts(missing=("(no file path recorded)",))
        for old in recorded:
            path = self._find(old, want_dir=False)
            if path is not None:
                try:
                    copied = self._copy(path)
                except OSError as exc:
                    return FileFacts(missing=(f"{old} (unreadable: {exc.strerror or exc})",))
                return FileFacts(sha256=copied.sha256, stored_path=copied.stored_path,
                                 size=copied.size)
        return FileFacts(missing=(recorded[0],))

    # --- ALFRD document folders -------------------------------------------------------------
    def _folder(self, row: Mapping[str, Any]) -> FileFacts:
        old = row.get("folder_path") or row.get("original_path")
        if not isinstance(old, str) or not old:
            return FileFacts(missing=("(no folder path recorded)",))
        folder = self._find(old, want_dir=True)
        if folder is None:
            return FileFacts(missing=(old,))
        try:
            meta = self._meta(folder, row.get("folder_metadata"))
        except folderdoc.InvalidFolder as exc:
            return FileFacts(missing=(f"{old}/{folderdoc.META_NAME} ({exc})",))
        pages: list[dict[str, Any]] = []
        hashed: list[tuple[folderdoc.Page, str]] = []
        missing: list[str] = []
        for page in meta.pages:
            entry: dict[str, Any] = {"file": page.file, "type": page.type, "order": page.order}
            path = folder / page.file
            try:
                if not _is_regular(path):
                    raise FileNotFoundError(page.file)
                copied = self._copy(path)
            except FileNotFoundError:
                missing.append(f"{old}/{page.file}")
                entry["missing"] = True
            except OSError as exc:
                missing.append(f"{old}/{page.file} (unreadable: {exc.strerror or exc})")
                entry["missing"] = True
            else:
                entry.update(sha256=copied.sha256, size=copied.size,
                             stored_path=copied.stored_path)
                hashed.append((page, copied.sha256))
            pages.append(entry)
        folder_meta = {"id": meta.id, "created_at": meta.created_at, "source": meta.source,
                       "extra": meta.extra, "pages": pages}
        present = [p for p in pages if not p.get("missing")]
        # A folder's identity is all of its pages (the daemon's folder_digest): with a page
        # missing it has none, so sha256 stays NULL rather than naming some other content.
        return FileFacts(
            sha256=None if missing else folderdoc.folder_digest(hashed),
            stored_path=present[0]["stored_path"] if present else None,
            size=sum(p["size"] for p in present) if present else None,
            missing=tuple(missing), folder=folder_meta, folder_tags=meta.tags)

    def _meta(self, folder: Path, recorded_meta: Any) -> folderdoc.FolderMeta:
        """meta.json from the folder; ALFRD's parsed copy in the row when the file is gone."""
        meta_path = folder / folderdoc.META_NAME
        if _is_regular(meta_path):
            with open(meta_path, "rb") as f:
                return folderdoc.parse_meta(f.read(folderdoc.MAX_META_BYTES + 1))
        parsed = parse_json(recorded_meta)
        if isinstance(parsed, dict):
            return folderdoc.parse_meta(json.dumps(parsed).encode())
        raise folderdoc.InvalidFolder("meta.json is missing and the row has no folder_metadata")

    # --- helpers ----------------------------------------------------------------------------
    def _find(self, recorded: str, *, want_dir: bool) -> Path | None:
        for path in candidate_paths(recorded, self.files_root, self.base_dir,
                                    min_parts=1 if want_dir else 2):
            try:
                st = os.stat(path)
            except (OSError, ValueError):
                continue
            if (stat.S_ISDIR if want_dir else stat.S_ISREG)(st.st_mode):
                return path
        return None

    def _copy(self, path: Path) -> Copied:
        """Hash while copying into the store (a private copy of exactly the bytes hashed). A
        dry run only hashes."""
        # O_NONBLOCK: a FIFO that replaced a file since the stat must not hang the import.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as src:
            if not stat.S_ISREG(os.fstat(src.fileno()).st_mode):
                raise FileNotFoundError(str(path))
            if self.store is None:
                sha, size = _hash_stream(src)
                return Copied(sha, size, None)
            try:
                incoming = self.store.receive(src.fileno(), limit=UNLIMITED, sync=self.fsync)
            except SourceReadError as exc:
                raise exc.error from exc
            stored = self.store.adopt(incoming, sync=self.fsync)
        self.files_stored += 1
        return Copied(incoming.sha256, incoming.size, stored)


def _hash_stream(src: Any) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    while chunk := src.read(READ_CHUNK):
        h.update(chunk)
        size += len(chunk)
    return h.hexdigest(), size


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False
