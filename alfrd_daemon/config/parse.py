"""Finding, reading and validating the configuration file: YAML → Settings, with every problem
reported at once; the environment's overrides; the path checks a start would hit.

Defaults are not written here: each key that is absent reads its default from the settings
dataclass it fills (settings.py, jobs.py).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import yaml

from alfrd_daemon.config.hooks import parse_hooks
from alfrd_daemon.config.jobs import parse_jobs
from alfrd_daemon.config.reader import (
    PATH_LENGTH_EXPECTED,
    PATH_MAX_BYTES,
    Reader,
    boolean,
    bound_text,
    choice,
    conninfo,
    integer,
    listen_address,
    number,
    path_text,
    patterns,
    shown,
    size,
    string,
)
from alfrd_daemon.config.rules_files import parse_rules
from alfrd_daemon.config.settings import (
    MAX_INGEST_PROCESSES,
    PATH_FIELDS,
    DatabaseSettings,
    DatesSettings,
    ExtractSettings,
    InboxSettings,
    LoggingSettings,
    MetricsSettings,
    OcrSettings,
    SearchSettings,
    Settings,
    StoreSettings,
    TrashSettings,
    WatchSettings,
    WorkerSettings,
)
from alfrd_daemon.pgsafe import display_text

CONFIG_SEARCH_ORDER = ("/etc/alfrd/alfrd.yaml", "./config/alfrd.yaml")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MAX_FILE_SIZE_LIMIT = 2**50  # 1 PiB: far above any file a scanner writes, well inside off_t
_LANGUAGE_RE = re.compile(r"^[a-z_]+$")
_OCR_LANGUAGE_RE = re.compile(r"^[A-Za-z0-9_]{1,40}$")
_OCR_LANGUAGES_EXPECTED = ("expected a list of Tesseract language names such as [eng, deu] "
                           "(letters, digits and _)")


class ConfigError(Exception):
    """The configuration is invalid; `problems` holds one line per problem."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


def _long_path_problems(paths: Mapping[str, Path]) -> list[str]:
    """A relative path can fit alone and be too long once joined to its base directory."""
    return [f"At '{key}': got {shown(str(path))}, {PATH_LENGTH_EXPECTED}"
            for key, path in paths.items() if len(os.fsencode(path)) > PATH_MAX_BYTES]


def _resolve(base: Path, value: str | Path) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else (base / path)


def _language(value: object) -> str:
    name = string(value)
    if not _LANGUAGE_RE.match(name):
        raise ValueError("expected a PostgreSQL text search configuration such as english")
    return name


def _ocr_languages(value: object) -> tuple[str, ...]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and _OCR_LANGUAGE_RE.match(v) for v in value)):
        raise ValueError(_OCR_LANGUAGES_EXPECTED)
    return tuple(dict.fromkeys(value))  # in order, each once


def _textfile_path(value: object) -> str:
    text = path_text(value)
    if not text.endswith(".prom"):
        raise ValueError("expected a path ending in .prom (node-exporter reads only those)")
    return text


def _parse_ocr(o: Reader, problems: list[str]) -> OcrSettings:
    ocr = OcrSettings(
        enabled=o.get("enabled", boolean, "true or false"),
        workers=o.get("workers", integer(0, 256)),
        languages=o.get("languages", _ocr_languages),
        page_timeout_seconds=o.get("page_timeout_seconds", number(0.1, 86400), "seconds"),
        memory_limit_mb=o.get("memory_limit_mb", integer(64, 1024 * 1024)),
        max_pages=o.get("max_pages", integer(1, 1_000_000)),
        max_megapixels=o.get("max_megapixels", number(0.01, 10_000)),
        dpi=o.get("dpi", integer(50, 1200)),
        pdf_min_page_chars=o.get("pdf_min_page_chars", integer(0, 1_000_000)),
        detect_orientation=o.get("detect_orientation", boolean, "true or false"),
        max_attempts=o.get("max_attempts", integer(1, 100)),
        lease_seconds=o.get("lease_seconds", number(1, 86400), "seconds"),
        poll_seconds=o.get("poll_seconds", number(0.1, 3600), "seconds"),
    )
    # The lease is renewed after each page, and the first renewal comes after the document
    # was opened (its pages counted) and its first page read, each under the page timeout: a
    # shorter lease could run out on a worker that is fine, and a second would take over.
    if ocr.lease_seconds <= 2 * ocr.page_timeout_seconds:
        problems.append(
            f"At 'ocr.lease_seconds': got {bound_text(ocr.lease_seconds)}, expected more than "
            f"twice ocr.page_timeout_seconds ({bound_text(ocr.page_timeout_seconds)})")
    o.finish()
    return ocr


