"""Hooks in the running daemon, with real shell scripts: a hook past its time limit is
killed with its whole process group while ingest goes on, a failure shows in `alfrd show` and
`alfrd status`; post_ocr runs once an image is read by OCR; a daemon killed with SIGKILL
while a hook runs ends what is left of that hook and runs it again after its restart (hooks
run at least once)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

from tests.helpers import DaemonProcess, query, run_cli, wait_for, write_config
from tests.ocr_samples import image_bytes, make_text_image

OCR_FAST = {"enabled": True, "workers": 1, "dpi": 150, "detect_orientation": False,
            "page_timeout_seconds": 10, "lease_seconds": 30, "poll_seconds": 60}


def script(tmp: Path, name: str, body: str) -> Path:
    path = tmp / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def drop(inbox: Path, name: str, data: bytes) -> None:
    tmp = inbox / f".{name}.part"  # ignored until renamed in
    tmp.write_bytes(data)
    tmp.rename(inbox / name)


def gone(pid: int) -> bool:
    """No such process, or only its zombie, waiting for a parent to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def runs(db_url: str, hook: str = "post_ingest") -> dict[str, dict[str, object]]:
    rows = query(db_url, "SELECT d.original_name, r.* FROM hook_runs r JOIN documents d "
                 "ON d.id = r.document_id WHERE r.hook = %s", (hook,))
    return {r["original_name"]: r for r in rows}


def committed(db_url: str) -> set[str]:
    return {r["original_name"] for r in query(db_url, "SELECT original_name FROM documents")}


