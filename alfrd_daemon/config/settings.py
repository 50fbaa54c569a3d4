"""YAML configuration → typed, frozen, validated settings.

Every problem is collected and reported at once, one line each, naming the key path, the value
and what was expected (the borgmatic habit), so a user fixes a file in one pass.
"""

from __future__ import annotations

import math
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import yaml

from alfrd_daemon.config.jobs import JobsSettings, parse_jobs
from alfrd_daemon.logs import mask_dsn
from alfrd_daemon.pgsafe import display_text

CONFIG_SEARCH_ORDER = ("/etc/alfrd/alfrd.yaml", "./config/alfrd.yaml")

DEFAULT_IGNORE_FILES: tuple[str, ...] = (
    ".*",  # dotfiles: rsync's .name.XXXXXX, ._* AppleDouble, .DS_Store, .~lock.*
    "*.part",
    "*.crdownload",
    "*.tmp",
    "*.swp",
    "~$*",
    "Thumbs.db",
    "desktop.ini",
)
DEFAULT_IGNORE_DIRS: tuple[str, ...] = (
    ".*",  # .alfrd (our claim area), .stfolder, .stversions, .Spotlight-V100, .Trashes
    "@eaDir",
    "__MACOSX",
    "lost+found",
)


class ConfigError(Exception):
    """The configuration is invalid; `problems` holds one line per problem."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


@dataclass(frozen=True)
class InboxSettings:
    path: Path
    recursive: bool = True
    subdirs_as_tags: bool = True
    ignore_files: tuple[str, ...] = DEFAULT_IGNORE_FILES
    ignore_dirs: tuple[str, ...] = DEFAULT_IGNORE_DIRS


@dataclass(frozen=True)
class WatchSettings:
    mode: str = "auto"  # auto | inotify | polling
    poll_interval: float = 2.0
    settle_seconds: float = 1.0
    quiet_seconds: float = 0.1
    stale_write_seconds: float = 300.0
    rescan_interval: float = 300.0
    lease_check: bool = True
    folder_quiet_max_seconds: float = 60.0


@dataclass(frozen=True)
class DatabaseSettings:
    url: str | None = None
    pool_min: int = 2
    pool_max: int = 8
    connect_timeout: float = 10.0
    startup_timeout: float = 30.0
    reconnect_timeout: float = 600.0


@dataclass(frozen=True)
class WorkerSettings:
    count: int = 4
    queue_size: int = 1000
    max_file_size: int = 2 * 1024**3
    drain_timeout: float = 60.0
    retry_initial: float = 1.0
    retry_max: float = 60.0
    stuck_seconds: float = 600.0
    commit_batch: int = 256


@dataclass(frozen=True)
class ExtractSettings:
    timeout_seconds: float = 30.0
    max_text_chars: int = 5_000_000
    max_pdf_pages: int = 5000
    memory_limit_mb: int = 1024


@dataclass(frozen=True)
class SearchSettings:
    language: str = "english"


@dataclass(frozen=True)
class StoreSettings:
    fsync: bool = True


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"


@dataclass(frozen=True)
class Settings:
    inbox: InboxSettings
    state_dir: Path
    store_path: Path
    failed_path: Path
    backups_path: Path
    watch: WatchSettings = field(default_factory=WatchSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    workers: WorkerSettings = field(default_factory=WorkerSettings)
    extract: ExtractSettings = field(default_factory=ExtractSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    jobs: JobsSettings = field(default_factory=JobsSettings)
    source: str = "<defaults>"

    @property
    def claim_root(self) -> Path:
        return self.inbox.path / ".alfrd" / "claimed"

    @property
    def embedded_dir(self) -> Path:
        return self.state_dir / "postgres"


# What a reload (SIGHUP) applies to the running daemon, by YAML key. Every other key shapes
# something built once at start (the watcher, the pool, the workers, the committer, the store)
# and keeps its running value until a restart, which the reload log names. A new setting must
# go into one of the two sets (tests/unit/test_lifecycle_rules.py checks that).
LIVE_KEYS: frozenset[str] = frozenset({
    "inbox.subdirs_as_tags", "inbox.ignore_files", "inbox.ignore_dirs",
    "watch.settle_seconds", "watch.quiet_seconds", "watch.stale_write_seconds",
    "watch.rescan_interval", "watch.lease_check", "watch.folder_quiet_max_seconds",
    "workers.max_file_size", "workers.drain_timeout", "workers.retry_initial",
    "workers.retry_max", "workers.stuck_seconds",
    "extract.timeout_seconds", "extract.max_text_chars", "extract.max_pdf_pages",
    "extract.memory_limit_mb",
    "search.language", "logging.level",
    "jobs.timezone", "jobs.backup", "jobs.restore_test", "jobs.reindex", "jobs.rescan",
    "jobs.retry_failed", "jobs.prune",
})
RESTART_KEYS: frozenset[str] = frozenset({
    "state_dir", "paths.store", "paths.failed", "paths.backups",
    "inbox.path", "inbox.recursive", "watch.mode", "watch.poll_interval",
    "database.url", "database.pool_min", "database.pool_max", "database.connect_timeout",
    "database.startup_timeout", "database.reconnect_timeout",
    "workers.count", "workers.queue_size", "workers.commit_batch", "store.fsync",
})
# YAML keys whose value sits in a top-level Settings field of another name.
PATH_FIELDS: dict[str, str] = {
    "paths.store": "store_path", "paths.failed": "failed_path", "paths.backups": "backups_path",
}


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    None: 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50,
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MAX_FILE_SIZE_LIMIT = 2**50  # 1 PiB: far above any file a scanner writes, well inside off_t
_LANGUAGE_RE = re.compile(r"^[a-z_]+$")


SIZE_EXPECTED = "a size such as 1048576, '500MB' or '2GiB'"
# Room for a path in the kernel (PATH_MAX, with its NUL) and for one name (NAME_MAX).
PATH_MAX_BYTES = 4095
NAME_MAX_BYTES = 255
PATH_LENGTH_EXPECTED = (f"expected a path of at most {PATH_MAX_BYTES} bytes, each name at most "
                        f"{NAME_MAX_BYTES}")
_SHOWN_MAX = 120


def parse_size(value: object) -> int:
    """'512MiB', '2GB', 1048576 → bytes (0 or more). Raises ValueError with what was expected."""
    if isinstance(value, bool):
        raise ValueError(f"expected {SIZE_EXPECTED}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected {SIZE_EXPECTED}")
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise ValueError(f"expected {SIZE_EXPECTED}")
    unit = m.group(2).lower() if m.group(2) else None
    number = float(m.group(1)) * _SIZE_UNITS[unit]
    if not math.isfinite(number):  # hundreds of digits overflow a float
        raise ValueError(f"expected {SIZE_EXPECTED}")
    return int(number)


def _shown(value: object) -> str:
    """A value as one short line: repr shows NUL and newlines as escapes; passwords masked."""
    text = mask_dsn(repr(value))
    return text if len(text) <= _SHOWN_MAX else text[:_SHOWN_MAX - 1] + "…"


def _key_text(key: object) -> str:
    """A YAML key as it can sit in one line (keys may hold newlines or control characters)."""
    text = str(key)
    return text if text.isprintable() else repr(text)[1:-1]


class _Reader:
    """Walks one mapping section, collecting problems instead of stopping at the first."""

    def __init__(self, data: Mapping[str, Any], prefix: str, problems: list[str]):
        self.data = data
        self.prefix = prefix
        self.problems = problems
        self.seen: set[str] = set()

    def path(self, key: str) -> str:
        key = _key_text(key)
        return f"{self.prefix}.{key}" if self.prefix else key

    def problem(self, key: str, value: object, expected: str) -> None:
        self.problems.append(f"At '{self.path(key)}': got {_shown(value)}, expected {expected}")

    def get(self, key: str, default: Any, convert: Callable[[Any], Any], expected: str) -> Any:
        self.seen.add(key)
        if key not in self.data or self.data[key] is None:
            return default
        value = self.data[key]
        try:
            return convert(value)
        except (TypeError, ValueError, OverflowError) as exc:
            detail = str(exc) if isinstance(exc, ValueError) and str(exc) else expected
            self.problem(key, value, detail.removeprefix("expected "))
            return default

    def section(self, key: str) -> _Reader:
        self.seen.add(key)
        value = self.data.get(key) or {}
        if not isinstance(value, Mapping):
            self.problem(key, value, "a mapping of settings")
            value = {}
        return _Reader(value, self.path(key), self.problems)

    def finish(self) -> None:
        for key in self.data:
            if key not in self.seen:
                self.problems.append(
                    f"At '{self.path(key)}': unknown setting (check the spelling against "
                    "config/alfrd.yaml)"
                )


def _bound_text(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _range_text(what: str, minimum: float, maximum: float, above: bool) -> str:
    low = "above" if above else "at least"
    return f"expected {what} {low} {_bound_text(minimum)} and at most {_bound_text(maximum)}"


def _within(value: float, minimum: float, maximum: float, above: bool) -> bool:
    """NaN fails every comparison, so it is never within a range; infinities are outside."""
    return (value > minimum if above else value >= minimum) and value <= maximum


def _number(minimum: float, maximum: float, *, above: bool = False) -> Callable[[Any], float]:
    """A finite int or float in [minimum, maximum] (or (minimum, maximum] when `above`)."""
    expected = _range_text("a number", minimum, maximum, above)

    def convert(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(expected)
        if not _within(value, minimum, maximum, above):
            raise ValueError(expected)
        return float(value)

    return convert


def _integer(minimum: int, maximum: int) -> Callable[[Any], int]:
    expected = _range_text("a whole number", minimum, maximum, above=False)

    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(expected)
        if not _within(value, minimum, maximum, above=False):
            raise ValueError(expected)
        return value

    return convert


def _size_text(size: int) -> str:
    for unit in ("PiB", "TiB", "GiB", "MiB", "KiB"):
        factor = _SIZE_UNITS[unit.lower()]
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size} bytes" if size != 1 else "1 byte"


def _size(minimum: int, maximum: int) -> Callable[[Any], int]:
    expected = (f"expected a size from {_size_text(minimum)} to {_size_text(maximum)}, such as "
                "1048576, '500MB' or '2GiB'")

    def convert(value: Any) -> int:
        try:
            size = parse_size(value)
        except ValueError:
            raise ValueError(expected) from None
        if not minimum <= size <= maximum:
            raise ValueError(expected)
        return size

    return convert


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError
    return value


def _string(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError
    if "\0" in value:
        raise ValueError("expected text without NUL bytes")
    return value


def _path_text(value: Any) -> str:
    """A file-system path the kernel can take: text, not blank, no NUL, within PATH_MAX and
    NAME_MAX (otherwise it passes here and fails later with a traceback at start)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a path")
    if "\0" in value:
        raise ValueError("expected a path without NUL bytes")
    try:
        raw = os.fsencode(value)
    except UnicodeError:
        raise ValueError("expected a path in valid text") from None
    if len(raw) > PATH_MAX_BYTES or any(len(name) > NAME_MAX_BYTES for name in raw.split(b"/")):
        raise ValueError(PATH_LENGTH_EXPECTED)
    return value


