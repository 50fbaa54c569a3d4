"""Checks on a zip container (OOXML, ODF) before any reader opens it.

The office readers unpack whole members into memory and never ask how big they are, so a zip
bomb, a container of a million members, or one member listed a thousand times must be refused
from the central directory alone, which costs no decompression. The declared sizes can be
trusted that far: Python's zipfile never returns more bytes of a member than its declared size
(and fails on the CRC when the data disagrees), so a member cannot grow past what is checked here.

Runs in the extractor child, next to the readers; a refusal is one sentence for `failed/`.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

MAX_MEMBERS = 20_000
# All members together, as declared, uncompressed: more than this only when the container as a
# whole is not compressed much more than XML is (a 600 MB deck of videos is fine, memory limit
# permitting; a few MB that unpack to gigabytes are not).
MAX_TOTAL_BYTES = 512 * 1024 * 1024
MAX_TOTAL_RATIO = 25
# One XML part: the readers build a tree of several times its size in memory.
MAX_XML_MEMBER_BYTES = 256 * 1024 * 1024
_XML_SUFFIXES = frozenset({".xml", ".rels", ".vml"})
# XML compresses well (a plain sheet ~20:1, a very repetitive one ~100:1); zeros reach 1000:1.
MAX_RATIO = 200
RATIO_FLOOR_BYTES = 1024 * 1024  # small members may have any ratio: they cannot hurt
MAX_NAME_CHARS = 1024
_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
_ARCHIVE_SUFFIXES = frozenset({".zip", ".jar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar",
                               ".tar", ".docx", ".xlsx", ".pptx", ".docm", ".xlsm", ".pptm",
                               ".odt", ".ods", ".odp"})
# Where OOXML and ODF keep embedded objects; those are listed, never opened by the readers.
_EMBEDDING_FOLDERS = ("embeddings", "Object ", "ObjectReplacements")


class ZipRefused(Exception):
    """The container is not safe (or not possible) to open; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ZipSummary:
    members: int
    uncompressed_bytes: int
    embedded_archives: int


def check_zip(path: str) -> ZipSummary:
    """The container's summary, or ZipRefused with the first problem found."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except zipfile.BadZipFile as exc:
        raise ZipRefused(f"not a valid zip container: {exc}") from exc
    except (EOFError, ValueError, NotImplementedError) as exc:
        raise ZipRefused(f"not a valid zip container: {type(exc).__name__}") from exc
    return check_members(infos, os.path.getsize(path))


def check_members(infos: list[zipfile.ZipInfo], archive_bytes: int) -> ZipSummary:
    if not infos:
        raise ZipRefused("the zip container is empty")
    if len(infos) > MAX_MEMBERS:
        raise ZipRefused(f"the zip container has {len(infos)} members (limit {MAX_MEMBERS})")
    total = embedded = 0
    names: set[str] = set()
    offsets: set[int] = set()
    for info in infos:
        _check_name(info.filename, names)
        if info.header_offset in offsets:
            # Overlapping members: one compressed stream counted many times over.
            raise ZipRefused(f"zip members overlap (at {info.filename!r})")
        offsets.add(info.header_offset)
        if info.flag_bits & 0x1:
            raise ZipRefused("the document is encrypted (password-protected)")
        if info.compress_type not in _METHODS:
            raise ZipRefused(f"zip member {info.filename!r} uses compression method "
                             f"{info.compress_type}, which office files do not use")
        _check_size(info)
        total += info.file_size
        if total > MAX_TOTAL_BYTES and total > MAX_TOTAL_RATIO * archive_bytes:
            raise ZipRefused(f"the zip container of {_mb(archive_bytes)} unpacks to more than "
                             f"{_mb(total)} (a zip bomb?)")
        if PurePosixPath(info.filename).suffix.lower() in _ARCHIVE_SUFFIXES:
            if not any(part.startswith(_EMBEDDING_FOLDERS)
                       for part in PurePosixPath(info.filename).parts[:-1]):
                raise ZipRefused(f"the zip container holds another archive, "
                                 f"{info.filename!r}, outside its embedded objects")
            embedded += 1
    return ZipSummary(len(infos), total, embedded)


def _check_name(name: str, seen: set[str]) -> None:
    if len(name) > MAX_NAME_CHARS:
        raise ZipRefused(f"a zip member name is {len(name)} characters long")
    if "\x00" in name or name.startswith(("/", "\\")) or ".." in PurePosixPath(
            name.replace("\\", "/")).parts:
        raise ZipRefused(f"zip member name {name[:100]!r} is not a relative path")
    if name in seen:
        # Two members of one name: readers disagree on which one counts.
        raise ZipRefused(f"zip member {name[:100]!r} appears twice")
    seen.add(name)


def _check_size(info: zipfile.ZipInfo) -> None:
    if (info.file_size > MAX_XML_MEMBER_BYTES
            and PurePosixPath(info.filename).suffix.lower() in _XML_SUFFIXES):
        raise ZipRefused(f"zip member {info.filename!r} unpacks to {_mb(info.file_size)} of "
                         f"XML (limit {_mb(MAX_XML_MEMBER_BYTES)})")
    if info.file_size > RATIO_FLOOR_BYTES and (
            info.file_size > MAX_RATIO * max(1, info.compress_size)):
        ratio = info.file_size // max(1, info.compress_size)
        raise ZipRefused(f"zip member {info.filename!r} is compressed {ratio}:1 "
                         f"(limit {MAX_RATIO}:1; a zip bomb?)")


def _mb(size: int) -> str:
    mb = size / (1024 * 1024)
    return f"{mb:.0f} MB" if mb >= 10 else f"{mb:.1f} MB"
