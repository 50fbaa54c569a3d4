"""The scheduler on a real PostgreSQL: locks, slots, catch-up, misfires, shutdown, reindex."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from apscheduler.events import (  # type: ignore[import-untyped]
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
)

from alfrd_daemon.config.parse import load_settings
from alfrd_daemon.config.schedule import previous_fire
from alfrd_daemon.db import pgtools
from alfrd_daemon.db.locks import advisory_key
from alfrd_daemon.ingest.failed import FailedFolder
from alfrd_daemon.jobs.scheduler import JobScheduler
from tests.helpers import (
    REPO,
    DaemonProcess,
    alfrd_env,
    inbox_files,
    query,
    run_cli,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.timeout(90)

JOB_KEYS = ("backup", "restore_test", "reindex", "rescan", "retry_failed", "prune")


def only(**jobs: dict[str, Any]) -> dict[str, Any]:
    """A jobs section with every job off except those given."""
    section: dict[str, Any] = {name: {"enabled": False} for name in JOB_KEYS}
    for name, values in jobs.items():
        section[name] = {"enabled": True, **values}
    return section


def execute(db_url: str, sql: str, params: Any = None) -> None:
    with psycopg.connect(db_url) as conn:
        conn.execute(sql, params)


def runs(db_url: str, job: str) -> list[dict[str, Any]]:
    return query(db_url, "SELECT * FROM job_runs WHERE job = %s ORDER BY id", (job,))


def scheduler_events(js: JobScheduler, mask: int) -> list[Any]:
    """Every APScheduler event of `mask` for the prune job from now on, in order."""
    seen: list[Any] = []
    js._sched.add_listener(lambda e: seen.append(e) if e.job_id == "prune" else None, mask)
    return seen


@pytest.fixture
def schedulers() -> Iterator[list[JobScheduler]]:
    started: list[JobScheduler] = []
    yield started
    for s in started:
        s.stop()
        s.join(10)


def slow_pg_dump(tmp_path: Path, db_url: str) -> Path:
    """A bin dir whose pg_dump records its pid and hangs; pg_restore is the real one."""
    with psycopg.connect(db_url) as conn:
        major = conn.info.server_version // 10000
    real = pgtools.choose("pg_dump", minimum=major, prefer=major)
    fake = tmp_path / "slowbin"
    fake.mkdir()
    script = fake / "pg_dump"
    script.write_text(f"""#!/bin/sh
