"""Scaling OCR out: two daemons and an `alfrd worker` on one database and one store read 200
scanned pages together. Every page is read, no document is completed twice, none is left in
the queue, and more than one process took part.

The size is the issue's (200 pages); the pages are tiny (a few words at 150 dpi, tens of
milliseconds each) so that the test is about coordination, not Tesseract's speed."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import DaemonProcess, query, wait_for, write_config
from tests.integration.test_ocr_stage import (
    WorkerProcess,
    completions,
    count_completions,
    drop,
    ocr_config,
)
from tests.ocr_samples import image_pdf, make_text_image

DOCUMENTS = 20
PAGES = 10  # per document: 200 pages in all


ANIMALS = ("otter", "badger", "heron", "marten", "walrus", "beaver", "falcon", "ferret",
           "gopher", "jackal", "lemur", "marmot", "panda", "rabbit", "salmon", "turtle",
           "weasel", "zebra", "camel", "donkey")
COLORS = ("amber", "cobalt", "crimson", "golden", "indigo", "maroon", "orange", "purple",
          "silver", "violet")


def marker(n: int, p: int) -> str:
    # Whole words: Tesseract confuses 0/O and l/i inside made-up tokens now and then.
    return f"{ANIMALS[n]} {COLORS[p]}"


def scanned_document(n: int) -> bytes:
    return image_pdf([make_text_image(f"Folio page {marker(n, p)}", per_line=4)
                      for p in range(PAGES)])


def test_two_daemons_and_a_worker_read_200_pages_each_once(tmp_path: Path,
                                                           db_url: str) -> None:
    count_completions(db_url)
    config = ocr_config(tmp_path, write_config(tmp_path, db_url, store={"fsync": False}),
                        "scale.yaml", workers=1, lease_seconds=30)
    inbox = tmp_path / "inbox"
    processes: list[DaemonProcess] = [DaemonProcess(config, tmp_path / f"daemon{i}.log")
                                      for i in range(2)]
    processes.append(WorkerProcess(config, tmp_path / "worker.log"))
    try:
        for p in processes:
            p.start()
        for p in processes[:2]:
            p.wait_started()
        for n in range(DOCUMENTS):
            drop(inbox, f"scan{n:02d}.pdf", scanned_document(n))

        def all_alive() -> None:
            for p in processes:
                p.assert_alive()

        def all_read() -> bool:
            rows = query(db_url, "SELECT count(*) AS n FROM ocr_jobs WHERE state = 'done'")
            return rows[0]["n"] == DOCUMENTS

        wait_for(all_read, 180, f"{DOCUMENTS} scanned documents read", alive=all_alive)
        for p in processes:
            assert p.stop() == 0, p.log()[-2000:]
    finally:
        for p in processes:
            if p.proc is not None and p.proc.poll() is None:
                p.kill()

    docs = query(db_url, "SELECT id::text AS id, original_name, status, extracted_text, "
                 "metadata -> 'ocr' AS ocr FROM documents ORDER BY original_name")
    assert [d["original_name"] for d in docs] == [f"scan{n:02d}.pdf" for n in range(DOCUMENTS)]
    assert {d["status"] for d in docs} == {"extracted"}
    assert completions(db_url) == {d["id"]: 1 for d in docs}  # none completed twice
    assert sum(d["ocr"]["ocr_pages"] for d in docs) == DOCUMENTS * PAGES
    for n, d in enumerate(docs):
        words = d["extracted_text"].replace("\n", " ")
        missing = [p for p in range(PAGES) if marker(n, p) not in words]
        assert not missing, f"{d['original_name']}: pages {missing} not in {words[:300]!r}"
    left = query(db_url, "SELECT state, count(*) AS n FROM ocr_jobs GROUP BY state")
    assert left == [{"state": "done", "n": DOCUMENTS}]
    readers = {p.log_path.name: p.log().count("alfrd.ocr OCR of scan") for p in processes}
    assert sum(readers.values()) == DOCUMENTS, readers
    assert sum(1 for n in readers.values() if n) >= 2, f"only one process read: {readers}"
