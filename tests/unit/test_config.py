"""Configuration: defaults, every problem reported at once with key, value and expectation."""

from __future__ import annotations

import os
from dataclasses import fields, is_dataclass, replace
from pathlib import Path

import pytest
import yaml

from alfrd_daemon.config.parse import (
    ConfigError,
    check_paths,
    load_settings,
    parse_settings,
    world_readable_secret,
)
from alfrd_daemon.config.reader import parse_size
from alfrd_daemon.config.schedule import Schedule, every
from alfrd_daemon.config.settings import PATH_FIELDS, Settings

REPO = Path(__file__).resolve().parents[2]


# Keys the documented file leaves empty because their default is not a fixed value.
DERIVED_DEFAULTS = {"jobs.rescan.schedule"}  # every watch.rescan_interval


def code_defaults(value: object, prefix: str = "") -> dict[str, object]:
    """Every setting the code knows, as its YAML key ('workers.count', 'paths.store',
    'jobs.backup.keep_daily'), with the default its dataclass field holds."""
    by_field = {name: key for key, name in PATH_FIELDS.items()}
    out: dict[str, object] = {}
    for f in fields(value):  # type: ignore[arg-type]
        if f.name == "source":
            continue
        key = by_field.get(f.name) or f"{prefix}{f.name}"
        sub = getattr(value, f.name)
        if is_dataclass(sub) and not isinstance(sub, Schedule):
            out.update(code_defaults(sub, f"{key}."))
        else:
            out[key] = sub
    return out


def documented(value: object, prefix: str = "") -> dict[str, object]:
    """Every leaf key of the documented YAML with its raw value."""
    if not isinstance(value, dict):
        return {prefix.removesuffix("."): value}
    out: dict[str, object] = {}
    for key, sub in value.items():
        out.update(documented(sub, f"{prefix}{key}."))
    return out


def test_the_documented_file_has_every_key_with_the_codes_default() -> None:
    text = (REPO / "config" / "alfrd.yaml").read_text(encoding="utf-8")
    doc = documented(yaml.safe_load(text))
    defaults = code_defaults(Settings())
    assert sorted(set(defaults) - set(doc)) == [], "settings missing from config/alfrd.yaml"
    assert sorted(set(doc) - set(defaults)) == [], "keys in config/alfrd.yaml the code ignores"
    # An empty value documents nothing: only a default that is itself unset may be left empty.
    empty = {key for key, value in doc.items() if value is None}
    assert empty - DERIVED_DEFAULTS == {key for key, value in defaults.items() if value is None}
    # Each documented value, read as the daemon reads it, is exactly the default.
    base = Path("/srv/alfrd")
    read = parse_settings(yaml.safe_load(text), source="doc", base_dir=base)
    assert read == parse_settings({}, source="doc", base_dir=base)


def test_the_parser_takes_its_defaults_from_the_dataclasses() -> None:
    """An empty file gives the dataclasses' defaults, paths resolved: state_dir and inbox.path
    against the file's directory, the rest against state_dir."""
    base = Path("/srv/alfrd")
    plain = Settings()
    state_dir = base / plain.state_dir
    expected = replace(
        plain, inbox=replace(plain.inbox, path=base / plain.inbox.path), state_dir=state_dir,
        store_path=state_dir / plain.store_path, failed_path=state_dir / plain.failed_path,
        backups_path=state_dir / plain.backups_path, source="empty")
    assert parse_settings({}, source="empty", base_dir=base) == expected
    assert expected.jobs.rescan.schedule == every(plain.watch.rescan_interval)


def test_every_problem_is_reported_once_with_its_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("inbox:\n  path: 5\n  recursve: true\nworkers:\n  count: 0\n"
                    "  max_file_size: lots\nwatch:\n  mode: fast\nsearch:\n  language: 'x;y'\n"
                    "database:\n  pool_min: 9\n  pool_max: 3\nbogus: 1\n")
    with pytest.raises(ConfigError) as err:
        load_settings(str(path), environ={})
    problems = err.value.problems
    assert len(problems) == 8, problems
    text = "\n".join(problems)
    for expected in ("At 'inbox.path': got 5", "At 'inbox.recursve': unknown setting",
                     "At 'workers.count': got 0, expected a whole number at least 1",
                     "At 'workers.max_file_size': got 'lots', expected a size",
                     "At 'watch.mode': got 'fast', expected one of auto, inotify, polling",
                     "At 'search.language'", "At 'database.pool_min'", "At 'bogus'"):
        assert expected in text
    assert all(p.count("\n") == 0 for p in problems)


def test_invalid_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("inbox:\n  path: [unclosed\n")
    with pytest.raises(ConfigError) as err:
        load_settings(str(path), environ={})
    assert "invalid YAML at line" in err.value.problems[0]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(str(tmp_path / "nope.yaml"), environ={})
    assert "cannot read the file" in err.value.problems[0]


