"""Bad input gets one clear line, never a traceback: hostile configuration files for
`alfrd config check` and `alfrd run`, and hostile arguments for every `alfrd` command."""

from __future__ import annotations

import argparse
import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml

from alfrd_daemon.cli.common import EXIT_PROBLEM, EXIT_UNAVAILABLE, EXIT_USAGE
from tests.conftest import RUN_PREFIX, create_database, drop_database
from tests.helpers import REPO, alfrd_env

pytestmark = pytest.mark.timeout(180)


def alfrd(*args: str | bytes, timeout: float = 30) -> subprocess.CompletedProcess[bytes]:
    """`python -m alfrd_daemon ARGS` with argv as bytes (so it may be invalid UTF-8). A command
    still running at the timeout (a daemon that started on a config it should have refused) is
    killed by subprocess.run and fails the test."""
    return subprocess.run([sys.executable, "-m", "alfrd_daemon", *args], capture_output=True,
                          timeout=timeout, env=alfrd_env(), cwd=REPO, stdin=subprocess.DEVNULL)


def lines(output: bytes) -> list[str]:
    return output.decode("utf-8").strip().splitlines()


# --- configuration ------------------------------------------------------------------------------
# (key, YAML value text): each passed `alfrd config check` before, and then failed every file,
# never made a file ready, or ended `alfrd run` with a traceback.
HOSTILE_CONFIG = [
    ("workers.max_file_size", "-1"),
    ("watch.quiet_seconds", ".nan"),
    ("watch.settle_seconds", ".nan"),
    ("watch.poll_interval", "-.inf"),
    ("inbox.path", '"/tmp/in\\0box"'),
    ("paths.store", '"st\\0re"'),
    ("jobs.backup.pg_bin_dir", '"/usr/lib\\0/bin"'),
    ("jobs.prune.schedule", ".nan"),
]


def hostile_config(tmp_path: Path, db_url: str, key: str, value: str) -> Path:
    """A valid config with one hostile value, written as YAML text (so `.nan` and "\\0" are
    what YAML makes of them)."""
    data: dict = {"state_dir": str(tmp_path / "var"), "inbox": {"path": str(tmp_path / "inbox")},
                  "database": {"url": db_url}}
    *sections, last = key.split(".")
    section = data
    for name in sections:
        section = section.setdefault(name, {})
    section[last] = "HOSTILE_VALUE"
    path = tmp_path / "hostile.yaml"
    path.write_text(yaml.safe_dump(data).replace("HOSTILE_VALUE", value))
    return path


@pytest.mark.parametrize(("key", "value"), HOSTILE_CONFIG)
def test_hostile_config_is_one_line_for_config_check_and_run(tmp_path: Path, db_url: str,
                                                            key: str, value: str) -> None:
    config = hostile_config(tmp_path, db_url, key, value)
    assert yaml.safe_load(config.read_text()) is not None  # the file itself is valid YAML
    check = alfrd("config", "check", str(config))
    assert check.returncode == 1, check
    assert lines(check.stdout) == [line for line in lines(check.stdout)
                                   if line.startswith(f"{config}: At '{key}': got ")], check
    assert len(lines(check.stdout)) == 1 and b"Traceback" not in check.stderr, check

    run = alfrd("run", "--config", str(config))
    assert run.returncode == 1, run
    assert b"Traceback" not in run.stderr + run.stdout, run.stderr.decode()
    assert lines(run.stderr) == [line for line in lines(run.stderr)
                                 if line.startswith(f"{config}: At '{key}': got ")], run
    assert len(lines(run.stderr)) == 1, run.stderr.decode()


# --- command-line arguments ---------------------------------------------------------------------
def parser_commands() -> set[tuple[str, ...]]:
    """Every command the parser knows, nested ones as ('config', 'check')."""
    from alfrd_daemon.cli.main import build_parser

    def walk(parser: argparse.ArgumentParser, prefix: tuple[str, ...]) -> set[tuple[str, ...]]:
        found: set[tuple[str, ...]] = set()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    inner = walk(sub, (*prefix, name))
                    found |= inner or {(*prefix, name)}
        return found

    return walk(build_parser(), ())


