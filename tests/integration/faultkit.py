"""Shared tools for the fault and hostile-input tests: process measurements, crash points and
one checker for the archive's invariants (no loss, exactly once, store ↔ rows consistent)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from alfrd_daemon.ingest.store import IDENTITY_NAME
from tests.helpers import (
    REPO,
    DaemonProcess,
    alfrd_env,
    claimed_files,
    inbox_files,
    query,
    run_cli,
    wait_for,
    write_config,
)

STORE_NAME = re.compile(r"^[0-9a-f]{2}/(?:[0-9a-f]{2}/)?([0-9a-f]{64})$")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process and its reaped children, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state): utime/stime/cutime/cstime are fields 14-17.
    return sum(int(v) for v in fields[11:15]) / CLK_TCK


def vm_hwm_kib(pid: int) -> int:
    """Peak resident set size (VmHWM) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmHWM for {pid}")


def settings_paths(config: Path) -> dict[str, Path]:
    cfg = yaml.safe_load(config.read_text())
    state = Path(cfg["state_dir"])
    paths = cfg.get("paths") or {}
    return {"inbox": Path(cfg["inbox"]["path"]), "state": state,
            "store": Path(paths.get("store") or state / "store"),
            "failed": Path(paths.get("failed") or state / "failed")}


def log_events(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if f"event={name}" in line]


class FaultDaemon(DaemonProcess):
    """The daemon with one function patched to misbehave (tests/integration/faultpoint.py):
    `fault` is [MODULE:ATTR, MODE, ARG]."""

    def __init__(self, config: Path, log_path: Path, fault: list[str],
                 env: dict[str, str] | None = None):
        super().__init__(config, log_path, env)
        self.fault = fault

    def start(self) -> FaultDaemon:
        import subprocess

        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.integration.faultpoint", *self.fault, "run",
             "--config", str(self.config)],
            stdout=self._log, stderr=subprocess.STDOUT, env=alfrd_env(self.env), cwd=REPO,
            stdin=subprocess.DEVNULL)
        return self


class CrashingDaemon(FaultDaemon):
    """SIGKILL on the n-th call of `target`, before or after the real call: a kill -9 at an
    exact point of the ingest pipeline."""

    def __init__(self, config: Path, log_path: Path, target: str, nth: int, when: str,
                 env: dict[str, str] | None = None):
        super().__init__(config, log_path, [target, f"kill-{when}", str(nth)], env)


class PrefixedDaemon(DaemonProcess):
    """The daemon started through a command prefix (e.g. setpriv dropping capabilities)."""

    def __init__(self, config: Path, log_path: Path, prefix: list[str],
                 env: dict[str, str] | None = None):
        super().__init__(config, log_path, env)
        self.prefix = prefix

    def start(self) -> PrefixedDaemon:
        import subprocess

        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "alfrd_daemon", "run", "--config",
             str(self.config)],
            stdout=self._log, stderr=subprocess.STDOUT, env=alfrd_env(self.env), cwd=REPO,
            stdin=subprocess.DEVNULL)
        return self


@dataclass
class Dropper:
    """Drops files into an inbox from a thread, remembering each name and its sha256.

    Content is unique per file except every `dup_every`-th, which repeats an earlier file's
    bytes (identical content under another name); every `empty_every`-th file is empty and
    every `junk_pdf_every`-th is junk named .pdf (both must end in failed/)."""

    inbox: Path
    count: int
    rate: float = 0.0  # files per second; 0 = as fast as possible
    dup_every: int = 0
    empty_every: int = 0
    junk_pdf_every: int = 0
    subdirs: int = 4
    seed: int = 0
    dropped: dict[str, str] = field(default_factory=dict)  # relpath → sha256
    expect_failed: set[str] = field(default_factory=set)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._rng = random.Random(self.seed)

    def start(self) -> Dropper:
        self._thread.start()
        return self

    def join(self, timeout: float = 120) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "dropper still running"
        if self.error:
            raise self.error

    def _run(self) -> None:
        try:
            previous: list[bytes] = []
            for i in range(self.count):
                sub = f"d{i % self.subdirs}" if self.subdirs else ""
                name = f"file{i:06d}.txt"
                if self.dup_every and i % self.dup_every == self.dup_every - 1 and previous:
                    data = self._rng.choice(previous)
                elif self.empty_every and i % self.empty_every == self.empty_every - 1:
                    data = b""
                elif self.junk_pdf_every and i % self.junk_pdf_every == self.junk_pdf_every - 1:
                    name = f"file{i:06d}.pdf"
                    data = b"this is not a pdf at all " + os.urandom(32)
                else:
                    data = f"document {i} {self._rng.random()}\n".encode() * 8
                    previous.append(data)
                rel = f"{sub}/{name}" if sub else name
                target = self.inbox / rel
                target.parent.mkdir(exist_ok=True)
                target.write_bytes(data)
                self.dropped[rel] = sha(data)
                if data == b"" or name.endswith(".pdf"):
                    self.expect_failed.add(rel)
                if self.rate:
                    time.sleep(1 / self.rate)
        except BaseException as exc:
            self.error = exc


def wait_until(cond: Callable[[], Any], timeout: float, describe: Callable[[], str],
               alive: Callable[[], None] | None = None, interval: float = 0.1) -> Any:
    """helpers.wait_for, but the failure message describes the state at the deadline."""
    try:
        return wait_for(cond, timeout, "the condition", alive=alive, interval=interval)
    except AssertionError as exc:
        if "timed out" not in str(exc):
            raise
        raise AssertionError(f"timed out after {timeout} s waiting for {describe()}") from None


