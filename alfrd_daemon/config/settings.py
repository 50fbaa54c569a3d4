"""The settings: typed, frozen dataclasses, one per section of config/alfrd.yaml, each field
holding its default (the one place a default is written; the parser and the documented file
follow it), and which settings a reload applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from alfrd_daemon.config.hooks import HooksSettings
from alfrd_daemon.config.jobs import RESCAN_INTERVAL, JobsSettings
from alfrd_daemon.config.rules_files import RulesSettings

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


@dataclass(frozen=True)
class InboxSettings:
    path: Path = Path("inbox")  # relative: the parser resolves it (see Settings)
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
    rescan_interval: float = RESCAN_INTERVAL
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


# Ingest processes at most (workers.processes): far more than cores a daemon could use.
MAX_INGEST_PROCESSES = 64


@dataclass(frozen=True)
class WorkerSettings:
    count: int = 4
    processes: int = 1
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
    workers: int = 0  # long-lived extractor processes; 0: one per core
    recycle_after: int = 500  # documents one extractor serves before it is replaced


@dataclass(frozen=True)
class OcrSettings:
    enabled: bool = True
    workers: int = 0  # OCR processes; 0: one per core the daemon may use, less one (at least 1)
    languages: tuple[str, ...] = ("eng",)
    page_timeout_seconds: float = 120.0
    memory_limit_mb: int = 1536
    max_pages: int = 500
    max_megapixels: float = 150.0
    dpi: int = 300
    pdf_min_page_chars: int = 20
    detect_orientation: bool = True
    max_attempts: int = 3
    lease_seconds: float = 300.0
    poll_seconds: float = 30.0


@dataclass(frozen=True)
class SearchSettings:
    language: str = "english"


@dataclass(frozen=True)
class DatesSettings:
    """The document's date, read from its text and file name (alfrd_daemon/dates).

    DMY by default: German and most English outside the US write the day first. A dotted
    date (05.03.2024) is read day first and a year-first one as year-month-day whatever the
    order; the order decides only the forms that leave it open (3/5/2024)."""

    enabled: bool = True
    order: str = "DMY"  # DMY | MDY | YMD
    languages: tuple[str, ...] = ("en", "de")  # month names, as dateparser's language codes
    max_chars: int = 20_000  # the date is near the top: only this much of the text is scanned
    filename: str = "fallback"  # fallback | first | off: where a date in the file name ranks


@dataclass(frozen=True)
class StoreSettings:
    fsync: bool = True


@dataclass(frozen=True)
class MetricsSettings:
    listen: str | None = None  # host:port of the Prometheus endpoint (e.g. 127.0.0.1:9464)
    textfile: Path | None = None  # a node-exporter textfile, rewritten every textfile_interval
    textfile_interval: float = 15.0
    cache_seconds: float = 5.0  # the database's figures are this old at most


@dataclass(frozen=True)
class TrashSettings:
    # Days a deleted document (row and stored file) stays restorable before the prune job
    # removes it.
    keep_days: int = 30


@dataclass(frozen=True)
class LoggingSettings:
    level: str = "INFO"


@dataclass(frozen=True)
class Settings:
    """The whole configuration. The paths' defaults are relative: parse_settings resolves
    state_dir and inbox.path against its base directory (the clone or the file's directory,
    see load_settings) and the paths.* against state_dir, so parsed Settings hold absolute
    paths."""

    inbox: InboxSettings = field(default_factory=InboxSettings)
    state_dir: Path = Path("var")
    store_path: Path = Path("store")
    failed_path: Path = Path("failed")
    backups_path: Path = Path("backups")
    watch: WatchSettings = field(default_factory=WatchSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    workers: WorkerSettings = field(default_factory=WorkerSettings)
    extract: ExtractSettings = field(default_factory=ExtractSettings)
    ocr: OcrSettings = field(default_factory=OcrSettings)
    search: SearchSettings = field(default_factory=SearchSettings)
    dates: DatesSettings = field(default_factory=DatesSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    trash: TrashSettings = field(default_factory=TrashSettings)
    jobs: JobsSettings = field(default_factory=JobsSettings)
    hooks: HooksSettings = field(default_factory=HooksSettings)
    rules: RulesSettings = field(default_factory=RulesSettings)
    source: str = "<defaults>"

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
    "jobs.retry_failed", "jobs.prune", "trash.keep_days",
    # Rules are compiled again from the re-read files (rules.d included) on every reload.
    "rules.dir", "rules.regex_timeout", "rules.inline",
})
RESTART_KEYS: frozenset[str] = frozenset({
    "state_dir", "paths.store", "paths.failed", "paths.backups",
    "inbox.path", "inbox.recursive", "watch.mode", "watch.poll_interval",
    "database.url", "database.pool_min", "database.pool_max", "database.connect_timeout",
    "database.startup_timeout", "database.reconnect_timeout",
    "workers.count", "workers.processes", "workers.queue_size", "workers.commit_batch",
    "store.fsync",
    "extract.workers", "extract.recycle_after",
    # The OCR workers and their pool are built once at start.
    "ocr.enabled", "ocr.workers", "ocr.languages", "ocr.page_timeout_seconds",
    "ocr.memory_limit_mb", "ocr.max_pages", "ocr.max_megapixels", "ocr.dpi",
    "ocr.pdf_min_page_chars", "ocr.detect_orientation", "ocr.max_attempts",
    "ocr.lease_seconds", "ocr.poll_seconds",
    # The endpoint is bound and the textfile writer started once at start.
    "metrics.listen", "metrics.textfile", "metrics.textfile_interval",
    "metrics.cache_seconds",
    # The hook runners, and the hooks a host declares in the database, are set at start.
    "hooks.post_ingest", "hooks.post_ocr", "hooks.timeout_seconds", "hooks.workers",
    "hooks.retries",
    # The OCR service keeps the settings it started with; ingest following a reload alone
    # would date the same kind of document two ways.
    "dates.enabled", "dates.order", "dates.languages", "dates.max_chars", "dates.filename",
})
# YAML keys whose value sits in a top-level Settings field of another name.
PATH_FIELDS: dict[str, str] = {
    "paths.store": "store_path", "paths.failed": "failed_path", "paths.backups": "backups_path",
}