@dataclass(frozen=True)
class Case:
    argv: tuple[str | bytes, ...]
    code: int  # the documented exit code
    names: str  # what the one line on stderr must contain: the argument, or the value
    stream: str = "stderr"  # `alfrd config check` reports on stdout: its output is the report
    database: str = "up"  # "down": the config names a server that refuses connections

    def __str__(self) -> str:
        return " ".join(a.decode("ascii", "backslashreplace") if isinstance(a, bytes) else a
                        for a in self.argv) or "(nothing)"


USAGE, PROBLEM, UNAVAILABLE = EXIT_USAGE, EXIT_PROBLEM, EXIT_UNAVAILABLE
LATIN1, FF = b"caf\xe9", b"\xff"
HUGE = "9" * 40
MISSING_ID = "00000000-0000-4000-8000-000000000000"
CASES = [
    Case(("run", "--log-level", "LOUD"), USAGE, "--log-level"),
    Case(("run", "--config", ""), USAGE, "--config"),
    Case(("search", LATIN1), USAGE, "argument query: got 'caf\\xe9', expected UTF-8 text"),
    Case(("search", ""), USAGE, "argument query"),
    Case(("search", "x", "--limit", "-1"), USAGE, "argument --limit: got '-1'"),
    Case(("search", "x", "--limit", "0"), USAGE, "argument --limit"),
    Case(("search", "x", "--limit", HUGE), USAGE, "argument --limit"),
    Case(("search", "x", "--limit", "nan"), USAGE, "argument --limit"),
    Case(("search", "x", "--limit", FF), USAGE, "argument --limit: got '\\xff'"),
    Case(("search", "x", "--tag", ""), USAGE, "argument --tag"),
    Case(("list", "--limit", "-1"), USAGE, "argument --limit"),
    Case(("list", "--limit", HUGE), USAGE, "argument --limit"),
    Case(("list", "--status", FF), USAGE, "argument --status"),
    Case(("list", "--tag", " "), USAGE, "argument --tag"),
    Case(("show", FF), USAGE, "argument id: got '\\xff'"),
    Case(("show", "%"), USAGE, "argument id"),
    Case(("show", ""), USAGE, "argument id"),
    Case(("show", "-"), USAGE, "argument id"),
    Case(("show", MISSING_ID), PROBLEM, f"no document matches '{MISSING_ID}'"),
    Case(("show", "abc", "--text-limit", "-1"), USAGE, "argument --text-limit"),
    Case(("show", "abc", "--text-limit", HUGE), USAGE, "argument --text-limit"),
    Case(("status", "--verbose"), USAGE, "unrecognized arguments: --verbose"),
    Case(("config", "check", ""), USAGE, "argument path"),
    Case(("config", "check", b"/nonexistent/" + FF + b".yaml"), PROBLEM,
         "/nonexistent/\\xff.yaml: cannot read the file: No such file or directory", "stdout"),
    Case(("config", "check", "/"), PROBLEM, "/: cannot read the file", "stdout"),
    Case(("config", "bogus"), USAGE, "argument SUBCOMMAND"),
    Case(("retry",), USAGE, "pass --all"),
    Case(("retry", ""), USAGE, "argument names"),
    Case(("retry", FF), PROBLEM, "'\\xff' is not in"),
    Case(("retry", MISSING_ID), PROBLEM, "nor a document whose OCR failed"),
    Case(("worker", "--log-level", "LOUD"), USAGE, "--log-level"),
    Case(("worker", "now"), USAGE, "unrecognized arguments: now"),
    Case(("ocr",), USAGE, "--again"),
    Case(("ocr", "--again"), USAGE, "name document ids or pass --all"),
    Case(("ocr", "--again", "--all", "abcd"), USAGE, "not both"),
    Case(("ocr", "--again", FF), USAGE, "argument ids: got '\\xff'"),
    Case(("ocr", "--again", MISSING_ID), PROBLEM,
         f"no document of a type OCR reads matches '{MISSING_ID}'"),
    Case(("rules",), USAGE, "SUBCOMMAND"),
    Case(("rules", "test", FF), USAGE, "got '\\xff', expected an existing file or a document id"),
    Case(("rules", "test", MISSING_ID), PROBLEM, f"no file or document matches '{MISSING_ID}'"),
    Case(("rules", "apply"), USAGE, "name document ids, or pass --all or --since DATE"),
    Case(("rules", "apply", "--all", "abcd"), USAGE, "(one of them)"),
    Case(("rules", "apply", "--since", "soon"), USAGE, "argument --since: got 'soon'"),
    Case(("rules", "apply", "--all", "--from-id", "abc"), USAGE, "argument --from-id"),
    Case(("rules", "apply", "--all", "--batch-size", "0"), USAGE, "argument --batch-size"),
    Case(("rules", "apply", MISSING_ID), PROBLEM, f"no single document matches '{MISSING_ID}'"),
    Case(("rules", "apply", "--all"), UNAVAILABLE, "alfrd rules apply: database unavailable",
         database="down"),
    Case(("get",), USAGE, "name a document id, or --search QUERY"),
    Case(("get", "%"), USAGE, "argument ID: got '%', expected a document id"),
    Case(("get", "abc", "--stdout", "--json"), USAGE, "--stdout and --json"),
    Case(("get", MISSING_ID), PROBLEM, f"no document matches '{MISSING_ID}'"),
    Case(("open",), USAGE, "required: id"),
    Case(("open", FF), USAGE, "argument id: got '\\xff'"),
    Case(("tag", "abc"), USAGE, "expected at least one +tag or -tag"),
    Case(("tag", "abc", "foo"), USAGE, "got 'foo', expected +tag to add or -tag to take off"),
    Case(("set", "abc"), USAGE, "name at least one of --title, --type"),
    Case(("set", "abc", "--date", "2024-13-01"), USAGE, "argument --date: got '2024-13-01'"),
    Case(("delete",), USAGE, "required: ID"),
    Case(("delete", "%"), USAGE, "argument ID: got '%'"),
    Case(("delete", MISSING_ID), PROBLEM, f"no document matches '{MISSING_ID}'"),
    Case(("restore-deleted", FF), USAGE, "argument ID: got '\\xff'"),
    Case(("restore-deleted", MISSING_ID), UNAVAILABLE, "database unavailable",
         database="down"),
    Case(("migrate", "now"), USAGE, "unrecognized arguments: now"),
    Case(("check", "--grace", "-1"), USAGE, "argument --grace"),
    Case(("check", "--grace", "nan"), USAGE, "argument --grace"),
    Case(("check", "--grace", "inf"), USAGE, "argument --grace"),
    Case(("jobs",), USAGE, "SUBCOMMAND"),
    Case(("jobs", "run"), USAGE, "name"),
    Case(("jobs", "run", "nightly"), USAGE, "argument name: got 'nightly', expected one of"),
    Case(("jobs", "run", FF), USAGE, "argument name: got '\\xff'"),
    Case(("jobs", "list", "--limit", "3"), USAGE, "unrecognized arguments: --limit 3"),
    Case(("jobs", "history", "nightly"), USAGE, "argument name"),
    Case(("jobs", "history", "--limit", "0"), USAGE, "argument --limit"),
    Case(("jobs", "history", "--limit", FF), USAGE, "argument --limit"),
    Case(("backup", "--list", "--keep", "3"), USAGE, "unrecognized arguments: --keep 3"),
    Case(("restore", "latest"), USAGE, "--to"),
    Case(("restore", "latest", "--to", FF), USAGE, "argument --to: got '\\xff'"),
    Case(("restore", "latest", "--to", ""), USAGE, "argument --to"),
    Case(("restore", "latest", "--to", "not a url"), USAGE, "argument --to"),
    Case(("restore", "", "--to", "postgresql://h/db"), USAGE, "argument backup"),
    Case(("restore", b"/nonexistent/" + FF, "--to", "postgresql://h/db"), PROBLEM,
         "no backup archive at /nonexistent/"),
    Case(("import-duckdb", ""), USAGE, "argument path"),
    Case(("import-duckdb", b"/nonexistent/" + FF), USAGE,
         "argument path: got '/nonexistent/\\xff'"),
    Case(("import-duckdb", "x", "--batch-size", "0"), USAGE, "argument --batch-size"),
    Case(("import-duckdb", "x", "--limit", "-1"), USAGE, "argument --limit"),
    Case(("import-duckdb", "CONFIG", "--timezone", FF), USAGE,
         "argument --timezone: unknown time zone '\\xff'"),
    Case(("import-duckdb", "CONFIG", "--files-root", b"/nonexistent/" + FF), USAGE,
         "argument --files-root: got '/nonexistent/\\xff'"),
    Case(("export-duckdb", ""), USAGE, "argument path"),
    Case(("export-duckdb", "x", "--timezone", "Mars/Olympus"), USAGE, "argument --timezone"),
    Case(("search", "x"), UNAVAILABLE, "alfrd search: database unavailable", database="down"),
    Case(("jobs", "list"), UNAVAILABLE, "alfrd jobs list: database unavailable",
         database="down"),
    Case(("migrate",), UNAVAILABLE, "alfrd migrate: database unavailable", database="down"),
    Case(("backup",), UNAVAILABLE, "database unavailable", database="down"),
    Case((FF,), USAGE, "argument COMMAND: invalid choice: '\\udcff'"),
    Case((), USAGE, "COMMAND"),
]


