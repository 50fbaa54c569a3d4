"""Rules end to end with a running daemon, real PostgreSQL and real Tesseract: dropped text,
PDF and scanned files are found by type and correspondent; a scan gets its rules once OCR has
read it; a hostile regex cannot stall ingest; rules.d is re-read on SIGHUP and a bad rule is
refused; `alfrd rules test` writes nothing; `alfrd rules apply --all` over 10,000 documents
next to a daemon that is ingesting loses and doubles nothing and leaves user fields alone."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import docx
import psycopg
import yaml
from psycopg.rows import dict_row

from alfrd_daemon.config.parse import load_settings
from alfrd_daemon.ingest.reextract import reextract_stale
from alfrd_daemon.jobs.rules_apply import apply_all
from alfrd_daemon.rules.load import RuleSource, compile_rules
from tests.helpers import REPO, DaemonProcess, alfrd_env, query, run_cli, wait_for, write_config
from tests.ocr_samples import image_bytes, make_text_image
from tests.samples import make_pdf

RULES: list[dict[str, Any]] = [
    {"name": "electricity", "any": ["strom", "electricity"], "none": ["mahnung"],
     "document_type": "invoice", "correspondent": "Stadtwerke", "tags": ["energy"],
     "title": "{correspondent} {document_type} {date:%Y}"},
    {"name": "tax office", "fuzzy": {"text": "Finanzamt Hamburg", "threshold": 80},
     "correspondent": "Finanzamt", "document_type": "tax notice"},
    {"name": "bank", "folder": "bank", "filename": "*.txt", "document_type": "statement"},
    {"name": "hostile", "regex": "(a+)+$", "tags": ["never"]},
]
OCR_FAST = {"enabled": True, "workers": 1, "dpi": 150, "detect_orientation": False,
            "page_timeout_seconds": 20, "poll_seconds": 60}


def docs(db_url: str) -> dict[str, dict[str, Any]]:
    rows = query(db_url, "SELECT id::text AS id, original_name, status, tags, rule_tags, "
                 "document_type, correspondent, title, metadata FROM documents")
    return {r["original_name"]: r for r in rows}


def test_dropped_files_file_themselves(tmp_path: Path, db_url: str) -> None:
    config = write_config(tmp_path, db_url, rules={"inline": RULES, "regex_timeout": 0.05},
                          ocr=OCR_FAST)
    inbox = tmp_path / "inbox"
    (tmp_path / "rules.d").mkdir()
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        (inbox / "bill.txt").write_text("Your electricity bill for March\n")
        (inbox / "reminder.txt").write_text("Strom: Mahnung, second reminder\n")
        (inbox / "tax.pdf").write_bytes(make_pdf(["Absender: Flnanzamt Harnburg-Nord, Bescheid"]))
        (inbox / "bank").mkdir()
        (inbox / "bank" / "march.txt").write_text("Account statement\n")
        (inbox / "aaaa.txt").write_text("a" * 30_000 + "b")
        # A scan: its words are known only after OCR.
        scan = make_text_image("Stadtwerke electricity invoice", per_line=3)
        (inbox / "scan.png").write_bytes(image_bytes(scan, "png"))
        names = {"bill.txt", "reminder.txt", "tax.pdf", "march.txt", "aaaa.txt", "scan.png"}
        wait_for(lambda: names <= set(docs(db_url)) and
                 docs(db_url)["scan.png"]["status"] == "extracted", 60,
                 "six documents, the scan read by OCR", alive=daemon.assert_alive)
        d = docs(db_url)
        bill = d["bill.txt"]
        assert (bill["document_type"], bill["correspondent"]) == ("invoice", "Stadtwerke")
        assert bill["tags"] == ["energy"] and bill["rule_tags"] == ["energy"]
        assert bill["metadata"]["rules"] == {"electricity": ["electricity"]}
        assert bill["title"].startswith("Stadtwerke invoice 20")
        assert d["reminder.txt"]["document_type"] is None  # the `none` word vetoes it
        assert d["reminder.txt"]["tags"] == []
        assert (d["tax.pdf"]["correspondent"], d["tax.pdf"]["document_type"]) == (
            "Finanzamt", "tax notice")
        assert d["march.txt"]["document_type"] == "statement"
        assert d["march.txt"]["tags"] == ["bank"]  # the folder tag, kept
        assert d["aaaa.txt"]["metadata"]["rules_timed_out"] == {"hostile": ["(a+)+$"]}
        assert d["aaaa.txt"]["tags"] == []
        assert "event=rule_timeout" in daemon.log()
        scanned = d["scan.png"]
        assert (scanned["document_type"], scanned["correspondent"]) == ("invoice", "Stadtwerke")
        assert "electricity" in scanned["metadata"]["rules"]
        # Found by type and correspondent, as a user asks.
        found = query(db_url, "SELECT original_name FROM documents WHERE lower(document_type) "
                      "= 'invoice' AND lower(correspondent) = 'stadtwerke' ORDER BY 1")
        assert [r["original_name"] for r in found] == ["bill.txt", "scan.png"]
        shown = json.loads(run_cli(config, "show", bill["id"], "--json").stdout)
        assert shown["document_type"] == "invoice"
        assert shown["metadata"]["rules"] == {"electricity": ["electricity"]}
        text = run_cli(config, "show", bill["id"]).stdout
        assert "document_type: invoice" in text and "electricity (on 'electricity')" in text

        # rules.d is re-read on SIGHUP; a bad rule is refused and the running rules stay.
        (tmp_path / "rules.d" / "10-bad.yaml").write_text(
            yaml.safe_dump([{"name": "broken", "regex": "(", "tags": ["x"]}]))
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reload rejected" in daemon.log(), 20, "reload rejected")
        assert "rule 'broken', key 'regex'" in daemon.log()
        (tmp_path / "rules.d" / "10-bad.yaml").write_text(yaml.safe_dump(
            {"rules": [{"name": "insurance", "all": ["policy", "insurance"],
                        "document_type": "insurance"}]}))
        daemon.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "event=reloaded" in daemon.log(), 20, "reloaded")
        (inbox / "policy.txt").write_text("Your insurance policy\n")
        wait_for(lambda: "policy.txt" in docs(db_url), 20, "policy.txt",
                 alive=daemon.assert_alive)
        assert docs(db_url)["policy.txt"]["document_type"] == "insurance"


def test_config_check_and_start_refuse_bad_rules(tmp_path: Path, db_url: str) -> None:
    bad = [{"name": "r", "any": "x", "title": "{sender}"}]
    config = write_config(tmp_path, db_url, rules=bad)
    result = run_cli(config, "config", "check", check=False)
    assert result.returncode == 1
    assert "rule 'r', key 'title': got '{sender}', expected fields among" in result.stdout
    for args, expected in ((["rules", "apply"], "name document ids, or pass --all"),
                           (["rules", "apply", "--since", "yesterday"], "'yesterday'"),
                           (["rules", "test", "no/such/file.txt"], "an existing file")):
        bad_arg = run_cli(config, *args, check=False)
        assert bad_arg.returncode == 64 and expected in bad_arg.stderr, bad_arg.stderr
        assert len(bad_arg.stderr.strip().splitlines()) == 1
    daemon = DaemonProcess(config, tmp_path / "daemon.log").start()
    assert daemon.proc is not None
    assert daemon.proc.wait(60) == 1
    daemon.kill()
    assert "rule 'r', key 'title'" in daemon.log()


def insert_documents(db_url: str, n: int) -> None:
    """`n` stored documents written straight into the table; every 10th has its type and
    tags set by hand, every 7th had the "energy" tag taken off by the user."""
    query(db_url, """
        INSERT INTO documents (sha256, original_name, source_path, status, extracted_text,
                               tags, document_type, user_fields, user_removed_tags)
        SELECT encode(sha256(('bulk' || i)::bytea), 'hex'), 'bulk' || i || '.txt',
               'bulk' || i || '.txt', 'extracted',
               CASE WHEN i %% 2 = 0 THEN 'electricity bill number ' || i
                    ELSE 'a letter from Finanzamt Hamburg ' || i END,
               CASE WHEN i %% 10 = 0 THEN ARRAY['mine'] ELSE '{}' END,
               CASE WHEN i %% 10 = 0 THEN 'my type' END,
               CASE WHEN i %% 10 = 0 THEN ARRAY['document_type', 'tags'] ELSE '{}' END,
               CASE WHEN i %% 7 = 0 THEN ARRAY['energy'] ELSE '{}' END
        FROM generate_series(1, %s) AS i
        RETURNING 1""", (n,))


def test_rules_apply_over_10000_documents_next_to_a_running_daemon(tmp_path: Path,
                                                                  db_url: str) -> None:
    config = write_config(tmp_path, db_url, rules=RULES[:2])
    insert_documents(db_url, 10_000)
    inbox = tmp_path / "inbox"
    one = query(db_url, "SELECT id::text AS id, updated_at FROM documents "
                "WHERE original_name = 'bulk2.txt'")[0]
    # `rules test` on a stored document and on a file: what would happen, nothing written.
    tested = json.loads(run_cli(config, "rules", "test", one["id"], "--json").stdout)
    assert tested["document_type"] == "invoice" and tested["tags"] == ["energy"]
    sample = tmp_path / "sample.txt"
    sample.write_text("Strom und Gas\n")
    tested = json.loads(run_cli(config, "rules", "test", str(sample), "--json").stdout)
    assert tested["matched"] == {"electricity": ["Strom"]}
    assert query(db_url, "SELECT updated_at FROM documents WHERE id = %s",
                 (one["id"],))[0]["updated_at"] == one["updated_at"]
    # One document by the start of its id.
    single = json.loads(run_cli(config, "rules", "apply", one["id"][:13], "--json").stdout)
    assert (single["documents"], single["changed"]) == (1, 1)
    assert query(db_url, "SELECT document_type FROM documents WHERE id = %s",
                 (one["id"],))[0]["document_type"] == "invoice"
    with DaemonProcess(config, tmp_path / "daemon.log") as daemon:
        apply = subprocess.Popen(
            [sys.executable, "-m", "alfrd_daemon", "rules", "apply", "--all", "--json",
             "--batch-size", "500", "--config", str(config)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=alfrd_env(),
            cwd=REPO)
        try:
            for i in range(40):  # ingest goes on while the batches run
                (inbox / f"new{i}.txt").write_text(f"electricity meter {i}\n")
            out, err = apply.communicate(timeout=120)
        finally:
            if apply.poll() is None:
                apply.kill()
                apply.wait(10)
        assert apply.returncode == 0, err
        stats = json.loads(out)
        wait_for(lambda: len(query(db_url, "SELECT 1 FROM documents WHERE original_name "
                                   "LIKE 'new%%'")) == 40, 60, "40 new documents",
                 alive=daemon.assert_alive)
    assert stats["documents"] >= 10_000
    rows = query(db_url, "SELECT original_name, tags, document_type, correspondent, "
                 "user_fields, metadata ? 'rules' AS ruled FROM documents")
    assert len(rows) == 10_040 and len({r["original_name"] for r in rows}) == 10_040
    assert all(r["ruled"] for r in rows)  # no document left out
    bulk = {r["original_name"]: r for r in rows if r["original_name"].startswith("bulk")}
    for i in (10, 20, 9990):  # set by hand: untouched
        r = bulk[f"bulk{i}.txt"]
        assert (r["document_type"], r["tags"]) == ("my type", ["mine"])
    assert bulk["bulk4.txt"]["document_type"] == "invoice"
    assert bulk["bulk4.txt"]["tags"] == ["energy"]
    assert bulk["bulk14.txt"]["tags"] == []  # the user took "energy" off: it stays off
    assert bulk["bulk3.txt"]["correspondent"] == "Finanzamt"
    assert all(r["document_type"] == "invoice" for r in rows
               if r["original_name"].startswith("new"))
    # Nothing doubled: a second run finds every row already right and writes none.
    again = json.loads(run_cli(config, "rules", "apply", "--all", "--json").stdout)
    assert again["documents"] == 10_040 and again["changed"] == 0
    # Resumable: from an id on, only the rows after it.
    middle = sorted(query(db_url, "SELECT id::text AS id FROM documents"),
                    key=lambda r: r["id"])[9500]["id"]
    resumed = json.loads(run_cli(config, "rules", "apply", "--all", "--from-id", middle,
                                 "--json").stdout)
    assert resumed["documents"] == 10_040 - 9501
    later = json.loads(run_cli(config, "rules", "apply", "--since", "2999-01-01", "--json").stdout)
    assert later["documents"] == 0  # nothing was ingested since then


def test_a_document_read_again_from_the_store_gets_its_rules(tmp_path: Path,
                                                             db_url: str) -> None:
    """Re-extraction (the reindex job) gives stored office files their text; the rules run
    on it in the same transaction."""
    settings = load_settings(str(write_config(tmp_path, db_url, rules=RULES[:1])), environ={})
    settings.store_path.mkdir(parents=True)
    document = docx.Document()
    document.add_paragraph("Your electricity bill")
    document.save(str(settings.store_path / "bill"))
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        conn.execute("INSERT INTO documents (sha256, original_name, source_path, status, "
                     "extracted_text, extractor, mime_type, stored_path) VALUES (%s, 'bill.docx', "
                     "'bill.docx', 'pending', '', 'none/1', %s, 'bill')",
                     ("0" * 64, "application/vnd.openxmlformats-officedocument."
                                "wordprocessingml.document"))
        counts = reextract_stale(settings, conn, batch_size=10, check=lambda: None)
        row = conn.execute("SELECT status, document_type, tags, metadata FROM documents"
                           ).fetchone()
    assert counts["reextracted"] == 1
    assert row is not None and row["status"] == "extracted"
    assert (row["document_type"], row["tags"]) == ("invoice", ["energy"])
    assert row["metadata"]["rules"] == {"electricity": ["electricity"]}


def test_a_user_edit_made_while_rules_apply_waits_is_not_overwritten(db_url: str) -> None:
    """The run finds the row stale, waits for the lock a user's edit holds, and decides again
    on what the edit left: the hand-set type stays."""
    ruleset = compile_rules([RuleSource("t", RULES[0])])
    [doc] = query(db_url, "INSERT INTO documents (sha256, original_name, source_path, status, "
                  "extracted_text) VALUES (%s, 'e.txt', 'e.txt', 'extracted', 'electricity') "
                  "RETURNING id::text AS id", ("e" * 64,))
    result: dict[str, Any] = {}
    with psycopg.connect(db_url) as user:
        user.execute("SELECT 1 FROM documents WHERE id = %s FOR UPDATE", (doc["id"],))
        user.execute("UPDATE documents SET document_type = 'letter', user_fields = "
                     "ARRAY['document_type'] WHERE id = %s", (doc["id"],))

        def run() -> None:
            with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
                result["stats"] = apply_all(conn, ruleset)

        runner = threading.Thread(target=run)
        runner.start()
        wait_for(lambda: query(db_url, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type "
                               "= 'Lock' AND query LIKE '%%FOR UPDATE%%'"), 20,
                 "rules apply waiting for the row lock")
        user.commit()
        runner.join(20)
    assert not runner.is_alive()
    [row] = query(db_url, "SELECT document_type, correspondent, tags FROM documents")
    assert row == {"document_type": "letter", "correspondent": "Stadtwerke",
                   "tags": ["energy"]}
    assert result["stats"].changed == 1
