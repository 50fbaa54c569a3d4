"""`alfrd get` and `alfrd open`: the original bytes of documents back out of the archive,
under their original names, verified against their sha256."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alfrd_daemon.cli.common import (
    EXIT_OK,
    EXIT_PROBLEM,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    MAX_ROWS,
    Subcommands,
    database,
    document_id,
    path_arg,
    print_json,
    settings_from,
    utf8_text,
    whole_number,
)
from alfrd_daemon.cli.copyout import Damaged, copy_verified, safe_name, unique_folder, write_out
from alfrd_daemon.cli.lookup import (
    NotFound,
    NotHere,
    find_document,
    is_folder,
    local_file,
    parts_of,
)
from alfrd_daemon.config.settings import Settings
from alfrd_daemon.db.search import search
from alfrd_daemon.progress import StageProgress


def register(sub: Subcommands, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("get", parents=[common],
                       help="copy documents out of the archive (original name, verified)")
    p.add_argument("ids", nargs="*", type=document_id, metavar="ID",
                   help="document ids or their starts")
    p.add_argument("--search", type=utf8_text, metavar="QUERY",
                   help="every document this full-text search finds (see --limit)")
    p.add_argument("--limit", type=whole_number(1, MAX_ROWS), default=100,
                   help="documents --search gets at most (default 100)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("-o", "--output", type=path_arg, metavar="PATH",
                     help="one document: the file to write (or a folder to write it into); "
                          "several: the folder (made if missing); default: this folder")
    out.add_argument("--stdout", action="store_true",
                     help="write one document's bytes to stdout (verified before it is sent)")
    p.add_argument("--force", action="store_true", help="replace existing files")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("open", parents=[common],
                       help="open a document with the desktop's program for it (xdg-open)")
    p.add_argument("id", type=document_id)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_open)


@dataclass
class Outcome:
    got: list[dict[str, Any]] = field(default_factory=list)
    problems: list[dict[str, str]] = field(default_factory=list)

    def fail(self, ident: str, message: str) -> None:
        self.problems.append({"id": ident, "error": message})


def _usage(message: str) -> int:
    print(f"alfrd get: {message} (see alfrd get --help)", file=sys.stderr)
    return EXIT_USAGE


def cmd_get(args: argparse.Namespace) -> int:
    if not args.ids and args.search is None:
        return _usage("name a document id, or --search QUERY")
    if args.stdout and args.json:
        return _usage("--stdout and --json would both write to stdout; take one")
    settings = settings_from(args)
    outcome = Outcome()
    with database(settings) as conn:
        docs: list[dict[str, Any]] = []
        idents = list(args.ids)
        found: list[str] = []
        if args.search is not None:
            rows = search(conn, args.search, config=settings.search.language,
                          limit=args.limit).rows
            found = [str(r["id"]) for r in rows if str(r["id"]) not in idents]
            idents += found
        for ident in idents:
            try:
                doc = find_document(conn, ident)
            except NotFound as exc:
                outcome.fail(ident, str(exc))
                continue
            if doc["deleted_at"] is not None and ident in found:
                continue  # a search never offers what is in the trash
            if doc["deleted_at"] is not None:
                outcome.fail(ident, f"document {doc['id']} is in the trash since "
                             f"{doc['deleted_at']:%Y-%m-%d %H:%M} (alfrd restore-deleted "
                             f"{doc['id']} brings it back)")
                continue
            if all(str(d["id"]) != str(doc["id"]) for d in docs):
                docs.append(doc)
    several = len(idents) > 1 or args.search is not None
    if args.stdout:
        if several or len(docs) > 1 or any(is_folder(d) for d in docs):
            return _usage("--stdout takes one document of one file")
        if docs:
            _to_stdout(settings, docs[0], outcome)
    elif docs:
        _to_files(settings, docs, args, several, outcome)
    elif args.search is not None and not outcome.problems:
        outcome.fail("", f"no documents match {args.search!r}")
    return _report(args, outcome)


def _to_stdout(settings: Settings, doc: dict[str, Any], outcome: Outcome) -> None:
    """Bytes sent to a pipe cannot be taken back: the file is verified first, then hashed
    again while it is sent, and a change in between still ends the command with an error."""
    ident = str(doc["id"])
    try:
        parts = parts_of(doc)
        part = parts[0] if parts else None
        if part is None or not part.sha256:
            outcome.fail(ident, f"document {ident} has no stored file with a checksum")
            return
        src = local_file(settings, doc, part)
        with open(os.devnull, "wb") as sink:
            copy_verified(src, part.sha256, sink)
        size = copy_verified(src, part.sha256, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    except (NotHere, Damaged) as exc:
        outcome.fail(ident, str(exc))
        return
    except OSError as exc:
        outcome.fail(ident, f"{exc.filename or ''}: {exc.strerror or exc}")
        return
    outcome.got.append({"id": ident, "name": doc["original_name"], "path": None,
                        "bytes": size, "sha256": part.sha256})


def _to_files(settings: Settings, docs: list[dict[str, Any]], args: argparse.Namespace,
              several: bool, outcome: Outcome) -> None:
    target: Path = args.output if args.output is not None else Path.cwd()
    if several:
        target.mkdir(parents=True, exist_ok=True)
    progress = StageProgress("alfrd get") if sys.stderr.isatty() and not args.json else None
    try:
        for n, doc in enumerate(docs):
            if progress is not None:
                progress(safe_name(doc["original_name"], str(doc["id"])), n, len(docs))
            _one_to_files(settings, doc, target, several=several, force=args.force,
                          outcome=outcome)
        if progress is not None:
            progress("done", len(docs), len(docs))
    finally:
        if progress is not None:
            progress.close()


def _one_to_files(settings: Settings, doc: dict[str, Any], target: Path, *, several: bool,
                  force: bool, outcome: Outcome) -> None:
    ident = str(doc["id"])
    parts = parts_of(doc)
    if not parts:
        outcome.fail(ident, f"document {ident} has no stored file")
        return
    name = safe_name(doc["original_name"], f"document-{ident[:8]}")
    folder_doc = is_folder(doc)
    into_target = several or target.is_dir()  # else target names the file (or folder) itself
    if folder_doc:  # a document folder comes back as a folder of its pages
        if several:
            folder = unique_folder(target, name)
        else:
            folder = target / name if into_target else target
            folder.mkdir(parents=True, exist_ok=force)
        file_name = None
    elif into_target:
        folder, file_name = target, name
    else:
        folder, file_name = target.parent, target.name
    written: list[Path] = []
    try:
        total = 0
        for part in parts:
            if not part.sha256:
                raise NotHere(f"document {ident}: no checksum recorded for {part.name}, so its "
                              "copy cannot be verified")
            src = local_file(settings, doc, part)
            out_name = file_name or safe_name(part.name, f"page-{len(written) + 1}")
            path, size = write_out(src, part.sha256, folder, out_name, force=force,
                                   unique=several or (folder_doc and not force))
            written.append(path)
            total += size
    except (NotHere, Damaged) as exc:
        _remove(written)
        outcome.fail(ident, str(exc))
        return
    except OSError as exc:
        _remove(written)
        where = f"{exc.filename}: " if exc.filename else ""
        outcome.fail(ident, f"{where}{exc.strerror or exc}")
        return
    outcome.got.append({"id": ident, "name": doc["original_name"],
                        "path": str(folder if folder_doc else written[0]),
                        "files": [str(p) for p in written], "bytes": total,
                        "sha256": doc["sha256"]})


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _remove(paths: list[Path]) -> None:
    for p in paths:
        with contextlib.suppress(OSError):
            p.unlink()


def _report(args: argparse.Namespace, outcome: Outcome) -> int:
    if args.json:
        print_json({"got": outcome.got, "problems": outcome.problems})
    else:
        out = sys.stderr if args.stdout else sys.stdout
        for g in outcome.got:
            if g["path"] is not None:
                print(f"{g['id']}  {g['path']}  ({g['bytes']} bytes, sha256 verified)", file=out)
    for p in outcome.problems:
        print(f"alfrd {args.command}: {p['error']}", file=sys.stderr)
    return EXIT_PROBLEM if outcome.problems else EXIT_OK


def open_cache(settings: Settings, ident: str) -> Path:
    """Where `alfrd open` puts its copies: the user's cache, one folder per document, so the
    program that opens it can keep it open while the next one is got."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = base / "alfrd" / "open" / ident
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def cmd_open(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with database(settings) as conn:
        try:
            doc = find_document(conn, args.id)
        except NotFound as exc:
            print(f"alfrd open: {exc}", file=sys.stderr)
            return EXIT_PROBLEM
    if doc["deleted_at"] is not None:
        print(f"alfrd open: document {doc['id']} is in the trash (alfrd restore-deleted "
              f"{doc['id']} brings it back)", file=sys.stderr)
        return EXIT_PROBLEM
    ident = str(doc["id"])
    outcome = Outcome()
    _one_to_files(settings, doc, open_cache(settings, ident), several=False, force=True,
                  outcome=outcome)
    if outcome.problems:
        print(f"alfrd open: {outcome.problems[0]['error']}", file=sys.stderr)
        return EXIT_PROBLEM
    path = outcome.got[0]["path"]
    opener = shutil.which("xdg-open")
    result = {"id": ident, "path": path, "opener": opener}
    if opener is None:
        if args.json:
            print_json({**result, "error": "no xdg-open"})
        print(f"alfrd open: no xdg-open on this host to open it with; the verified copy is at "
              f"{path} (or use alfrd get {ident})", file=sys.stderr)
        return EXIT_UNAVAILABLE
    # Detached: the program may run for as long as the user reads; the command ends now.
    subprocess.Popen([opener, path], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, start_new_session=True)
    if args.json:
        print_json(result)
    else:
        print(f"{ident}  {path}  (opened with {opener})")
    return EXIT_OK