if [ "$1" = "--version" ]; then echo "pg_dump (PostgreSQL) {real.version}"; exit 0; fi
echo $$ > {tmp_path / "pg_dump.pid"}
exec sleep 60
""")
    script.chmod(0o755)
    for tool in ("pg_restore", "pg_dumpall"):
        (fake / tool).symlink_to(real.tool(tool))
    return fake


# --- locks and history ---------------------------------------------------------------------------
def test_a_held_lock_skips_a_manual_run(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    with psycopg.connect(db_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (advisory_key("job:prune"),))
        out = run_cli(config, "jobs", "run", "prune", check=False)
        assert out.returncode == 75 and "already running" in out.stderr
        assert runs(db_url, "prune") == []
    out = run_cli(config, "jobs", "run", "prune")
    assert "prune: succeeded" in out.stdout
    [run] = runs(db_url, "prune")
    assert (run["outcome"], run["trigger"], run["scheduled_for"]) == ("succeeded", "manual", None)


def test_a_killed_run_releases_its_lock_and_is_marked_abandoned(tmp_path: Path,
                                                                db_url: str) -> None:
    slow = write_config(tmp_path, db_url,
                        jobs={"backup": {"pg_bin_dir": str(slow_pg_dump(tmp_path, db_url))}})
    proc = subprocess.Popen(
        [sys.executable, "-m", "alfrd_daemon", "backup", "--config", str(slow)],
        env=alfrd_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True)
    try:
        wait_for(lambda: [r for r in runs(db_url, "backup") if r["outcome"] == "running"], 20,
                 "the backup run to start")
        wait_for(lambda: (tmp_path / "pg_dump.pid").exists(), 10, "pg_dump to start")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its pg_dump, as a crash would
        proc.wait(10)
    good = write_config(tmp_path, db_url)
    out = run_cli(good, "backup")
    assert "backup: succeeded" in out.stdout
    first, second = runs(db_url, "backup")
    assert first["outcome"] == "abandoned" and first["finished_at"] is not None
    assert second["outcome"] == "succeeded"
    leftovers = [f for f in os.listdir(tmp_path / "var" / "backups") if f.startswith(".")]
    assert leftovers == []  # the crashed run's temporary file was cleaned up


def test_reindex_waits_for_a_running_backup(tmp_path: Path, db_url: str) -> None:
    """REINDEX CONCURRENTLY would wait on pg_dump's snapshot anyway: the two share a lock, so
    a reindex starts only once the backup is done (here, the test holds the backup's side)."""
    config = write_config(tmp_path, db_url)
    with psycopg.connect(db_url, autocommit=True) as backup_side:
        backup_side.execute("SELECT pg_advisory_lock(%s)",
                            (advisory_key("group:maintenance"),))
        proc = subprocess.Popen(
            [sys.executable, "-m", "alfrd_daemon", "jobs", "run", "reindex", "--json",
             "--config", str(config)], env=alfrd_env(), cwd=REPO, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True)
        [run] = wait_for(lambda: runs(db_url, "reindex"), 20, "the reindex run to register")
        wait_for(lambda: asked_again_for_a_lock(db_url, run["started_at"]), 20,
                 "the reindex to be refused the maintenance lock and ask again")
        assert proc.poll() is None  # still waiting
        assert [r["outcome"] for r in runs(db_url, "reindex")] == ["running"]
    out, _ = proc.communicate(timeout=30)
    result = json.loads(out)
    assert result["outcome"] == "succeeded"
    assert result["details"]["waited_for"]["maintenance"] > 0


def asked_again_for_a_lock(db_url: str, since: datetime) -> bool:
    """Another session's last statement is a lock attempt made well after `since`: the lock
    it tried for right away was refused (a granted one would be followed by other work)."""
    return bool(query(db_url, """
        SELECT 1 FROM pg_stat_activity
        WHERE datname = current_database() AND pid <> pg_backend_pid()
          AND query LIKE '%%pg_try_advisory_lock%%'
          AND query_start > %s + interval '0.5 seconds'""", (since,)))


# --- the scheduler --------------------------------------------------------------------------------
def test_an_overdue_job_runs_at_start_once(tmp_path: Path, db_url: str,
                                           schedulers: list[JobScheduler]) -> None:
    config = write_config(tmp_path, db_url, jobs=only(prune={"schedule": "30 2 * * *"}))
    settings = load_settings(str(config), environ={})
    # Last success two days ago: at least one 02:30 has passed unserved (the machine slept).
    execute(db_url, "INSERT INTO job_state (job, first_scheduled, last_success) "
            "VALUES ('prune', now() - interval '30 days', now() - interval '2 days')")
    a = JobScheduler(settings, db_url, "test-a")
    schedulers.append(a)
    a.start()
    wait_for(lambda: [r for r in runs(db_url, "prune") if r["outcome"] == "succeeded"], 20,
             "the catch-up run")
    [run] = runs(db_url, "prune")
    tz = settings.jobs.tz
    assert run["trigger"] == "catch-up" and run["instance"] == "test-a"
    assert run["scheduled_for"] == previous_fire(settings.jobs.prune.schedule, tz,
                                                 datetime.now(tz))
    # Another daemon starting now finds nothing overdue: its own start-up check says so.
    b = JobScheduler(settings, db_url, "test-b")
    schedulers.append(b)
    found: list[list[str]] = []
    check = b.catch_up

    def start_up_check(now: datetime | None = None) -> list[str]:
        found.append(check(now))
        return found[-1]

    b.catch_up = start_up_check  # type: ignore[method-assign]  # start() schedules self.catch_up
    b.start()
    assert wait_for(lambda: found, 10, "test-b's start-up catch-up check") == [[]]
    assert len(runs(db_url, "prune")) == 1
    # A job that never succeeded and was first scheduled just now is not overdue either.
    assert query(db_url, "SELECT count(*) AS n FROM job_state")[0]["n"] == 1


def test_misfire_grace_decides_whether_a_late_run_happens(tmp_path: Path, db_url: str,
                                                          schedulers: list[JobScheduler]) -> None:
    """APScheduler's default grace (1 s) silently drops a run that is 10 s late, as after a
    suspend; a longer grace runs it."""
    for grace, expected in ((1, 0), (60, 1)):
        config = write_config(tmp_path, db_url, jobs=only(
            prune={"schedule": "every 1h", "misfire_grace": grace}))
        settings = load_settings(str(config), environ={})
        js = JobScheduler(settings, db_url, f"grace-{grace}")
        schedulers.append(js)
        js.start()
        job = js._sched.get_job("prune")  # APScheduler's own view is what is under test
        assert (job.coalesce, job.max_instances, job.misfire_grace_time) == (True, 1, grace)
        missed = scheduler_events(js, EVENT_JOB_MISSED)
        tz = settings.jobs.tz
        js._sched.modify_job("prune", next_run_time=datetime.now(tz) - timedelta(seconds=10))
        if expected:
            wait_for(lambda: runs(db_url, "prune"), 10, "the late run")
            assert missed == []
        else:
            wait_for(missed.copy, 10, "APScheduler to drop the late run as missed")
        assert len(runs(db_url, "prune")) == expected
        js.stop()
        js.join(5)


def test_missed_runs_coalesce_into_one(tmp_path: Path, db_url: str,
                                       schedulers: list[JobScheduler]) -> None:
    config = write_config(tmp_path, db_url, jobs=only(
        prune={"schedule": "every 1h", "misfire_grace": 4 * 3600}))
    settings = load_settings(str(config), environ={})
    js = JobScheduler(settings, db_url, "coalesce")
    schedulers.append(js)
    js.start()
    submitted = scheduler_events(js, EVENT_JOB_SUBMITTED)
    executed = scheduler_events(js, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    tz = settings.jobs.tz
    # Four fire times passed (3 h 5 s, 2 h 5 s, 1 h 5 s and 5 s ago), all within the grace.
    js._sched.modify_job("prune", next_run_time=datetime.now(tz) - timedelta(hours=3,
                                                                              seconds=5))
    wait_for(lambda: executed, 10, "the coalesced run to finish")
    # All four were handed over at once, as one run for the latest of them.
    [submission] = submitted
    assert len(submission.scheduled_run_times) == 1
    assert len(executed) == 1 and executed[0].code == EVENT_JOB_EXECUTED
    assert len(runs(db_url, "prune")) == 1


def test_two_daemons_run_each_scheduled_backup_once(tmp_path: Path, db_url: str) -> None:
    jobs = only(backup={"schedule": "every 1s", "keep_daily": 100},
                rescan={"schedule": "every 1s"})
    daemons = []
    for name in ("a", "b"):
        config = write_config(tmp_path / name, db_url, jobs=jobs)
        daemons.append(DaemonProcess(config, tmp_path / f"{name}.log"))
    try:
        for d in daemons:
            d.start()
        for d in daemons:
            d.wait_started()

        def served_slots() -> int:
            return len({r["scheduled_for"] for r in runs(db_url, "backup")
                        if r["outcome"] == "succeeded"})

        wait_for(lambda: served_slots() >= 3, 30, "three scheduled backups",
                 alive=daemons[0].assert_alive)
    finally:
        for d in daemons:
            d.stop()
    backups = runs(db_url, "backup")
    slots = [r["scheduled_for"] for r in backups]
    assert None not in slots and len(slots) == len(set(slots)), backups
    assert all(r["outcome"] == "succeeded" for r in backups), backups
    assert all(r["trigger"] == "schedule" for r in backups)
    # Each daemon wrote its runs' archives into its own folder (retention keeps the newest
    # of the day there).
    for name, d in zip(("a", "b"), daemons, strict=True):
        ran_here = [r for r in backups if f"instance={r['instance']}" in d.log()]
        folder = tmp_path / name / "var" / "backups"
        dumps = [f for f in os.listdir(folder) if f.endswith(".dump")] if folder.exists() else []
        assert len(dumps) == (1 if ran_here else 0), (name, dumps)
    # Rescans are per daemon: each scans its own inbox.
    rescans = {r["instance"] for r in runs(db_url, "rescan")}
    assert len(rescans) == 2


def test_shutdown_abandons_a_running_job_within_the_drain_timeout(tmp_path: Path,
                                                                  db_url: str) -> None:
    slow = slow_pg_dump(tmp_path, db_url)
    config = write_config(tmp_path, db_url, workers={"drain_timeout": 1},
                          jobs=only(backup={"schedule": "every 1s", "pg_bin_dir": str(slow)}))
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start().wait_started()
    try:
        wait_for(lambda: (tmp_path / "pg_dump.pid").exists(), 20, "pg_dump to start",
                 alive=daemon.assert_alive)
        # Fire times pass while the run goes on: max_instances=1 skips them.
        wait_for(lambda: "maximum number of running instances" in daemon.log(), 20,
                 "a fire time skipped while the backup runs", alive=daemon.assert_alive)
        assert [r["outcome"] for r in runs(db_url, "backup")] == ["running"]
        started = time.monotonic()
        assert daemon.stop(timeout=30) == 0
        assert time.monotonic() - started < 20
    finally:
        daemon.kill()
    [run] = runs(db_url, "backup")
    assert run["outcome"] == "abandoned" and "stopping" in run["details"]["error"]
    pid = int((tmp_path / "pg_dump.pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # pg_dump was stopped, not orphaned
    assert [f for f in os.listdir(tmp_path / "var" / "backups") if f.startswith(".")] == []
    assert "maximum number of running instances" in daemon.log()


# --- reindex --------------------------------------------------------------------------------------
GERMAN = ("Die Häuser am Fluss wurden im Jahr {n} gebaut, und in den Gärten blühen Blumen, "
          "während die Kinder auf den Wiesen spielen und die Nachbarn Rechnungen bezahlen.")


def test_language_change_reindexes_every_row_while_ingest_goes_on(tmp_path: Path,
                                                                  db_url: str) -> None:
    rows = 6000
    execute(db_url, "INSERT INTO documents (sha256, original_name, source_path, status, "
            "extracted_text, search_config) SELECT encode(sha256(g::text::bytea), 'hex'), "
            "'doc' || g, 'doc' || g, 'extracted', replace(%s, '{n}', g::text), 'english' "
            "FROM generate_series(1, %s) g", (GERMAN, rows))
    jobs = only(reindex={"schedule": "0 4 * * 0", "batch_size": 500})
    config = write_config(tmp_path, db_url, jobs=jobs)
    # The reload also changes a schedule: prune, off so far, every second from now on.
    reloaded_jobs = {**jobs, "prune": {"enabled": True, "schedule": "every 1s"}}
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start().wait_started()
    stop = threading.Event()
    latencies: list[float] = []

    def insert_meanwhile() -> None:
        # Another writer that already uses the new language, one row per transaction.
        with psycopg.connect(db_url, autocommit=True) as conn:
            n = 0
            while not stop.is_set():
                n += 1
                text = GERMAN.replace("{n}", f"x{n}")
                started = time.monotonic()
                conn.execute("INSERT INTO documents (sha256, original_name, source_path, "
                             "status, extracted_text, search_config) VALUES (%s, %s, %s, "
                             "'extracted', %s, 'german')",
                             (hashlib.sha256(text.encode()).hexdigest(), f"live{n}",
                              f"live{n}", text))
                latencies.append(time.monotonic() - started)
                time.sleep(0.002)

    writer = threading.Thread(target=insert_meanwhile)
    writer.start()
    try:
        write_config(tmp_path, db_url, jobs=reloaded_jobs, search={"language": "german"})
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        (tmp_path / "inbox" / "neu.txt").write_text("Die Kinder spielen in den Gärten.")
        done = wait_for(lambda: [r for r in runs(db_url, "reindex")
                                 if r["outcome"] != "running"], 60, "the reindex run",
                        alive=daemon.assert_alive)
        wait_for(lambda: not inbox_files(tmp_path / "inbox"), 20, "the dropped file")
        wait_for(lambda: runs(db_url, "prune"), 10, "the rescheduled prune job")
    finally:
        stop.set()
        writer.join(10)
        daemon.stop()
    [run] = done
    details = run["details"]
    assert run["outcome"] == "succeeded" and run["trigger"] == "reload", details
    assert details["rewritten"] >= rows and details["stale_after"] == 0
    assert details["rebuild_reason"] and details["reindex_seconds"] >= 0
    stale = query(db_url, "SELECT count(*) AS n FROM documents "
                  "WHERE search_config <> 'german'::regconfig")
    assert stale[0]["n"] == 0
    total = query(db_url, "SELECT count(*) AS n FROM documents")[0]["n"]
    # German stemming now finds "Häuser" when searching "Haus", in every row.
    found = query(db_url, "SELECT count(*) AS n FROM documents "
                  "WHERE search_vector @@ websearch_to_tsquery('german', 'Haus')")[0]["n"]
    assert found == total - 1  # all but the dropped file, which talks of children only
    during = query(db_url, "SELECT count(*) AS n FROM documents WHERE original_name LIKE "
                   "'live%%' AND created_at BETWEEN %s AND %s",
                   (run["started_at"], run["finished_at"]))[0]["n"]
    assert during > 0, "no insert happened during the reindex"
    assert max(latencies) < 2.0, max(latencies)
    ingested = query(db_url, "SELECT search_config::text AS c FROM documents "
                     "WHERE original_name = 'neu.txt'")
    assert ingested == [{"c": "german"}]


# --- the other jobs -----------------------------------------------------------------------------
def test_prune_keeps_recent_history_and_each_jobs_newest_run(tmp_path: Path,
                                                             db_url: str) -> None:
    execute(db_url, """
        INSERT INTO document_arrivals (claim_key, source_path, original_name, instance,
                                       outcome, arrived_at)
        SELECT 'k' || g, 'p', 'p', 't', 'failed', now() - (g || ' days')::interval
        FROM generate_series(1, 20) g;
        INSERT INTO job_runs (job, instance, trigger, started_at, finished_at, outcome)
        SELECT j, 't', 'schedule', now() - (g || ' days')::interval,
               now() - (g || ' days')::interval, 'succeeded'
        FROM generate_series(3, 20) g, (VALUES ('backup'), ('reindex')) AS jobs(j)
        WHERE j = 'backup' OR g = 20;
    """)
    config = write_config(tmp_path, db_url, jobs={"prune": {"keep_days": 10}})
    result = json.loads(run_cli(config, "jobs", "run", "prune", "--json").stdout)
    # Ages 1…20 days: 10 days and older go (the cutoff is taken after the rows were written).
    assert result["details"]["arrivals_deleted"] == 11
    assert query(db_url, "SELECT count(*) AS n FROM document_arrivals")[0]["n"] == 9
    kept = query(db_url, "SELECT job, started_at < now() - interval '10 days' AS old "
                 "FROM job_runs WHERE job IN ('backup', 'reindex') ORDER BY job, started_at")
    assert [r["job"] for r in kept if not r["old"]] == ["backup"] * 7
    # reindex ran once, 20 days ago: its only run stays so status can still show it.
    assert [r for r in kept if r["old"]] == [{"job": "reindex", "old": True}]


def test_retry_failed_job_puts_failed_files_back(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    settings = load_settings(str(config), environ={})
    with psycopg.connect(db_url) as conn:
        doc_id = conn.execute("INSERT INTO documents (original_name, source_path, status, "
                              "error) VALUES ('bad.txt', 'sub/bad.txt', 'failed', 'boom') "
                              "RETURNING id").fetchone()[0]
    src = tmp_path / "bad.txt"
    src.write_text("bad")
    failed = FailedFolder(settings.failed_path)
    failed.open()
    failed.put(src, "sub/bad.txt", {"source_path": "sub/bad.txt", "document_id": str(doc_id),
                                    "reason": "boom"})
    result = json.loads(run_cli(config, "jobs", "run", "retry-failed", "--json").stdout)
    assert result["outcome"] == "succeeded" and result["details"]["moved"] == 1
    assert (tmp_path / "inbox" / "sub" / "bad.txt").read_text() == "bad"
    assert failed.notes() == []
    assert query(db_url, "SELECT count(*) AS n FROM documents")[0]["n"] == 0


def test_status_shows_each_jobs_last_and_next_run(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)
    run_cli(config, "jobs", "run", "prune")
    out = run_cli(config, "jobs", "run", "rescan", check=False)
    assert out.returncode == 64 and "running daemon" in out.stderr
    # No daemon runs here: status reports and exits 1 (unhealthy) all the same.
    report = json.loads(run_cli(config, "status", "--json", check=False).stdout)
    jobs = {j["job"]: j for j in report["jobs"]}
    assert set(jobs) == {"backup", "restore-test", "reindex", "rescan", "retry-failed", "prune"}
    assert jobs["prune"]["last_outcome"] == "succeeded" and jobs["prune"]["last_finished"]
    assert jobs["backup"]["last_outcome"] is None
    assert datetime.fromisoformat(jobs["backup"]["next_run"]).strftime("%H:%M") == "03:00"
    assert jobs["retry-failed"]["enabled"] is False and jobs["retry-failed"]["next_run"] is None
    text = run_cli(config, "status", check=False).stdout
    assert "job:       prune: last succeeded" in text
