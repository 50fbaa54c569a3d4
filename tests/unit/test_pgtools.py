"""Choosing PostgreSQL client programs by version, and passwords kept off the command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from alfrd_daemon.db.pgtools import NoSuitableTool, choose, libpq_args


def fake_dirs(tmp_path: Path, *versions: str) -> list[Path]:
    dirs = []
    for version in versions:
        d = tmp_path / version / "bin"
        d.mkdir(parents=True)
        tool = d / "pg_dump"
        tool.write_text(f'#!/bin/sh\necho "pg_dump (PostgreSQL) {version} (Debian)"\n')
        tool.chmod(0o755)
        dirs.append(d)
    return dirs


def test_the_servers_own_version_wins_else_the_oldest_that_fits(tmp_path: Path) -> None:
    dirs = fake_dirs(tmp_path, "18.1", "13.9", "15.4", "16.2")
    assert choose("pg_dump", minimum=15, prefer=15, candidates=dirs).version == "15.4"
    assert choose("pg_dump", minimum=14, prefer=14, candidates=dirs).version == "15.4"
    assert choose("pg_dump", minimum=17, prefer=17, candidates=dirs).major == 18


def test_no_fitting_tool_names_the_version_needed(tmp_path: Path) -> None:
    dirs = fake_dirs(tmp_path, "13.9", "15.4")
    with pytest.raises(NoSuitableTool) as err:
        choose("pg_dump", minimum=18, prefer=18, candidates=dirs,
               purpose=" for the PostgreSQL 18 server")
    message = str(err.value)
    assert "pg_dump 18 or newer is needed for the PostgreSQL 18 server" in message
    assert "found pg_dump 13.9" in message and "pg_dump 15.4" in message
    with pytest.raises(NoSuitableTool, match="no pg_dump found in"):
        choose("pg_dump", minimum=15, explicit=tmp_path / "missing")


def test_password_travels_in_the_environment_only() -> None:
    dsn, env = libpq_args("postgresql://alfrd:s3cret@db.example:5433/archive")
    assert "s3cret" not in dsn
    assert env["PGPASSWORD"] == "s3cret"
    assert "host=db.example" in dsn and "port=5433" in dsn and "dbname=archive" in dsn
    dsn, _ = libpq_args("host=/run/pg user=postgres dbname=alfrd")
    assert sorted(dsn.split()) == ["dbname=alfrd", "host=/run/pg", "user=postgres"]
    assert libpq_args("")[0] == ""