def test_a_hook_past_its_time_limit_is_killed_while_ingest_goes_on(tmp_path: Path,
                                                                   db_url: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    hook = script(tmp_path, "hook.sh", f"""
out="{out}"
if [ "$ALFRD_DOCUMENT_NAME" = slow.txt ]; then
    sleep 300 &
    echo $! > "$out/grandchild.pid"
    wait
fi
if [ "$ALFRD_DOCUMENT_NAME" = broken.txt ]; then
    echo "the printer is on fire" >&2
    exit 3
fi
echo "$ALFRD_DOCUMENT_NAME" >> "$out/ran"
""")
    config = write_config(tmp_path, db_url,
                          hooks={"post_ingest": str(hook), "timeout_seconds": 8, "workers": 1})
    inbox = tmp_path / "inbox"
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        drop(inbox, "slow.txt", b"a slow hook")
        pid_file = out / "grandchild.pid"
        wait_for(lambda: pid_file.exists() and pid_file.read_text().strip(), 20,
                 "the slow hook to start", alive=daemon.assert_alive)
        grandchild = int(pid_file.read_text())
        names = {f"f{i:03d}.txt" for i in range(50)}
        for name in sorted(names):
            drop(inbox, name, f"file {name} of fifty".encode())
        wait_for(lambda: names <= committed(db_url), 30, "the 50 files to be committed",
                 alive=daemon.assert_alive)
        # Committed while the one hook runner is still held by the slow hook.
        assert runs(db_url)["slow.txt"]["state"] == "running"
        assert not gone(grandchild)
        drop(inbox, "broken.txt", b"a hook that fails")
        wait_for(lambda: runs(db_url)["slow.txt"]["state"] == "failed", 30,
                 "the slow hook to be killed", alive=daemon.assert_alive)
        slow = runs(db_url)["slow.txt"]
        assert slow["last_error"] == "killed after the time limit of 8 s"
        assert slow["exit_code"] is None
        wait_for(lambda: gone(grandchild), 5, "the hook's grandchild to be gone")
        wait_for(lambda: len([r for r in runs(db_url).values() if r["state"] == "done"]) == 50
                 and runs(db_url).get("broken.txt", {}).get("state") == "failed", 30,
                 "the other hooks", alive=daemon.assert_alive)
        assert sorted((out / "ran").read_text().split()) == sorted(names)
        broken = runs(db_url)["broken.txt"]
        assert broken["exit_code"] == 3 and "the printer is on fire" in broken["output"]
        doc = query(db_url, "SELECT id::text, status, metadata FROM documents "
                    "WHERE original_name = 'broken.txt'")[0]
        assert doc["status"] == "extracted"
        assert doc["metadata"]["hooks"]["post_ingest"]["exit_code"] == 3
        as_json = json.loads(run_cli(config, "show", doc["id"], "--json").stdout)
        assert [(h["hook"], h["state"], h["exit_code"]) for h in as_json["hooks"]] == [
            ("post_ingest", "failed", 3)]
        shown = run_cli(config, "show", doc["id"]).stdout
        assert "post_ingest: FAILED" in shown and "exit 3" in shown
        assert "the printer is on fire" in shown
        hits = json.loads(run_cli(config, "search", "fails", "--json").stdout)
        assert [h["name"] for h in hits] == ["broken.txt"]
        status = json.loads(run_cli(config, "status", "--json").stdout)
        assert status["hooks"]["configured"] == ["post_ingest"]
        assert status["hooks"]["runs"]["post_ingest"] == {"failed": 2}
        assert "hooks:     post_ingest 0 waiting, 0 running, failed 2" in run_cli(
            config, "status").stdout
    log = daemon.log()
    assert "event=hook_failed" in log and "the printer is on fire" in log


def test_post_ocr_runs_after_the_image_is_read(tmp_path: Path, db_url: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    hook = script(tmp_path, "hook.sh", f"""
echo "$ALFRD_HOOK $ALFRD_DOCUMENT_STATUS $ALFRD_DOCUMENT_PATH" >> "{out}/$ALFRD_DOCUMENT_ID"
""")
    config = write_config(tmp_path, db_url, ocr=OCR_FAST,
                          hooks={"post_ingest": [str(hook)], "post_ocr": [str(hook)]})
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        drop(tmp_path / "inbox", "scan.png",
             image_bytes(make_text_image("Invoice quokka kilowatt"), "png"))
        wait_for(lambda: runs(db_url, "post_ocr").get("scan.png", {}).get("state") == "done",
                 60, "the post_ocr hook", alive=daemon.assert_alive, interval=0.2)
        wait_for(lambda: runs(db_url).get("scan.png", {}).get("state") == "done", 10,
                 f"the post_ingest hook: {query(db_url, 'SELECT * FROM hook_runs')}; "
                 f"{daemon.log()[-3000:]}", alive=daemon.assert_alive)
    doc = query(db_url, "SELECT id::text, status, extractor, stored_path FROM documents")[0]
    assert doc["status"] == "extracted" and doc["extractor"] == "ocr/1"
    lines = (out / doc["id"]).read_text().splitlines()
    stored = str(tmp_path / "var" / "store" / doc["stored_path"])
    assert sorted(line.split()[0] for line in lines) == ["post_ingest", "post_ocr"]
    assert f"post_ocr extracted {stored}" in lines
    assert Path(stored).is_file()


def test_a_hook_cut_short_by_kill_9_runs_again_after_the_restart(tmp_path: Path,
                                                                 db_url: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    # The first run hangs (until the test kills it); the second one finishes.
    hook = script(tmp_path, "hook.sh", f"""
out="{out}"
echo $$ >> "$out/starts"
if [ ! -e "$out/first" ]; then touch "$out/first"; exec sleep 300; fi
""")
    config = write_config(tmp_path, db_url, hooks={"post_ingest": str(hook),
                                                   "timeout_seconds": 60})
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start().wait_started()
    orphan: int | None = None
    try:
        drop(tmp_path / "inbox", "once.txt", b"a hook that runs twice")
        starts = out / "starts"
        wait_for(lambda: starts.exists() and starts.read_text().strip(), 20,
                 "the first run", alive=daemon.assert_alive)
        orphan = int(starts.read_text().split()[0])
        assert runs(db_url)["once.txt"]["state"] == "running"
        daemon.kill()
        # The hook runs in a session of its own and outlives the daemon.
        assert not gone(orphan)
        # The restarted daemon ends it, and takes the run again without waiting for its
        # lease to run out.
        daemon = DaemonProcess(config, tmp_path / "daemon2.log").start().wait_started()
        wait_for(lambda: runs(db_url)["once.txt"]["state"] == "done", 20,
                 "the run taken again", alive=daemon.assert_alive)
        wait_for(lambda: gone(orphan), 5, "the first run's hook to be ended")
        assert len(starts.read_text().split()) == 2
        run = runs(db_url)["once.txt"]
        assert run["attempts"] == 1 and run["exit_code"] == 0  # the kill was not its fault
        assert "taken again" in daemon.log()
        daemon.stop()
    finally:
        daemon.kill()
        if orphan is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(orphan, signal.SIGKILL)
