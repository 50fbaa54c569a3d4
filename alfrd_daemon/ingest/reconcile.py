"""`alfrd check [--repair] [--json]`: find half-finished work and repair what is safe to repair.

What it compares (the daemon itself only resumes claims at start; this looks at everything):

- claimed files of daemons that are gone (their claim lock is free): the next daemon start
  adopts them; `--repair` puts them back into the inbox so a running daemon finishes them
  (a claim that was already committed is recognised by its arrival key and not ingested twice);
- store files no row points at (orphans): `--repair` moves them to `<state_dir>/orphans/`,
  never deletes. Files younger than `--grace` seconds (by ctime) are in flight, not orphans:
  a daemon links into the store before it commits;
- half-written temporary files in the store (`.incoming-*`, `.probe-*`): moved likewise;
- rows whose stored file is missing (in the store or in failed/): reported; `--repair` notes it
  in the row's `error` and leaves `status` alone;
- stored files whose content no longer matches their sha256 name (skipped with `--quick`);
- failure notes in failed/ without their file.

Only this store's rows are looked for here. Several daemons on several hosts may share one
database, each with its own store (its id in `<store>/.alfrd-store`): rows another store holds
are counted per store ("held by store X on host H (path P)") and left to that host's check.
Rows from before stores had an identity (store_id NULL) belong to the store that has their
file; `--repair` records it. One whose file is not here is missing only while no other store
is registered; otherwise another host may hold it, and its own `alfrd check --repair` says so.

The scan is plain set arithmetic: the store walk streams (one directory at a time) into a set
of 32-byte digests, the rows stream through a server-side cursor, and only the differences are
looked at again (stat, a fresh query) before anything is reported or moved.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.rows import DictRow

from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.ingest.claim import ClaimArea, rename_noreplace, walk_claims
from alfrd_daemon.ingest.failed import NOTE_SUFFIX, FailedFolder
from alfrd_daemon.ingest.store import IDENTITY_NAME, Store
from alfrd_daemon.pgsafe import display_text

Q = load_named_queries("check.sql")
# The check reads rows by column name.
Connection = psycopg.Connection[DictRow]

EXAMPLES = 50
TEMP_PREFIXES = (".incoming-", ".probe-")
# ab/<sha256>, or ab/cd/<sha256> in a store written before 2026-12 (see store.py).
STORE_NAME = re.compile(r"^([0-9a-f]{2})/(?:([0-9a-f]{2})/)?([0-9a-f]{64})$")
_ESCAPED_BYTE = re.compile(rb"\\x([0-9a-f]{2})")

PROBLEMS = {
    "claimed_by_dead_daemon": "claimed by a daemon that is gone (a daemon start resumes them; "
                              "--repair returns them to the inbox)",
    "orphan_store_files": "store files no row points at (--repair moves them to orphans/)",
    "store_temp_files": "half-written temporary files in the store (--repair moves them to "
                        "orphans/)",
    "stray_store_files": "files in the store that are not named by a sha256 (left alone)",
    "rows_without_file": "rows whose stored file is missing (--repair notes it in the row)",
    "rows_of_unrecorded_store": "rows without a recorded store whose file is not in this store, "
                                "while other stores exist (alfrd check --repair on the host "
                                "that holds them records its store)",
    "hash_mismatch": "stored files whose content does not match their sha256",
    "notes_without_file": "failure notes in failed/ without their file (--repair moves them "
                          "to orphans/)",
}
INFO = {
    "claimed_in_progress": "claimed by a running daemon (in progress)",
    "recent_unreferenced": "store files younger than the grace period without a row (in flight)",
    "held_by_other_stores": "rows held by other stores (each host checks its own)",
    "copies_held_elsewhere": "store files whose row another store holds (a duplicate stored "
                             "here too; kept)",
    "rows_without_store_id": "rows without a recorded store whose file is in this store "
                             "(--repair records this store)",
}
UNFIXABLE = ("rows_without_file", "hash_mismatch", "stray_store_files",
             "rows_of_unrecorded_store")


@dataclass
class Section:
    count: int = 0
    repaired: int = 0
    examples: list[dict[str, Any]] = field(default_factory=list)

    def add(self, **item: Any) -> None:
        self.count += 1
        if len(self.examples) < EXAMPLES:
            self.examples.append(item)


@dataclass
class Report:
    store: str
    repair: bool
    verified_hashes: bool
    store_id: str | None = None
    store_files: int = 0
    references: int = 0
    sections: dict[str, Section] = field(
        default_factory=lambda: {k: Section() for k in (*PROBLEMS, *INFO)})

    def __getitem__(self, kind: str) -> Section:
        return self.sections[kind]

    @property
    def ok(self) -> bool:
        """No problem is left: everything found was repaired. A missing file or a changed hash
        stays a problem after --repair (it is only noted)."""
        for kind in PROBLEMS:
            s = self.sections[kind]
            if s.count and (kind in UNFIXABLE or s.repaired < s.count):
                return False
        return True

    def as_json(self) -> dict[str, Any]:
        def view(kind: str) -> dict[str, Any]:
            s = self.sections[kind]
            return {"count": s.count, "repaired": s.repaired, "examples": s.examples}

        return {"ok": self.ok, "repair": self.repair, "store": self.store,
                "store_id": self.store_id, "verified_hashes": self.verified_hashes,
                "checked": {"store_files": self.store_files, "references": self.references},
                "problems": {k: view(k) for k in PROBLEMS},
                "info": {k: view(k) for k in INFO}}


# --- pure parts ----------------------------------------------------------------------------------
def classify(relpath: str) -> tuple[str, bytes | None]:
    """A store-relative path → ("file", digest) for ab/<sha256> or ab/cd/<sha256> in its right
    place, ("temp", None) for a half-written temporary file, ("identity", None) for the store's
    id file, else ("stray", None)."""
    m = STORE_NAME.match(relpath)
    if m and m.group(3).startswith(m.group(1) + (m.group(2) or "")):
        return "file", bytes.fromhex(m.group(3))
    if relpath == IDENTITY_NAME:
        return "identity", None
    if relpath.rpartition("/")[2].startswith(TEMP_PREFIXES):
        return "temp", None
    return "stray", None


def store_relpath(digest: bytes) -> str:
    return Store.relpath(digest.hex())


def located_relpath(store: Path, digest: bytes) -> str:
    """Where `store` holds the content: the current layout, else the older nested one."""
    rel = store_relpath(digest)
    if os.path.lexists(store / rel):
        return rel
    nested = Store.nested_relpath(digest.hex())
    return nested if os.path.lexists(store / nested) else rel


def compare(present: set[bytes], referenced: set[bytes]) -> tuple[set[bytes], set[bytes]]:
    """(orphans: stored but not referenced, missing: referenced but not stored)."""
    return present - referenced, referenced - present


def holder(row_store: str | None, local_store: str | None) -> str:
    """Whose row this is: "local" (this store's), "other" (another store's) or "unrecorded"
    (written before stores had an identity: it belongs to whichever store has its file)."""
    if row_store is None:
        return "unrecorded"
    return "local" if row_store == local_store else "other"


def undisplay(name: str) -> str:
    """pgsafe.display_text's \\xNN back into the raw byte, to find a file whose name was not
    UTF-8 (a name that really contains a backslash is tried as it is first)."""
    raw = _ESCAPED_BYTE.sub(lambda m: bytes([int(m.group(1), 16)]), name.encode("utf-8"))
    return os.fsdecode(raw)


def stored_file_exists(store: Path, failed: Path, path: str) -> bool:
    """Whether this state dir holds a row's file: `failed/<name>` in the failed folder (whose
    name may have been shown with \\xNN escapes), anything else in the store."""
    if path.startswith("failed/"):
        name = path[len("failed/"):]
        return os.path.lexists(failed / name) or os.path.lexists(failed / undisplay(name))
    return (store / path).exists()


def walk_files(top: Path) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """(relative path, entry) of every non-directory below top, one directory in memory at a
    time; symlinked directories are not entered."""
    stack = [top]
    while stack:
        here = stack.pop()
        try:
            with os.scandir(here) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    else:
                        yield os.path.relpath(entry.path, top), entry
        except (FileNotFoundError, NotADirectoryError):
            continue


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        while chunk := os.read(fd, 1 << 20):
            h.update(chunk)
    finally:
        os.close(fd)
    return h.hexdigest()


# --- the check -----------------------------------------------------------------------------------
class Checker:
    def __init__(self, *, inbox: Path, store: Path, failed: Path, orphans: Path,
                 repair: bool, verify: bool, grace: float, store_id: str | None = None):
        self.inbox = inbox
        self.store = store
        self.failed = failed
        self.orphans = orphans
        self.repair = repair
        self.verify = verify
        self.grace = grace
        self.store_id = store_id  # None: no daemon has given this store an identity yet
        self.report = Report(store=str(store), repair=repair, verified_hashes=verify,
                             store_id=store_id)

    def run(self, conn: Connection) -> Report:
        self.check_claims()
        present = self.scan_store()
        referenced, elsewhere = self.scan_rows(conn, present)
        orphans, _ = compare(present, referenced | elsewhere)
        for digest in sorted(present & elsewhere - referenced):
            self.report["copies_held_elsewhere"].add(path=located_relpath(self.store, digest))
        del present
        self.count_other_stores(conn)
        self.handle_orphans(conn, orphans)
        self.check_failed_notes()
        return self.report

    # claims ------------------------------------------------------------------------------------
    def check_claims(self) -> None:
        area = ClaimArea(self.inbox, f".check-{os.getpid()}")
        if not area.root.is_dir():
            return
        dead = {p.name for p in area.dead_instances()}
        for entry in sorted(area.root.iterdir()):
            if not entry.is_dir() or entry.is_symlink():
                continue
            for rel in list(walk_claims(entry)):
                if entry.name not in dead:
                    self.report["claimed_in_progress"].add(path=display_text(rel),
                                                           instance=entry.name)
                    continue
                section = self.report["claimed_by_dead_daemon"]
                section.add(path=display_text(rel), instance=entry.name)
                if self.repair and self._return_to_inbox(entry / rel, rel):
                    section.repaired += 1
            if entry.name in dead and self.repair:
                ClaimArea.prune_empty_dirs(entry)
                with contextlib.suppress(OSError):
                    entry.rmdir()
                    (area.root / f"{entry.name}.lock").unlink()

    def _return_to_inbox(self, src: Path, rel: str) -> bool:
        dst = self.inbox / rel
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            rename_noreplace(src, dst)
        except FileNotFoundError:
            return True  # a daemon adopted it meanwhile: resumed all the same
        except OSError:
            return False  # the name is taken in the inbox: leave it claimed for adoption
        return True

    # store -------------------------------------------------------------------------------------
    def scan_store(self) -> set[bytes]:
        present: set[bytes] = set()
        temps: list[tuple[str, os.DirEntry[str]]] = []
        if not self.store.is_dir():
            return present
        now = time.time()
        for rel, entry in walk_files(self.store):
            kind, digest = classify(rel)
            if kind == "temp":
                temps.append((rel, entry))
                continue
            if kind == "identity":
                continue
            if kind == "stray" or digest is None:
                self.report["stray_store_files"].add(path=display_text(rel))
                continue
            present.add(digest)
            self.report.store_files += 1
            if self.verify:
                try:
                    actual = sha256_of(entry.path)
                except OSError as exc:
                    self.report["hash_mismatch"].add(path=rel, error=exc.strerror)
                    continue
                if actual != digest.hex():
                    self.report["hash_mismatch"].add(path=rel, actual_sha256=actual)
        for rel, entry in temps:
            try:
                age = now - entry.stat(follow_symlinks=False).st_ctime
            except FileNotFoundError:
                continue  # its copy finished meanwhile
            if age < self.grace:
                continue
            section = self.report["store_temp_files"]
            section.add(path=display_text(rel), age_seconds=round(age))
            if self.repair and self._to_orphans(Path(entry.path), Path("store-temp") / rel):
                section.repaired += 1
        return present

    # rows --------------------------------------------------------------------------------------
    def scan_rows(self, conn: Connection, present: set[bytes]) -> tuple[set[bytes], set[bytes]]:
        """Looks for the files of this store's rows. Returns the digests this store's rows
        reference, and those other stores' rows reference (a local copy of one is no orphan)."""
        referenced: set[bytes] = set()
        elsewhere: set[bytes] = set()
        missing: list[tuple[Any, str | None]] = []
        unknown_store: list[tuple[Any, str]] = []
        unrecorded_here: set[Any] = set()
        others = self._other_stores_exist(conn)
        with conn.cursor(name="alfrd_check_references") as cur:
            cur.itersize = 5000
            cur.execute(Q["check_references"])
            for row in cur:
                self.report.references += 1
                path = row["path"]
                kind, digest = classify(path)
                owner = holder(_text(row["store_id"]), self.store_id)
                if owner == "other":
                    if digest is not None:
                        elsewhere.add(digest)
                    continue
                if kind == "file" and digest is not None:
                    referenced.add(digest)
                if self._file_here(path, kind, digest, present):
                    if owner == "unrecorded":
                        unrecorded_here.add(row["id"])
                elif owner == "unrecorded" and others:
                    unknown_store.append((row["id"], path))
                else:
                    missing.append((row["id"], path))
        conn.commit()
        for row in conn.execute(Q["check_rows_without_file"],
                                {"store_id": self.store_id}).fetchall():
            missing.append((row["id"], None))
        conn.commit()
        for doc_id, path in unknown_store:
            self.report["rows_of_unrecorded_store"].add(document_id=str(doc_id),
                                                        stored_path=path)
        self.record_store(conn, unrecorded_here)
        section = self.report["rows_without_file"]
        for doc_id, path in missing:
            section.add(document_id=str(doc_id), stored_path=path)
            if self.repair:
                note = (f"stored file missing: {path} (found by alfrd check)" if path
                        else "no stored file recorded (found by alfrd check)")
                with conn.transaction():
                    conn.execute(Q["check_note_missing"], {"id": doc_id, "note": note})
                section.repaired += 1
        return referenced, elsewhere

    def _file_here(self, path: str, kind: str, digest: bytes | None,
                   present: set[bytes]) -> bool:
        if kind == "file" and digest is not None and digest in present:
            return True
        return stored_file_exists(self.store, self.failed, path)

    def _other_stores_exist(self, conn: Connection) -> bool:
        row = conn.execute(Q["check_count_other_stores"], {"store_id": self.store_id}).fetchone()
        conn.commit()
        return bool(row and row["n"])

    def record_store(self, conn: Connection, doc_ids: set[Any]) -> None:
        """Rows without a recorded store whose file is here: this store's (with --repair, and
        once this store has an id; the daemon gives it one at start)."""
        section = self.report["rows_without_store_id"]
        for doc_id in sorted(doc_ids, key=str):
            section.add(document_id=str(doc_id))
        if not (self.repair and doc_ids and self.store_id):
            return
        ids = sorted(doc_ids, key=str)
        with conn.transaction():
            store = Store(self.store)
            store.id = self.store_id
            store.register(conn.cursor())  # the rows refer to it; the daemon may not have run
            for i in range(0, len(ids), 1000):
                cur = conn.execute(Q["check_record_store"],
                                   {"store_id": self.store_id, "ids": ids[i:i + 1000]})
                section.repaired += cur.rowcount

    def count_other_stores(self, conn: Connection) -> None:
        """One example per other store: which host and path hold how many rows."""
        section = self.report["held_by_other_stores"]
        for row in conn.execute(Q["check_rows_of_other_stores"],
                                {"store_id": self.store_id}).fetchall():
            section.count += row["n"]
            section.examples.append({"store_id": str(row["store_id"]),
                                     "hostname": row["hostname"], "path": row["path"],
                                     "rows": row["n"]})
        conn.commit()

    # orphans -----------------------------------------------------------------------------------
    def handle_orphans(self, conn: Connection, orphans: set[bytes]) -> None:
        now = time.time()
        for digest in sorted(orphans):
            rel = located_relpath(self.store, digest)
            path = self.store / rel
            try:
                age = now - os.lstat(path).st_ctime
            except FileNotFoundError:
                continue
            if self._referenced(conn, rel):
                continue  # committed since the scan
            if age < self.grace:
                self.report["recent_unreferenced"].add(path=rel, age_seconds=round(age))
                continue
            section = self.report["orphan_store_files"]
            section.add(path=rel, age_seconds=round(age))
            if not self.repair:
                continue
            target = self.orphans / "store" / rel
            if not self._to_orphans(path, Path("store") / rel):
                continue
            if self._referenced(conn, rel):
                # A daemon committed a row for it in the meantime: put it back.
                self._move(target, path)
                continue
            section.repaired += 1

    @staticmethod
    def _referenced(conn: Connection, rel: str) -> bool:
        row = conn.execute(Q["check_is_referenced"], {"path": rel}).fetchone()
        conn.commit()
        return bool(row and row["referenced"])

    # failed/ -----------------------------------------------------------------------------------
    def check_failed_notes(self) -> None:
        if not self.failed.is_dir():
            return
        section = self.report["notes_without_file"]
        for name, _note in FailedFolder(self.failed).notes():
            if os.path.lexists(self.failed / name):
                continue
            section.add(path=display_text(name))
            if self.repair and self._to_orphans(self.failed / (name + NOTE_SUFFIX),
                                                Path("failed-notes") / (name + NOTE_SUFFIX)):
                section.repaired += 1

    # moving, never deleting --------------------------------------------------------------------
    def _to_orphans(self, src: Path, rel: Path) -> bool:
        dst = self.orphans / rel
        n = 1
        while os.path.lexists(dst):
            n += 1
            dst = dst.with_name(f"{(self.orphans / rel).name}.{n}")
        return self._move(src, dst)

    @staticmethod
    def _move(src: Path, dst: Path) -> bool:
        try:
            dst.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            try:
                rename_noreplace(src, dst)
            except OSError as exc:
                if exc.errno != 18:  # EXDEV: orphans/ on another filesystem
                    raise
                shutil.copy2(src, dst, follow_symlinks=False)
                os.unlink(src)
        except FileNotFoundError:
            return False
        return True




def _text(value: Any) -> str | None:
    return None if value is None else str(value)
