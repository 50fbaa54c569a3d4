"""The metrics of a running daemon, as Prometheus and node-exporter read them: scraped over
HTTP and parsed with prometheus_client's own parser, the textfile parsed the same way, the
figures following dropped files, and a scrape while the database refuses connections."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import psycopg
import yaml
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.helpers import (
    REPO,
    DaemonProcess,
    alfrd_env,
    query,
    run_cli,
    wait_for,
    write_config,
)
from tests.ocr_samples import image_bytes, make_text_image

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.status == 200
        return parse(reply.read().decode())


def first_scrape(port: int, daemon: DaemonProcess) -> Samples:
    """The endpoint is bound first in the start: it answers before the database is open
    (alfrd_database_up 0) and the daemon is ready (the first heartbeat)."""
    def attempt() -> Samples | None:
        try:
            samples = scrape(port)
        except urllib.error.URLError:
            return None
        return samples if value(samples, "alfrd_database_up") == 1 else None

    return wait_for(attempt, 30, "the metrics endpoint", alive=daemon.assert_alive)


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def set_connections(db_url: str, allowed: bool) -> None:
    """Refuse (or allow again) new connections to the test database and end its sessions."""
    name = conninfo_to_dict(db_url)["dbname"]
    admin = make_conninfo(db_url, dbname="postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
            sql.Identifier(str(name)), sql.SQL("true" if allowed else "false")))
        if not allowed:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))


def test_a_scrape_follows_ingest_and_answers_with_the_database_down(
        tmp_path: Path, db_url: str) -> None:
    port = free_port()
    textfile = tmp_path / "textfile" / "alfrd.prom"
    textfile.parent.mkdir()
    config = write_config(tmp_path, db_url, metrics={
        "listen": f"127.0.0.1:{port}", "textfile": str(textfile), "textfile_interval": 1,
        "cache_seconds": 0.5})
    inbox = tmp_path / "inbox"
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        first = first_scrape(port, daemon)
        assert value(first, "alfrd_database_up") == 1
        assert value(first, "alfrd_healthy") == 1
        assert value(first, "alfrd_ingest_outcomes_total", outcome="ingested") == 0
        assert value(first, "alfrd_extractor_processes", pool="ingest", state="size")
        assert value(first, "alfrd_db_pool_connections", state="max") == 4
        assert value(first, "alfrd_extraction_seconds_count") == 0

        (inbox / "one.txt").write_text("metrics okapi one\n")
        (inbox / "two.txt").write_text("metrics okapi two\n")
        (inbox / "again.txt").write_text("metrics okapi one\n")
        wait_for(lambda: value(scrape(port), "alfrd_ingest_outcomes_total",
                               outcome="duplicate") == 1
                 and value(scrape(port), "alfrd_ingest_outcomes_total",
                           outcome="ingested") == 2, 30, "the outcomes to count three files",
                 alive=daemon.assert_alive, interval=0.3)
        run_cli(config, "jobs", "run", "prune")
        # Database figures are cached a few seconds: wait for the cache to turn over.
        after = wait_for(lambda: (lambda s: s if value(s, "alfrd_documents", status="extracted")
                                  == 2 and value(s, "alfrd_job_last_success_timestamp_seconds",
                                                 job="prune") else None)(scrape(port)),
                         30, "the document counts and the prune run", alive=daemon.assert_alive,
                         interval=0.5)
        # A file retried under load is extracted again: at least once per file.
        extractions = value(after, "alfrd_extraction_seconds_count")
        assert extractions is not None and extractions >= 3
        assert value(after, "alfrd_ocr_queue_documents") == 0
        assert value(after, "alfrd_documents", status="failed") == 0

        # The textfile: replaced whole (never a half-written file), parseable, the same names.
        def textfile_counts() -> Samples | None:
            samples = parse(textfile.read_text())
            return samples if value(samples, "alfrd_ingest_outcomes_total",
                                    outcome="ingested") == 2 else None

        from_file = wait_for(textfile_counts, 10, "the textfile to show the ingest",
                             alive=daemon.assert_alive)
        assert value(from_file, "alfrd_database_up") == 1
        # Read while it is being replaced, it is always whole, down to the late families.
        for _ in range(30):
            text = textfile.read_text()
            assert text.endswith("\n") and 'alfrd_extractor_processes{pool="ingest",' \
                'state="busy"}' in text, text[-500:]
            assert {p.name for p in textfile.parent.iterdir()
                    if not p.name.startswith("alfrd.prom.")} == {"alfrd.prom"}

        set_connections(db_url, False)
        try:
            down = wait_for(lambda: (lambda s: s if value(s, "alfrd_database_up") == 0
                                     else None)(scrape(port)),
                            30, "a scrape saying the database is down",
                            alive=daemon.assert_alive, interval=0.5)
            assert value(down, "alfrd_ingest_outcomes_total", outcome="ingested") == 2
            assert value(down, "alfrd_documents", status="extracted") is None
        finally:
            set_connections(db_url, True)
        wait_for(lambda: value(scrape(port), "alfrd_database_up") == 1, 30,
                 "the database figures to come back", alive=daemon.assert_alive, interval=0.5)
    assert query(db_url, "SELECT count(*) AS n FROM documents")[0]["n"] == 2


def test_a_taken_port_stops_the_start_with_one_line_naming_metrics_listen(
        tmp_path: Path, db_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path, db_url, metrics={"listen": f"127.0.0.1:{port}"})
        daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
        try:
            assert daemon.proc is not None
            assert daemon.proc.wait(60) == 1
        finally:
            daemon.kill()
    lines = [line for line in daemon.log().splitlines() if "metrics.listen" in line]
    assert lines and f"cannot listen on metrics.listen 127.0.0.1:{port}" in lines[0], \
        daemon.log()[-2000:]
    assert "Traceback" not in daemon.log()
    assert "event=started" not in daemon.log()  # it fails before anything runs


class WorkerProcess(DaemonProcess):
    """`alfrd worker --metrics-listen` in a subprocess."""

    def __init__(self, config: Path, log_path: Path, listen: str):
        super().__init__(config, log_path)
        self.listen = listen

    def start(self) -> WorkerProcess:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "alfrd_daemon", "worker", "--config", str(self.config),
             "--metrics-listen", self.listen],
            stdout=self._log, stderr=subprocess.STDOUT, env=alfrd_env(), cwd=REPO,
            stdin=subprocess.DEVNULL)
        return self


def test_the_ocr_worker_exposes_its_ocr_figures(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url)  # the daemon ingests only (ocr.enabled false)
    cfg = yaml.safe_load(config.read_text())
    cfg["ocr"] = {"enabled": True, "workers": 1, "dpi": 150, "detect_orientation": False}
    worker_config = tmp_path / "worker.yaml"
    worker_config.write_text(yaml.safe_dump(cfg))
    port = free_port()
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon, \
            WorkerProcess(worker_config, tmp_path / "worker.log",
                          f"127.0.0.1:{port}") as worker:
        first = first_scrape(port, worker)
        assert value(first, "alfrd_healthy") == 1 and value(first, "alfrd_database_up") == 1
        assert value(first, "alfrd_extractor_processes", pool="ocr", state="size") == 1
        assert value(first, "alfrd_ocr_document_seconds_count") == 0
        assert value(first, "alfrd_queue_depth") is None  # no ingest here

        scan = tmp_path / ".scan.png.part"
        scan.write_bytes(image_bytes(make_text_image("Metrics pelican memo"), "png"))
        scan.rename(tmp_path / "inbox" / "scan.png")
        done = wait_for(lambda: (lambda s: s if value(s, "alfrd_ocr_document_seconds_count")
                                 == 1 else None)(scrape(port)), 60, "the worker to read it",
                        alive=lambda: (daemon.assert_alive(), worker.assert_alive()),
                        interval=0.3)
        assert value(done, "alfrd_ocr_pages_total") == 1
        assert value(done, "alfrd_ocr_available") == 1
