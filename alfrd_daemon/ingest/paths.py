"""Pure decisions about inbox paths: ignored or not, and which tags a path gives. No I/O here,
so every rule is unit-tested without touching disk (whether a file has settled is readiness.py)."""

from __future__ import annotations

import fnmatch
import unicodedata

from alfrd_daemon.pgsafe import display_text


def split_relpath(relpath: str) -> list[str]:
    return [p for p in relpath.split("/") if p and p != "."]


def is_ignored(
    relpath: str, ignore_files: tuple[str, ...], ignore_dirs: tuple[str, ...]
) -> bool:
    """A file is ignored when its own name matches a file pattern or any of its folders matches
    a directory pattern (that also hides our own `.alfrd` claim area)."""
    parts = split_relpath(relpath)
    if not parts:
        return True
    *dirs, name = parts
    if any(_matches(d, ignore_dirs) for d in dirs):
        return True
    return _matches(name, ignore_files)


def is_ignored_dir(relpath: str, ignore_dirs: tuple[str, ...]) -> bool:
    return any(_matches(d, ignore_dirs) for d in split_relpath(relpath))


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def tags_for(relpath: str, *, subdirs_as_tags: bool) -> list[str]:
    """Each folder between the inbox and the file becomes a tag (NFC-normalised, so the same
    folder name typed on a Mac and on Linux is one tag)."""
    if not subdirs_as_tags:
        return []
    dirs = split_relpath(relpath)[:-1]
    tags: list[str] = []
    for d in dirs:
        tag = unicodedata.normalize("NFC", display_text(d)).strip()
        if tag and tag not in tags:
            tags.append(tag)
    return tags


def merge_tags(*groups: list[str]) -> list[str]:
    out: list[str] = []
    for group in groups:
        for tag in group:
            if isinstance(tag, str) and tag.strip() and tag.strip() not in out:
                out.append(tag.strip())
    return out