def _date_languages(value: object) -> tuple[str, ...]:
    from dateparser.data.languages_info import language_order

    if (not isinstance(value, list) or not value
            or not all(isinstance(v, str) and v in language_order for v in value)):
        raise ValueError("expected a list of dateparser language codes such as [en, de]")
    return tuple(dict.fromkeys(value))


def _parse_dates(r: Reader) -> DatesSettings:
    dates = DatesSettings(
        enabled=r.get("enabled", boolean, "true or false"),
        order=r.get("order", lambda v: choice("DMY", "MDY", "YMD")(str(v).upper())),
        languages=r.get("languages", _date_languages),
        max_chars=r.get("max_chars", integer(100, 10_000_000)),
        filename=r.get("filename", choice("fallback", "first", "off")),
    )
    r.finish()
    return dates


def parse_settings(data: object, *, source: str, base_dir: Path,
                   config_dir: Path | None = None) -> Settings:
    """Validate a parsed YAML document; relative paths resolve against `base_dir`, rule
    files (rules.d, rules.dir) against the config file's folder `config_dir`."""
    problems: list[str] = []
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(source, [f"At top level: got {shown(data)}, expected a mapping of "
                                   "sections"])
    defaults = Settings()
    top = Reader(data, "", problems, defaults)

    state_dir = _resolve(base_dir, top.get("state_dir", path_text))

    inbox_r = top.section("inbox", defaults.inbox)
    inbox_path = _resolve(base_dir, inbox_r.get("path", path_text))
    inbox = InboxSettings(
        path=inbox_path,
        recursive=inbox_r.get("recursive", boolean, "true or false"),
        subdirs_as_tags=inbox_r.get("subdirs_as_tags", boolean, "true or false"),
        ignore_files=inbox_r.get("ignore_files", patterns, "a list"),
        ignore_dirs=inbox_r.get("ignore_dirs", patterns, "a list"),
    )
    inbox_r.finish()

    # paths.store and the like fill top-level fields of Settings (store_path, …).
    paths_r = top.section("paths", defaults)
    paths = {name: _resolve(state_dir, paths_r.get(key.removeprefix("paths."), path_text,
                                                   attr=name))
             for key, name in PATH_FIELDS.items()}
    paths_r.finish()
    problems += _long_path_problems({"state_dir": state_dir, "inbox.path": inbox_path,
                                     **{key: paths[name] for key, name in PATH_FIELDS.items()}})

    w = top.section("watch", defaults.watch)
    watch = WatchSettings(
        mode=w.get("mode", choice("auto", "inotify", "polling")),
        poll_interval=w.get("poll_interval", number(0.1, 3600), "seconds"),
        settle_seconds=w.get("settle_seconds", number(0, 3600), "seconds"),
        quiet_seconds=w.get("quiet_seconds", number(0, 60), "seconds"),
        stale_write_seconds=w.get("stale_write_seconds", number(1, 86400), "seconds"),
        rescan_interval=w.get("rescan_interval", number(1, 86400), "seconds"),
        lease_check=w.get("lease_check", boolean, "true or false"),
        folder_quiet_max_seconds=w.get("folder_quiet_max_seconds", number(0, 86400),
                                       "seconds"),
    )
    w.finish()

    d = top.section("database", defaults.database)
    database = DatabaseSettings(
        url=d.get("url", conninfo, "a PostgreSQL URL such as postgresql://user@host/db"),
        pool_min=d.get("pool_min", integer(1, 100)),
        pool_max=d.get("pool_max", integer(1, 500)),
        connect_timeout=d.get("connect_timeout", number(1, 600), "seconds"),
        startup_timeout=d.get("startup_timeout", number(1, 3600), "seconds"),
        reconnect_timeout=d.get("reconnect_timeout", number(1, 86400), "seconds"),
    )
    if database.pool_min > database.pool_max:
        problems.append(
            f"At 'database.pool_min': got {database.pool_min}, expected at most "
            f"database.pool_max ({database.pool_max})"
        )
    d.finish()

    wk = top.section("workers", defaults.workers)
    workers = WorkerSettings(
        count=wk.get("count", integer(1, 256)),
        processes=wk.get("processes", integer(1, MAX_INGEST_PROCESSES)),
        queue_size=wk.get("queue_size", integer(1, 1_000_000)),
        max_file_size=wk.get("max_file_size", size(1, MAX_FILE_SIZE_LIMIT)),
        drain_timeout=wk.get("drain_timeout", number(0, 3600, above=True), "seconds"),
        retry_initial=wk.get("retry_initial", number(0.01, 3600), "seconds"),
        retry_max=wk.get("retry_max", number(0.01, 86400), "seconds"),
        stuck_seconds=wk.get("stuck_seconds", number(1, 86400), "seconds"),
        commit_batch=wk.get("commit_batch", integer(1, 10000)),
    )
    if workers.retry_initial > workers.retry_max:
        problems.append(
            f"At 'workers.retry_initial': got {bound_text(workers.retry_initial)}, expected at "
            f"most workers.retry_max ({bound_text(workers.retry_max)})"
        )
    wk.finish()

    e = top.section("extract", defaults.extract)
    extract = ExtractSettings(
        timeout_seconds=e.get("timeout_seconds", number(0.1, 3600), "seconds"),
        # PostgreSQL text holds at most 1 GB; RLIMIT_AS takes bytes in 64 bits.
        max_text_chars=e.get("max_text_chars", integer(1000, 1_000_000_000)),
        max_pdf_pages=e.get("max_pdf_pages", integer(1, 1_000_000)),
        memory_limit_mb=e.get("memory_limit_mb", integer(64, 1024 * 1024)),
        workers=e.get("workers", integer(0, 256)),
        recycle_after=e.get("recycle_after", integer(1, 1_000_000)),
    )
    e.finish()

    ocr = _parse_ocr(top.section("ocr", defaults.ocr), problems)

    s = top.section("search", defaults.search)
    search = SearchSettings(
        language=s.get("language", _language, "a text search configuration name"))
    s.finish()

    dates = _parse_dates(top.section("dates", defaults.dates))

    st = top.section("store", defaults.store)
    store = StoreSettings(fsync=st.get("fsync", boolean, "true or false"))
    st.finish()

    lg = top.section("logging", defaults.logging)
    logging_settings = LoggingSettings(
        level=lg.get("level", lambda v: choice(*LOG_LEVELS)(str(v).upper()))
    )
    lg.finish()

    mt = top.section("metrics", defaults.metrics)
    textfile = mt.get("textfile", _textfile_path)
    metrics = MetricsSettings(
        listen=mt.get("listen", listen_address),
        textfile=_resolve(state_dir, textfile) if textfile is not None else None,
        textfile_interval=mt.get("textfile_interval", number(1, 86400), "seconds"),
        cache_seconds=mt.get("cache_seconds", number(0, 3600), "seconds"),
    )
    mt.finish()

    tr = top.section("trash", defaults.trash)
    trash = TrashSettings(keep_days=tr.get("keep_days", integer(0, 36_500), "days"))
    tr.finish()

    jobs = parse_jobs(top.section("jobs", defaults.jobs), rescan_interval=watch.rescan_interval)
    hooks = parse_hooks(top.section("hooks", defaults.hooks))
    rules = parse_rules(top, source=source, base_dir=base_dir, config_dir=config_dir,
                        problems=problems)
    top.finish()

    if problems:
        raise ConfigError(source, problems)
    return Settings(
        inbox=inbox,
        state_dir=state_dir,
        store_path=paths["store_path"],
        failed_path=paths["failed_path"],
        backups_path=paths["backups_path"],
        watch=watch,
        database=database,
        workers=workers,
        extract=extract,
        ocr=ocr,
        search=search,
        dates=dates,
        store=store,
        logging=logging_settings,
        metrics=metrics,
        trash=trash,
        jobs=jobs,
        hooks=hooks,
        rules=rules,
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
    return parse_settings(data, source=source, base_dir=base, config_dir=path.resolve().parent)


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

