"""Bad input gets one clear line, never a traceback: hostile configuration files for
`alfrd config check` and `alfrd run`, and hostile arguments for every `alfrd` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

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