def _long_path_problems(paths: Mapping[str, Path]) -> list[str]:
    """A relative path can fit alone and be too long once joined to its base directory."""
    return [f"At '{key}': got {_shown(str(path))}, {PATH_LENGTH_EXPECTED}"
            for key, path in paths.items() if len(os.fsencode(path)) > PATH_MAX_BYTES]


def _conninfo(value: Any) -> str:
    """A libpq URL or key=value string that libpq can parse (what is in it is checked when it
    connects)."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    text = _string(value)
    try:
        conninfo_to_dict(text)
    except ProgrammingError as exc:
        detail = mask_dsn(str(exc).strip().splitlines()[0]) if str(exc).strip() else "unparsable"
        raise ValueError("expected a PostgreSQL URL such as postgresql://user@host/db "
                         f"({detail})") from None
    return text


def _choice(*options: str) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if value not in options:
            raise ValueError("expected one of " + ", ".join(options))
        return str(value)

    return convert


def _patterns(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(
            isinstance(v, str) and v and "\0" not in v for v in value):
        raise ValueError("expected a list of glob patterns such as ['*.tmp', '.*']")
    return tuple(value)


def _resolve(base: Path, value: str) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (base / path)


def parse_settings(data: object, *, source: str, base_dir: Path) -> Settings:
    """Validate a parsed YAML document; relative paths resolve against `base_dir`."""
    problems: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(source, [f"At top level: got {_shown(data)}, expected a mapping of "
                                   "sections"])
    top = _Reader(data, "", problems)

    state_dir = _resolve(base_dir, top.get("state_dir", "./var", _path_text, ""))

    inbox_r = top.section("inbox")
    inbox_path = _resolve(base_dir, inbox_r.get("path", "./inbox", _path_text, ""))
    inbox = InboxSettings(
        path=inbox_path,
        recursive=inbox_r.get("recursive", True, _boolean, "true or false"),
        subdirs_as_tags=inbox_r.get("subdirs_as_tags", True, _boolean, "true or false"),
        ignore_files=inbox_r.get("ignore_files", DEFAULT_IGNORE_FILES, _patterns, "a list"),
        ignore_dirs=inbox_r.get("ignore_dirs", DEFAULT_IGNORE_DIRS, _patterns, "a list"),
    )
    inbox_r.finish()

    paths_r = top.section("paths")
    store_path = _resolve(state_dir, paths_r.get("store", "store", _path_text, ""))
    failed_path = _resolve(state_dir, paths_r.get("failed", "failed", _path_text, ""))
    backups_path = _resolve(state_dir, paths_r.get("backups", "backups", _path_text, ""))
    paths_r.finish()
    problems += _long_path_problems({"state_dir": state_dir, "inbox.path": inbox_path,
                                     "paths.store": store_path, "paths.failed": failed_path,
                                     "paths.backups": backups_path})

    w = top.section("watch")
    watch = WatchSettings(
        mode=w.get("mode", "auto", _choice("auto", "inotify", "polling"), ""),
        poll_interval=w.get("poll_interval", 2.0, _number(0.1, 3600), "seconds"),
        settle_seconds=w.get("settle_seconds", 1.0, _number(0, 3600), "seconds"),
        quiet_seconds=w.get("quiet_seconds", 0.1, _number(0, 60), "seconds"),
        stale_write_seconds=w.get("stale_write_seconds", 300.0, _number(1, 86400), "seconds"),
        rescan_interval=w.get("rescan_interval", 300.0, _number(1, 86400), "seconds"),
        lease_check=w.get("lease_check", True, _boolean, "true or false"),
        folder_quiet_max_seconds=w.get("folder_quiet_max_seconds", 60.0, _number(0, 86400),
                                       "seconds"),
    )
    w.finish()

    d = top.section("database")
    database = DatabaseSettings(
        url=d.get("url", None, _conninfo, "a PostgreSQL URL such as postgresql://user@host/db"),
        pool_min=d.get("pool_min", 2, _integer(1, 100), ""),
        pool_max=d.get("pool_max", 8, _integer(1, 500), ""),
        connect_timeout=d.get("connect_timeout", 10.0, _number(1, 600), "seconds"),
        startup_timeout=d.get("startup_timeout", 30.0, _number(1, 3600), "seconds"),
        reconnect_timeout=d.get("reconnect_timeout", 600.0, _number(1, 86400), "seconds"),
    )
    if database.pool_min > database.pool_max:
        problems.append(
            f"At 'database.pool_min': got {database.pool_min}, expected at most "
            f"database.pool_max ({database.pool_max})"
        )
    d.finish()

    wk = top.section("workers")
    workers = WorkerSettings(
        count=wk.get("count", 4, _integer(1, 256), ""),
        queue_size=wk.get("queue_size", 1000, _integer(1, 1_000_000), ""),
        max_file_size=wk.get("max_file_size", 2 * 1024**3, _size(1, MAX_FILE_SIZE_LIMIT), ""),
        drain_timeout=wk.get("drain_timeout", 60.0, _number(0, 3600, above=True), "seconds"),
        retry_initial=wk.get("retry_initial", 1.0, _number(0.01, 3600), "seconds"),
        retry_max=wk.get("retry_max", 60.0, _number(0.01, 86400), "seconds"),
        stuck_seconds=wk.get("stuck_seconds", 600.0, _number(1, 86400), "seconds"),
        commit_batch=wk.get("commit_batch", 256, _integer(1, 10000), ""),
    )
    if workers.retry_initial > workers.retry_max:
        problems.append(
            f"At 'workers.retry_initial': got {_bound_text(workers.retry_initial)}, expected at "
            f"most workers.retry_max ({_bound_text(workers.retry_max)})"
        )
    wk.finish()

    e = top.section("extract")
    extract = ExtractSettings(
        timeout_seconds=e.get("timeout_seconds", 30.0, _number(0.1, 3600), "seconds"),
        # PostgreSQL text holds at most 1 GB; RLIMIT_AS takes bytes in 64 bits.
        max_text_chars=e.get("max_text_chars", 5_000_000, _integer(1000, 1_000_000_000), ""),
        max_pdf_pages=e.get("max_pdf_pages", 5000, _integer(1, 1_000_000), ""),
        memory_limit_mb=e.get("memory_limit_mb", 1024, _integer(64, 1024 * 1024), ""),
    )
    e.finish()

    s = top.section("search")
    language = s.get("language", "english", _string, "a text search configuration name")
    if not _LANGUAGE_RE.match(language):
        s.problem("language", language, "a PostgreSQL text search configuration such as english")
        language = "english"
    search = SearchSettings(language=language)
    s.finish()

    st = top.section("store")
    store = StoreSettings(fsync=st.get("fsync", True, _boolean, "true or false"))
    st.finish()

    lg = top.section("logging")
    logging_settings = LoggingSettings(
        level=lg.get("level", "INFO", lambda v: _choice(*LOG_LEVELS)(str(v).upper()), "")
    )
    lg.finish()

    jobs = parse_jobs(top.section("jobs"), rescan_interval=watch.rescan_interval)
    top.finish()

    if problems:
        raise ConfigError(source, problems)
    return Settings(
        inbox=inbox,
        state_dir=state_dir,
        store_path=store_path,
        failed_path=failed_path,
        backups_path=backups_path,
        watch=watch,
        database=database,
        workers=workers,
        extract=extract,
        search=search,
        store=store,
        logging=logging_settings,
        jobs=jobs,
        source=source,
    )


def find_config(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    """--config, then $ALFRD_CONFIG, then /etc/alfrd/alfrd.yaml, then ./config/alfrd.yaml."""
    if explicit:
        return Path(explicit)
    if environ.get("ALFRD_CONFIG"):
        return Path(environ["ALFRD_CONFIG"])
    for candidate in CONFIG_SEARCH_ORDER:
        if Path(candidate).is_file():
            return Path(candidate)
    return None


def load_settings(
    explicit: str | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Load, validate and apply environment overrides. Raises ConfigError."""
    environ = os.environ if environ is None else environ
    path = find_config(explicit, environ)
    if path is None:
        settings = parse_settings({}, source="<defaults>", base_dir=Path.cwd())
    else:
        settings = _load_file(path)
    return apply_environment(settings, environ)


