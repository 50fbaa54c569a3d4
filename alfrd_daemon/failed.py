"""The failed folder: a file we cannot ingest lands here beside a `.error` JSON note."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from .claim import rename_noreplace

NOTE_SUFFIX = ".error"


class FailedFolder:
    def __init__(self, root: Path):
        self.root = root

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o750)
        os.chmod(self.root, 0o750)

    def free_name(self, relpath: str) -> str:
        """relpath, or 'name (2).ext' … so an earlier failure of the same name is never
        replaced."""
        candidate = relpath
        stem, dot, ext = relpath.rpartition(".")
        if not dot or "/" in ext:
            stem, dot, ext = relpath, "", ""
        n = 1
        while os.path.lexists(self.root / candidate) or os.path.lexists(
            self.root / (candidate + NOTE_SUFFIX)
        ):
            n += 1
            candidate = f"{stem} ({n}){dot}{ext}"
        return candidate

    def put(self, src: Path, relpath: str, note: dict[str, object]) -> str:
        """Write the note, then move the file beside it. Returns the failed-relative path."""
        name = self.free_name(relpath)
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        note = {**note, "failed_at": datetime.now(UTC).isoformat(), "failed_path": name}
        _write_json(target.parent / (target.name + NOTE_SUFFIX), note)
        try:
            rename_noreplace(src, target)
        except OSError as exc:
            if exc.errno != 18:  # EXDEV: failed/ on another filesystem than the inbox
                raise
            _copy_then_remove(src, target)
        return name

    def notes(self) -> list[tuple[str, dict[str, object]]]:
        found = []
        for dirpath, _dirs, files in os.walk(self.root):
            for name in files:
                if name.endswith(NOTE_SUFFIX):
                    path = Path(dirpath) / name
                    try:
                        note = json.loads(path.read_text("utf-8"))
                    except (OSError, ValueError):
                        note = {"reason": "unreadable note"}
                    found.append((str(path.relative_to(self.root))[: -len(NOTE_SUFFIX)], note))
        return sorted(found)

    def take_back(self, name: str, inbox: Path) -> Path:
        """Move a failed file back into the inbox (under its original relative path when
        free) and drop its note: `alfrd retry`."""
        src = self.root / name
        note_path = self.root / (name + NOTE_SUFFIX)
        try:
            original = json.loads(note_path.read_text("utf-8")).get("source_path") or name
        except (OSError, ValueError):
            original = name
        dest = inbox / str(original)
        dest.parent.mkdir(parents=True, exist_ok=True)
        stem = dest
        n = 1
        while os.path.lexists(dest):
            n += 1
            dest = stem.with_name(f"{stem.stem} (retry {n}){stem.suffix}")
        try:
            rename_noreplace(src, dest)
        except OSError as exc:
            if exc.errno != 18:
                raise
            _copy_then_remove(src, dest)
        with contextlib.suppress(FileNotFoundError):
            note_path.unlink()
        return dest


def _write_json(path: Path, data: dict[str, object]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".note-")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2, ensure_ascii=False, default=str)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.chmod(tmp, 0o640)
    os.replace(tmp, path)


def _copy_then_remove(src: Path, dst: Path) -> None:
    mode = os.lstat(src).st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode)):
        # A FIFO, socket or device holds no data and cannot be copied without opening it.
        src.unlink()
        return
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True)
        shutil.rmtree(src)
    else:
        shutil.copy2(src, dst, follow_symlinks=False)
        src.unlink()