def wait_all_processed(db_url: str, inbox: Path, expected: int, timeout: float,
                       alive: Callable[[], None] | None = None) -> None:
    """Every dropped file has an arrival, and nothing is left in the inbox or claim area."""
    def arrivals() -> int:
        return query(db_url, "SELECT count(*) AS n FROM document_arrivals")[0]["n"]

    def done() -> bool:
        return not inbox_files(inbox) and not claimed_files(inbox) and arrivals() >= expected

    wait_until(done, timeout, lambda: (
        f"{expected} arrivals and an empty inbox (inbox {len(inbox_files(inbox))}, claimed "
        f"{claimed_files(inbox)[:5]}, arrivals {arrivals()})"), alive=alive, interval=0.3)


def verify_archive(db_url: str, config: Path, dropped: dict[str, str],
                   expect_failed: set[str] = frozenset(),  # type: ignore[assignment]
                   *, run_check: bool = True) -> dict[str, Any]:
    """The invariants after any fault, checked from the outside:

    - every dropped file has exactly one arrival (exactly once, also across kill -9 replays);
    - a file that was ingested or a duplicate has its sha256 in `documents` exactly once, and
      documents hold nothing that was not dropped;
    - a failed file is in failed/ beside a note with a reason, and its row says failed;
    - nothing is left in the inbox or claim area;
    - the store holds exactly the referenced files (no orphans, nothing missing), each with
      the content its name promises;
    - `alfrd check --json` agrees (when run_check).
    """
    p = settings_paths(config)
    assert not inbox_files(p["inbox"]), f"left in the inbox: {inbox_files(p['inbox'])[:10]}"
    assert not claimed_files(p["inbox"]), f"left claimed: {claimed_files(p['inbox'])[:10]}"
    arrivals = query(db_url, "SELECT a.source_path, a.outcome, a.instance, d.sha256, d.status, "
                             "d.stored_path, d.error FROM document_arrivals a "
                             "LEFT JOIN documents d ON d.id = a.document_id")
    per_path = Counter(a["source_path"] for a in arrivals)
    twice = {k: n for k, n in per_path.items() if n > 1}
    assert not twice, f"files with more than one arrival (processed twice): {list(twice)[:10]}"
    missing = sorted(set(dropped) - set(per_path))
    assert not missing, f"{len(missing)} dropped files have no arrival: {missing[:10]}"
    unknown = sorted(set(per_path) - set(dropped))
    assert not unknown, f"arrivals for files never dropped: {unknown[:10]}"
    by_path = {a["source_path"]: a for a in arrivals}
    docs = query(db_url, "SELECT sha256, status, stored_path FROM documents")
    doc_shas = Counter(d["sha256"] for d in docs if d["status"] != "failed")
    assert all(n == 1 for n in doc_shas.values())
    failed_notes = {}
    for note in p["failed"].rglob("*.error"):
        body = json.loads(note.read_text())
        failed_notes[body["source_path"]] = (note, body)
    for rel, digest in dropped.items():
        a = by_path[rel]
        if rel in expect_failed:
            assert a["outcome"] == "failed" and a["status"] == "failed", (rel, a)
        if a["outcome"] == "failed":
            assert rel in failed_notes, f"failed {rel} has no note in failed/"
            note, body = failed_notes[rel]
            assert body["reason"], (rel, body)
            assert os.path.lexists(p["failed"] / body["failed_path"]), (
                f"note for {rel} but no file at failed/{body['failed_path']}")
            assert a["stored_path"] == f"failed/{body['failed_path']}", (rel, a, body)
        else:
            assert a["sha256"] == digest and a["status"] != "failed", (rel, a, digest)
            assert doc_shas[digest] == 1, rel
    good = {d for r, d in dropped.items() if by_path[r]["outcome"] != "failed"}
    assert set(doc_shas) == good, "documents that no dropped file explains"
    # Store ↔ rows.
    referenced = {m.group(1) for d in docs if d["status"] != "failed" and d["stored_path"]
                  for m in [STORE_NAME.match(d["stored_path"])] if m}
    present = {}
    for path in p["store"].rglob("*"):
        if path.is_file():
            rel = path.relative_to(p["store"]).as_posix()
            if rel == IDENTITY_NAME:
                continue  # the store's id, not content
            m = STORE_NAME.match(rel)
            assert m, f"stray file in the store: {rel}"
            present[m.group(1)] = path
    orphans = set(present) - referenced
    assert not orphans, f"{len(orphans)} store files without a row"
    lost = referenced - set(present)
    assert not lost, f"{len(lost)} rows whose stored file is missing"
    for digest, path in present.items():
        assert sha_file(path) == digest, f"store file {path} does not match its name"
    report = {}
    if run_check:
        result = run_cli(config, "check", "--json", check=False)
        report = json.loads(result.stdout)
        assert result.returncode == 0 and report["ok"], result.stdout + result.stderr
    return {"arrivals": len(arrivals), "documents": len(docs),
            "failed": sum(a["outcome"] == "failed" for a in arrivals),
            "instances": Counter(a["instance"] for a in arrivals), "check": report}


NO_JOBS = {"backup": {"enabled": False}, "restore_test": {"enabled": False},
           "reindex": {"enabled": False}, "prune": {"enabled": False}}


def fault_config(tmp: Path, db_url: str, **overrides: object) -> Path:
    """Four workers, quick retries, INFO logs, and no scheduled jobs competing for the CPU."""
    sections: dict[str, object] = {
        "workers": {"count": 4, "retry_initial": 0.2, "retry_max": 2, "drain_timeout": 20},
        "logging": {"level": "INFO"},
        "jobs": NO_JOBS,
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(sections.get(key), dict):
            sections[key] = {**sections[key], **value}  # type: ignore[dict-item]
        else:
            sections[key] = value
    return write_config(tmp, db_url, **sections)