def test_the_cases_cover_every_command() -> None:
    commands = parser_commands()
    assert ("search",) in commands and ("jobs", "history") in commands
    missing = {cmd for cmd in commands if not any(c.argv[:len(cmd)] == cmd for c in CASES)}
    assert not missing, missing


@dataclass(frozen=True)
class Setup:
    url: str
    configs: dict[str, Path]  # "up": the real database; "down": a port nothing listens on


@pytest.fixture(scope="module")
def cli_setup(pg_admin: str, template_db: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    """One real database for all the cases (each case is a subprocess; a database per case
    would double the time), and configs pointing at it and at no server at all."""
    name = f"{RUN_PREFIX}_cli_{secrets.token_hex(3)}"
    url = create_database(pg_admin, name, template=template_db)
    tmp = tmp_path_factory.mktemp("cli")
    (tmp / "inbox").mkdir()
    configs = {}
    for state, db in (("up", url), ("down", "postgresql://alfrd@127.0.0.1:1/none")):
        configs[state] = tmp / f"{state}.yaml"
        configs[state].write_text(yaml.safe_dump({
            "state_dir": str(tmp / "var"), "inbox": {"path": str(tmp / "inbox")},
            "database": {"url": db, "connect_timeout": 2}}))
    try:
        yield Setup(url, configs)
    finally:
        drop_database(pg_admin, name)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_hostile_arguments_get_one_line_and_the_documented_exit_code(
        cli_setup: Setup, case: Case) -> None:
    config = cli_setup.configs[case.database]
    argv = [str(config) if a == "CONFIG" else a for a in case.argv]
    # --config goes last, where every command takes it (and where it cannot be a value).
    result = alfrd(*argv, *(("--config", str(config)) if argv and argv[0] != FF else ()))
    stderr = result.stderr.decode("utf-8")  # valid UTF-8 whatever the arguments were
    assert "Traceback" not in stderr, stderr
    assert result.returncode == case.code, (result.returncode, stderr)
    message = stderr if case.stream == "stderr" else result.stdout.decode("utf-8")
    assert len(message.strip().splitlines()) == 1, message
    assert case.names in message, message


def test_a_tag_typed_in_bytes_finds_the_folder_of_that_name(cli_setup: Setup) -> None:
    """A folder named b'\\xff' is stored as the tag '\\xff' (its byte kept visible); typing
    the same bytes after --tag finds it, and --json output stays valid UTF-8."""
    with psycopg.connect(cli_setup.url) as conn:
        conn.execute("INSERT INTO documents (sha256, original_name, source_path, tags, status, "
                     "extracted_text) VALUES (%s, 'scan.txt', %s, %s, 'extracted', "
                     "'a quokka on a page')",
                     ("b" * 64, "\\xff/scan.txt", ["\\xff"]))
    config = str(cli_setup.configs["up"])
    for argv in (("search", "quokka"), ("list",)):
        result = alfrd(*argv, "--tag", FF, "--json", "--config", config)
        assert result.returncode == 0, result.stderr.decode()
        rows = json.loads(result.stdout.decode("utf-8"))
        assert [r["tags"] for r in rows] == [["\\xff"]], rows