def _load_file(path: Path) -> Settings:
    source = display_text(str(path))  # a file name that is not UTF-8 still prints
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [f"cannot read the file: {exc.strerror}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [f"not UTF-8 text: {exc.reason}"]) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"invalid YAML at {where}{problem}"]) from exc
    # Relative paths in a config file are relative to the directory the daemon runs from when
    # the file sits in ./config (a clone), else to the file's own directory.
    base = Path.cwd() if path.resolve().parent == (Path.cwd() / "config").resolve() else (
        path.resolve().parent
    )
    return parse_settings(data, source=source, base_dir=base)


def apply_environment(settings: Settings, environ: Mapping[str, str]) -> Settings:
    """ALFRD_DATABASE_URL and a systemd credential override the file, so secrets need not sit
    in the YAML."""
    url = environ.get("ALFRD_DATABASE_URL") or settings.database.url
    password = _credential_password(environ)
    if password is not None:
        url = _with_password(url, password)
    if url != settings.database.url:
        settings = replace(settings, database=replace(settings.database, url=url))
    return settings


def _credential_password(environ: Mapping[str, str]) -> str | None:
    directory = environ.get("CREDENTIALS_DIRECTORY")
    if not directory:
        return None
    path = Path(directory) / "db-password"
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return None


def _with_password(url: str | None, password: str) -> str:
    """Adds the password as a libpq keyword, which psycopg merges with URL or key=value DSNs."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url or "", password=password)


def uses_database_from_environment(settings: Settings, environ: Mapping[str, str]) -> bool:
    """libpq's PG* variables name a server even when no URL is configured."""
    return settings.database.url is None and any(
        environ.get(k) for k in ("PGHOST", "PGDATABASE", "PGSERVICE")
    )


def check_paths(settings: Settings) -> list[str]:
    """Directory problems a start would hit; `alfrd config check` and the daemon share this."""
    problems = []
    inbox = settings.inbox.path
    if inbox.exists() and not inbox.is_dir():
        problems.append(f"At 'inbox.path': got '{inbox}', expected a directory (it is a file)")
    elif not inbox.exists() and not inbox.parent.is_dir():
        problems.append(
            f"At 'inbox.path': got '{inbox}', expected a directory or one that can be created "
            f"(its parent '{inbox.parent}' does not exist)"
        )
    for key, path in (
        ("state_dir", settings.state_dir),
        ("paths.store", settings.store_path),
        ("paths.failed", settings.failed_path),
    ):
        if path.exists() and not path.is_dir():
            problems.append(f"At '{key}': got '{path}', expected a directory (it is a file)")
    if _inside(settings.failed_path, inbox) or _inside(settings.store_path, inbox):
        problems.append(
            "At 'paths': the store and failed folders must be outside the inbox, "
            f"got store '{settings.store_path}', failed '{settings.failed_path}'"
        )
    return problems


def _inside(path: Path, parent: Path) -> bool:
    try:
        path.resolve().relative_to(parent.resolve())
    except ValueError:
        return False
    return True


def world_readable_secret(path: Path | None) -> bool:
    """True when the config file itself holds a database password and others may read it."""
    if path is None:
        return False
    try:
        if not path.stat().st_mode & stat.S_IROTH:
            return False
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        url = (data.get("database") or {}).get("url")
    except (OSError, yaml.YAMLError, AttributeError, UnicodeDecodeError):
        return False
    if not isinstance(url, str):
        return False
    from psycopg.conninfo import conninfo_to_dict

    try:
        return bool(conninfo_to_dict(url).get("password"))
    except Exception:
        return False


def settings_fields(settings: Settings) -> dict[str, Any]:
    """A flat view for `alfrd config check --json`."""
    out: dict[str, Any] = {}
    for f in fields(settings):
        value = getattr(settings, f.name)
        if hasattr(value, "__dataclass_fields__"):
            for sub in fields(value):
                out[f"{f.name}.{sub.name}"] = getattr(value, sub.name)
        else:
            out[f.name] = value
    return out
