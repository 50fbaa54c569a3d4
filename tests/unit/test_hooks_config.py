"""The hooks: section (commands split without a shell, checked to exist and be executable,
one line per problem) and running one command: its time limit takes its whole process group,
its output is kept bounded, a program that cannot start is a failure, not a crash."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from alfrd_daemon.config.hooks import HooksSettings
from alfrd_daemon.config.parse import ConfigError, parse_settings
from alfrd_daemon.hooks.command import OUTPUT_MAX_BYTES, hook_environment, run_hook
from alfrd_daemon.hooks.queue import pid_of_owner


def executable(tmp: Path, name: str = "hook.sh", body: str = "exit 0\n") -> Path:
    path = tmp / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def hooks_of(tmp: Path, section: object) -> HooksSettings:
    return parse_settings({"hooks": section}, source="t.yaml", base_dir=tmp).hooks


def problems(tmp: Path, section: object) -> list[str]:
    with pytest.raises(ConfigError) as err:
        parse_settings({"hooks": section}, source="t.yaml", base_dir=tmp)
    return err.value.problems


def test_defaults_have_no_hooks() -> None:
    h = HooksSettings()
    assert h.commands() == {} and h.timeout_seconds == 60 and h.workers == 1
    assert h.retries == 0


def test_a_string_is_split_like_a_shell_would_but_a_list_is_taken_as_is(tmp_path: Path
                                                                        ) -> None:
    hook = executable(tmp_path)
    h = hooks_of(tmp_path, {"post_ingest": f"{hook} --to 'a b' $HOME;x",
                            "post_ocr": [str(hook), "it's", "$(rm -rf /)"]})
    assert h.post_ingest == (str(hook), "--to", "a b", "$HOME;x")
    assert h.post_ocr == (str(hook), "it's", "$(rm -rf /)")
    assert hooks_of(tmp_path, {"post_ingest": "true"}).post_ingest == ("true",)  # from PATH


def test_bad_commands_are_one_line_each_naming_key_and_value(tmp_path: Path) -> None:
    plain = tmp_path / "not-executable.sh"
    plain.write_text("#!/bin/sh\n")
    found = problems(tmp_path, {"post_ingest": str(tmp_path / "missing.sh"),
                                "post_ocr": str(plain), "timeout_seconds": 0, "workers": 0,
                                "retries": -1, "post_consume": "x"})
    assert found == [
        f"At 'hooks.post_ingest': got '{tmp_path}/missing.sh', expected an executable file "
        "(it does not exist)",
        f"At 'hooks.post_ocr': got '{plain}', expected an executable file (it is not "
        "executable)",
        "At 'hooks.timeout_seconds': got 0, expected a number at least 0.1 and at most 86400",
        "At 'hooks.workers': got 0, expected a whole number at least 1 and at most 64",
        "At 'hooks.retries': got -1, expected a whole number at least 0 and at most 100",
        "At 'hooks.post_consume': unknown setting (check the spelling against "
        "config/alfrd.yaml)",
    ]


@pytest.mark.parametrize("value", ["", "'unclosed", [], [1], "relative/hook.sh",
                                   "no-such-program-anywhere", {"cmd": "x"}])
def test_commands_that_cannot_run_are_refused(tmp_path: Path, value: object) -> None:
    found = problems(tmp_path, {"post_ingest": value})
    assert len(found) == 1 and found[0].startswith("At 'hooks.post_ingest': got ")


def test_the_environment_names_the_document() -> None:
    env = hook_environment({"HOME": "/root"}, "post_ocr", {
        "document_id": "d1", "original_name": "a\0b.txt", "tags": ["x", "y z"],
        "document_date": None, "status": "extracted"}, "/store/ab")
    assert env["HOME"] == "/root" and env["ALFRD_HOOK"] == "post_ocr"
    assert env["ALFRD_DOCUMENT_NAME"] == "a" and env["ALFRD_DOCUMENT_TAGS"] == "x,y z"
    assert env["ALFRD_DOCUMENT_DATE"] == "" and env["ALFRD_DOCUMENT_PATH"] == "/store/ab"


def test_the_time_limit_kills_the_whole_process_group(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild"
    hook = executable(tmp_path, body=f'sleep 300 &\necho $! > "{pid_file}"\necho started\n'
                      "wait\n")
    result = run_hook([str(hook)], dict(os.environ), timeout=1.0)
    assert result.error == "killed after the time limit of 1 s" and result.exit_code is None
    assert result.output == "started\n"
    grandchild = int(pid_file.read_text())
    # SIGKILL was sent to the group; the kernel ends the process a moment later.
    deadline = time.monotonic() + 10
    while not _gone(grandchild):
        assert time.monotonic() < deadline, "the hook's grandchild outlived the time limit"
        time.sleep(0.02)


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # a zombie waiting for its new parent to reap it


def test_output_is_kept_bounded_and_exit_codes_and_signals_are_named(tmp_path: Path) -> None:
    loud = executable(tmp_path, "loud.sh", "head -c 1000000 /dev/zero | tr '\\0' x\n"
                      "echo; echo the end >&2\nexit 3\n")
    result = run_hook([str(loud)], {}, timeout=30)
    assert result.exit_code == 3 and result.error == "exited with status 3"
    assert len(result.output) == OUTPUT_MAX_BYTES and result.output.endswith("the end\n")
    killed = executable(tmp_path, "killed.sh", "kill -TERM $$\n")
    assert run_hook([str(killed)], {}, timeout=30).error == "killed by signal SIGTERM"


def test_a_program_that_cannot_start_is_a_failure(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_bytes(b"\x7fELFnonsense")
    broken.chmod(0o755)
    result = run_hook([str(broken)], {}, timeout=5)
    assert result.exit_code is None and result.error is not None
    assert result.error.startswith(f"cannot start {broken}: ")


def test_a_stop_interrupts_a_running_hook(tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    result = run_hook([sys.executable, "-c", "import time; time.sleep(300)"], {}, 300, stop)
    assert result.error == "interrupted: the daemon stopped while the hook ran"


def test_lease_tokens_name_their_process_on_this_host_only() -> None:
    assert pid_of_owner("box-a-1234-abcdef/0011", "box-a") == 1234
    assert pid_of_owner("box-b-1234-abcdef/0011", "box-a") is None
    assert pid_of_owner("box-a-x-abcdef/0011", "box-a") is None
