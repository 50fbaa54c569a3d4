"""Security guards: SQL is never built by string formatting, passwords never reach a log line
or --json output, the archive is not world-readable, and a password in a world-readable config
file is warned about."""

from __future__ import annotations

import ast
import json
import os
import stat
from pathlib import Path

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.helpers import REPO, DaemonProcess, query, run_cli, wait_for
from tests.integration.faultkit import fault_config, wait_all_processed

pytestmark = pytest.mark.timeout(90)

SECRET = "Sup3r-S3cret-pw-4711"
EXECUTING = {"execute", "executemany", "copy", "stream"}


def formatted_sql(node: ast.expr) -> str | None:
    """How an SQL argument was built from a string template, if it was."""
    if isinstance(node, ast.JoinedStr):
        return "an f-string"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod) and isinstance(
            node.left, ast.Constant | ast.JoinedStr):
        return "%-formatting"
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add) and any(
            isinstance(side, ast.JoinedStr) or formatted_sql(side) for side in
            (node.left, node.right)):
        return "concatenation with formatted text"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
            node.func.attr == "format" and isinstance(node.func.value, ast.Constant):
        return "str.format"
    return None


def test_no_sql_is_built_by_string_formatting() -> None:
    """A cheap guard: every execute()/executemany()/copy() in the package gets its SQL as a
    literal, a named query or psycopg.sql composition, never as formatted text (values travel
    as parameters). Also catches sql.SQL(f"...")."""
    offenders = []
    files = sorted((REPO / "alfrd_daemon").rglob("*.py"))
    assert len(files) > 40
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else (
                func.id if isinstance(func, ast.Name) else "")
            if name in EXECUTING or name == "SQL":
                how = formatted_sql(node.args[0])
                if how:
                    offenders.append(f"{path.relative_to(REPO)}:{node.lineno}: {name}() with "
                                     f"{how}")
    assert not offenders, "SQL built by string formatting:\n" + "\n".join(offenders)


def test_the_guard_itself_catches_formatting() -> None:
    samples = {
        'cur.execute(f"SELECT * FROM t WHERE id = {x}")': True,
        'conn.execute("SELECT %s" % x)': True,
        'cur.execute("SELECT " + f"{x}")': True,
        'cur.execute("DELETE FROM {}".format(t))': True,
        'sql.SQL(f"DROP TABLE {t}")': True,
        'cur.execute("SELECT %(a)s", {"a": x})': False,
        'cur.execute(QUERIES["x"], params)': False,
        'cur.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(n)))': False,
    }
    for source, bad in samples.items():
        call = ast.parse(source).body[0].value  # type: ignore[attr-defined]
        assert bool(formatted_sql(call.args[0])) is bad, source


def with_password(db_url: str, password: str = SECRET) -> str:
    return make_conninfo(db_url, password=password)


def test_password_is_masked_when_the_server_rejects_the_login(tmp_path: Path,
                                                               db_url: str) -> None:
    params = conninfo_to_dict(db_url)
    url = (f"postgresql://alfrd_no_such_role:{SECRET}@{params.get('host', '127.0.0.1')}:"
           f"{params.get('port', 5432)}/alfrd_no_such_db")
    config = fault_config(tmp_path, None, database={"startup_timeout": 3, "connect_timeout": 2})
    env = {"ALFRD_DATABASE_URL": url}
    daemon = DaemonProcess(config, tmp_path / "daemon.log", env=env).start()
    assert daemon.proc is not None
    assert daemon.proc.wait(60) == 1  # cannot start, says why
    daemon.kill()
    log = daemon.log()
    assert "cannot start" in log and "alfrd_no_such_role" in log, log
    status = run_cli(config, "status", "--json", env=env, check=False)
    assert status.returncode == 2
    assert json.loads(status.stdout)["database"]["state"] == "unreachable"
    check = run_cli(config, "check", "--json", env=env, check=False)
    for text in (log, status.stdout, status.stderr, check.stdout, check.stderr):
        assert SECRET not in text, text


def test_password_is_masked_while_running(tmp_path: Path, db_url: str) -> None:
    """A trust server ignores the password, so the daemon runs with it in its DSN: no log
    line, no --json output and no heartbeat row may show it."""
    config = fault_config(tmp_path, None)
    env = {"ALFRD_DATABASE_URL": with_password(db_url)}
    inbox = tmp_path / "inbox"
    with DaemonProcess(config, tmp_path / "daemon.log", env=env) as daemon:
        (inbox / "doc.txt").write_text("a document about secrecy")
        (inbox / "empty.txt").write_bytes(b"")
        wait_all_processed(db_url, inbox, 2, 30, alive=daemon.assert_alive)
        outputs = [run_cli(config, *args, env=env) for args in (
            ("status", "--json"), ("status",), ("list", "--json"), ("search", "secrecy",
                                                                     "--json"),
            ("check", "--json"), ("config", "check", "--json"))]
        ident = json.loads(outputs[2].stdout)[0]["id"]
        outputs.append(run_cli(config, "show", ident, "--json", env=env))
        log = daemon.log()
    assert "password=" in log or "***" in log  # the DSN is shown, masked
    states = query(db_url, "SELECT state::text AS s FROM daemon_instances")
    for text in [log, *(o.stdout + o.stderr for o in outputs), *(s["s"] for s in states)]:
        assert SECRET not in text


def test_archive_folders_are_not_world_readable(tmp_path: Path, db_url: str) -> None:
    config = fault_config(tmp_path, db_url)
    inbox, var = tmp_path / "inbox", tmp_path / "var"
    os.umask(old := os.umask(0o022))
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        (inbox / "doc.txt").write_text("private letter")
        os.chmod(inbox / "doc.txt", 0o666)  # as loose as a user might leave it
        (inbox / "empty.txt").write_bytes(b"")
        wait_all_processed(db_url, inbox, 2, 30, alive=daemon.assert_alive)
    assert old is not None
    backup = run_cli(config, "backup", "--json", check=False, timeout=120)
    checked = []
    for top in (var / "store", var / "failed", var / "backups"):
        if not top.exists():
            continue
        mode = stat.S_IMODE(os.lstat(top).st_mode)
        assert not mode & 0o007, f"{top} is open to others: {oct(mode)}"
        for path in top.rglob("*"):
            mode = stat.S_IMODE(os.lstat(path).st_mode)
            if top.name == "failed" and path.suffix != ".error":
                continue  # a failed file keeps its own mode, behind the closed folder
            assert not mode & 0o007, f"{path} is open to others: {oct(mode)}"
            checked.append(path)
    assert any(p.is_file() and p.parent.parent == var / "store" for p in checked)  # ab/<sha256>
    assert (var / "failed" / "empty.txt.error").exists()
    if backup.returncode == 0:
        assert any(p.is_file() and var / "backups" in p.parents for p in checked)
    else:
        print(f"\nbackup did not run here ({backup.stderr.strip()[:200]}); "
              "checked store and failed/ only")


def test_world_readable_config_with_a_password_is_warned_about(tmp_path: Path,
                                                               db_url: str) -> None:
    config = fault_config(tmp_path, with_password(db_url))
    warning = "readable by every user"
    for mode, warned in ((0o644, True), (0o600, False)):
        os.chmod(config, mode)
        with DaemonProcess(config, tmp_path / f"daemon-{mode:o}.log") as daemon:
            wait_for(lambda d=daemon: "event=started" in d.log(), 10, "start")
            log = daemon.log()
        assert (warning in log) is warned, log[:2000]
        assert SECRET not in log
