"""Configuration: defaults, every problem reported at once with key, value and expectation."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from alfrd_daemon.config import (
    ConfigError,
    check_paths,
    load_settings,
    parse_settings,
    parse_size,
    world_readable_secret,
)

REPO = Path(__file__).resolve().parents[2]


def test_documented_example_is_valid_and_matches_defaults(tmp_path: Path) -> None:
    documented = load_settings(str(REPO / "config" / "alfrd.yaml"), environ={})
    defaults = parse_settings({}, source="x", base_dir=REPO)
    for section in ("watch", "database", "workers", "extract", "search", "store", "logging"):
        assert getattr(documented, section) == getattr(defaults, section), section
    assert documented.inbox.ignore_files == defaults.inbox.ignore_files
    assert documented.inbox.ignore_dirs == defaults.inbox.ignore_dirs


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