def test_search_order_and_environment_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "a.yaml"
    cfg.write_text("database:\n  url: postgresql://a@h/db\n")
    s = load_settings(None, environ={"ALFRD_CONFIG": str(cfg)})
    assert s.source == str(cfg) and s.database.url == "postgresql://a@h/db"
    s = load_settings(None, environ={"ALFRD_CONFIG": str(cfg),
                                     "ALFRD_DATABASE_URL": "postgresql://b@h/db"})
    assert s.database.url == "postgresql://b@h/db"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "db-password").write_text("s3cret\n")
    s = load_settings(str(cfg), environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert "s3cret" in (s.database.url or "")


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "etc" / "alfrd.yaml"
    cfg.parent.mkdir()
    cfg.write_text("state_dir: state\ninbox:\n  path: in\npaths:\n  failed: /srv/failed\n")
    s = load_settings(str(cfg), environ={})
    assert s.state_dir == tmp_path / "etc" / "state"
    assert s.inbox.path == tmp_path / "etc" / "in"
    assert s.store_path == tmp_path / "etc" / "state" / "store"
    assert s.failed_path == Path("/srv/failed")


def test_sizes() -> None:
    assert parse_size("2GiB") == 2 * 1024**3
    assert parse_size("500MB") == 500 * 10**6
    assert parse_size(123) == 123
    with pytest.raises(ValueError):
        parse_size("much")


def test_store_inside_inbox_and_file_as_inbox_are_problems(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    s = parse_settings({"inbox": {"path": "afile"}, "paths": {"store": str(tmp_path / "afile" /
                       "s")}}, source="t", base_dir=tmp_path)
    problems = check_paths(s)
    assert any("inbox.path" in p and "it is a file" in p for p in problems)
    s = parse_settings({"inbox": {"path": "in"}, "state_dir": "in/var"}, source="t",
                       base_dir=tmp_path)
    assert any("outside the inbox" in p for p in check_paths(s))


def test_world_readable_password_is_detected(tmp_path: Path) -> None:
    cfg = tmp_path / "alfrd.yaml"
    cfg.write_text("database:\n  url: postgresql://alfrd:hunter2@db/alfrd\n")
    os.chmod(cfg, 0o644)
    assert world_readable_secret(cfg)
    os.chmod(cfg, 0o640)
    assert not world_readable_secret(cfg)
    cfg.write_text("database:\n  url: postgresql://alfrd@db/alfrd\n")
    os.chmod(cfg, 0o644)
    assert not world_readable_secret(cfg)


# --- hostile values: every number, size and path is range-checked where it is parsed ----------
def nested(key: str, value: object) -> dict:
    """'workers.count', 5 → {'workers': {'count': 5}}."""
    *sections, last = key.split(".")
    data: dict = {last: value}
    for section in reversed(sections):
        data = {section: data}
    return data


def only_problem(data: dict) -> str:
    """The one problem line a document with one bad value gives (never another exception)."""
    with pytest.raises(ConfigError) as err:
        parse_settings(data, source="t.yaml", base_dir=REPO)
    problems = err.value.problems
    assert len(problems) == 1, problems
    assert "\n" not in problems[0]
    return problems[0]


# key → whether 0 is a valid value for it.
NUMBER_KEYS = {
    "watch.poll_interval": False, "watch.settle_seconds": True, "watch.quiet_seconds": True,
    "watch.stale_write_seconds": False, "watch.rescan_interval": False,
    "database.pool_min": False, "database.pool_max": False, "database.connect_timeout": False,
    "database.startup_timeout": False, "database.reconnect_timeout": False,
    "workers.count": False, "workers.processes": False, "workers.queue_size": False,
    "workers.drain_timeout": False,
    "workers.retry_initial": False, "workers.retry_max": False, "workers.stuck_seconds": False,
    "workers.commit_batch": False,
    "extract.timeout_seconds": False, "extract.max_text_chars": False,
    "extract.max_pdf_pages": False, "extract.memory_limit_mb": False,
    "ocr.workers": True, "ocr.page_timeout_seconds": False, "ocr.memory_limit_mb": False,
    "ocr.max_pages": False, "ocr.max_megapixels": False, "ocr.dpi": False,
    "ocr.pdf_min_page_chars": True, "ocr.max_attempts": False, "ocr.lease_seconds": False,
    "ocr.poll_seconds": False,
}
HOSTILE_NUMBERS = [-1, -0.5, float("nan"), float("inf"), float("-inf"), 10**30, 1e300, True,
                   False, "10", [1], {"a": 1}]
PATH_KEYS = ["state_dir", "inbox.path", "paths.store", "paths.failed", "paths.backups"]
HOSTILE_PATHS = ["in\0box", "\0", "", "   ", "x" * 256, "/".join(["d" * 200] * 21), 5, True,
                 ["a"]]


@pytest.mark.parametrize("key", sorted(NUMBER_KEYS))
@pytest.mark.parametrize("value", HOSTILE_NUMBERS, ids=repr)
def test_hostile_numbers_are_one_line_naming_the_key(key: str, value: object) -> None:
    line = only_problem(nested(key, value))
    assert line.startswith(f"At '{key}': got "), line
    assert "expected a " in line and "at most" in line, line


@pytest.mark.parametrize("key", sorted(k for k, zero_ok in NUMBER_KEYS.items() if not zero_ok))
def test_zero_is_refused_where_it_makes_no_sense(key: str) -> None:
    assert only_problem(nested(key, 0)).startswith(f"At '{key}': got 0, expected")


@pytest.mark.parametrize("value", [-1, 0, "0B", "-5MB", "0.1B", float("nan"), float("inf"),
                                   2**51, "2000TiB", "9" * 400, "9" * 400 + "GB", True, "",
                                   "lots"], ids=repr)
def test_hostile_sizes_are_refused(value: object) -> None:
    line = only_problem(nested("workers.max_file_size", value))
    assert line.startswith("At 'workers.max_file_size': got "), line
    assert "expected a size from 1 byte to 1PiB" in line, line


def test_sizes_at_the_bounds_are_accepted() -> None:
    for value, size in ((1, 1), ("1B", 1), ("1PiB", 2**50), ("2.5GB", 2_500_000_000)):
        s = parse_settings(nested("workers.max_file_size", value), source="t", base_dir=REPO)
        assert s.workers.max_file_size == size


@pytest.mark.parametrize("key", PATH_KEYS)
@pytest.mark.parametrize("value", HOSTILE_PATHS, ids=lambda v: repr(v)[:20])
def test_hostile_paths_are_one_line_naming_the_key(key: str, value: object) -> None:
    line = only_problem(nested(key, value))
    assert line.startswith(f"At '{key}': got "), line
    assert "expected a path" in line, line
    assert "\0" not in line  # shown escaped, so the line prints


def test_a_relative_path_too_long_once_joined_to_its_base() -> None:
    # Each value fits alone; under a long state_dir the store path does not.
    long_dir = "/" + "/".join(["d" * 250] * 15)
    line = only_problem({"state_dir": long_dir, "paths": {"store": "s" * 250 + "/" +
                                                          "t" * 250}})
    assert line.startswith("At 'paths.store': got "), line


@pytest.mark.parametrize("key", ["database.url"])
@pytest.mark.parametrize("value", ["postgresql://a@h/db\0", "host=h dbname", "not a url", 5],
                         ids=repr)
def test_hostile_database_urls(key: str, value: object) -> None:
    assert only_problem(nested(key, value)).startswith(f"At '{key}': got ")


def test_a_refused_url_does_not_show_its_password() -> None:
    line = only_problem(nested("database.url", "password=hunter2 host"))
    assert "hunter2" not in line and "database.url" in line


def test_nul_in_ignore_patterns_and_search_language() -> None:
    assert only_problem(nested("inbox.ignore_files", ["*.tmp", "a\0b"])).startswith(
        "At 'inbox.ignore_files'")
    assert only_problem(nested("search.language", "eng\0lish")).startswith(
        "At 'search.language'")


def test_retry_initial_above_retry_max_is_a_problem() -> None:
    line = only_problem({"workers": {"retry_initial": 30, "retry_max": 5}})
    assert line == ("At 'workers.retry_initial': got 30, expected at most workers.retry_max "
                    "(5)")


def test_a_key_with_a_newline_stays_on_one_line() -> None:
    line = only_problem({"workers": {"count\nx": 1}})
    assert line.startswith("At 'workers.count\\nx': unknown setting"), line


def test_a_huge_value_is_shown_shortened() -> None:
    line = only_problem(nested("watch.mode", "x" * 10_000))
    assert len(line) < 300 and line.startswith("At 'watch.mode': got 'xxx"), line


@pytest.mark.parametrize("value", [[], "eng", ["eng", ""], ["en g"], ["eng+deu"], [5],
                                   ["../x"]], ids=repr)
def test_hostile_ocr_languages(value: object) -> None:
    line = only_problem(nested("ocr.languages", value))
    assert line.startswith("At 'ocr.languages': got "), line
    assert "Tesseract language names" in line, line


def test_ocr_languages_keep_their_order_once_each() -> None:
    s = parse_settings(nested("ocr.languages", ["deu", "eng", "deu"]), source="t",
                       base_dir=REPO)
    assert s.ocr.languages == ("deu", "eng")


def test_the_ocr_lease_must_outlast_a_page() -> None:
    line = only_problem({"ocr": {"lease_seconds": 60, "page_timeout_seconds": 30}})
    assert line == ("At 'ocr.lease_seconds': got 60, expected more than twice "
                    "ocr.page_timeout_seconds (30)")
    ok = parse_settings({"ocr": {"lease_seconds": 61, "page_timeout_seconds": 30}},
                        source="t", base_dir=REPO)
    assert ok.ocr.lease_seconds == 61
