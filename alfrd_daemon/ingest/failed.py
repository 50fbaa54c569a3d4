"""The failed folder: a file we cannot ingest lands here beside a `.error` JSON note."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from alfrd_daemon.ingest.claim import rename_noreplace
from alfrd_daemon.pgsafe import display_text

NOTE_SUFFIX = ".error"
NAME_MAX = 255  # bytes in one file name (ext4, xfs, btrfs, tmpfs)


class FailedFolder:
    def __init__(self, root: Path):
        self.root = root

    def open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o750)
        os.chmod(self.root, 0o750)

    def free_name(self, relpath: str) -> str:
        """relpath, or 'name (2).ext' … so an earlier failure of the same name is never
        replaced."""
        for candidate in _candidates(relpath):
            if not (os.path.lexists(self.root / candidate)
                    or os.path.lexists(self.root / (candidate + NOTE_SUFFIX))):
                return candidate
        raise AssertionError("unreachable")

    def _reusable(self, relpath: str, recorded: str | None) -> str | None:
        """The name a failure replayed after a crash recorded in its row (shown as
        `recorded`), if its file slot is still free: a crash between writing the note and
        moving the file leaves only the note there, which this attempt then replaces."""
        if not recorded:
            return None
        for n, candidate in enumerate(_candidates(relpath)):
            if n > 1000:
                break
            if display_text(candidate) == recorded:
                return None if os.path.lexists(self.root / candidate) else candidate
        return None

    def put(self, src: Path, relpath: str, note: dict[str, object],
            recorded: str | None = None) -> str:
        """Write the note, then move the file beside it. Returns the failed-relative path.
        `recorded` is the failed-relative name the database already holds for this failure
        (shown form), reused when free."""
        name = self._reusable(relpath, recorded) or self.free_name(relpath)
        target = self.root / name
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        # Shown form: a name that is not UTF-8 cannot go into a JSON text as it is.
        note = {**note, "failed_at": datetime.now(UTC).isoformat(),
                "failed_path": display_text(name)}
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


def _candidates(relpath: str) -> Iterator[str]:
    """relpath, 'stem (2).ext', 'stem (3).ext' …, each short enough that the name and its
    note ('<name>.error') fit the 255-byte limit of a file name (the stem is shortened)."""
    folder, slash, base = relpath.rpartition("/")
    stem, dot, ext = base.rpartition(".")
    if not dot or not stem or len(os.fsencode(ext)) > 32:
        stem, dot, ext = base, "", ""
    n = 1
    while True:
        suffix = f" ({n})" if n > 1 else ""
        room = NAME_MAX - len(NOTE_SUFFIX) - len(os.fsencode(f"{suffix}{dot}{ext}"))
        raw = os.fsencode(stem)
        short = os.fsdecode(raw[:room]) if len(raw) > room else stem
        yield f"{folder}{slash}{short}{suffix}{dot}{ext}"
        n += 1


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
