"""What the benchmarks ingest and search: a Zipf-distributed pseudo-word vocabulary, flat
corpora of distinct text files and PDFs, and generated document rows made server-side."""

from __future__ import annotations

import random
import shutil
import threading
import time
from pathlib import Path

import psycopg

from benchmarks.harness import log
from tests.samples import make_pdf

_ONSETS = ["b", "c", "d", "f", "g", "h", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w",
           "br", "cr", "dr", "fr", "gr", "pl", "st", "tr", "sh", "ch"]
_NUCLEI = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "io"]
_CODAS = ["", "", "n", "r", "l", "s", "t", "nd", "rk", "m"]


def vocabulary(size: int = 5000, seed: int = 7) -> list[str]:
    """`size` distinct pronounceable pseudo-words; index 0 is the most frequent."""
    rng = random.Random(seed)
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < size:
        n = rng.choice((2, 2, 3, 3, 4))
        w = "".join(rng.choice(_ONSETS) + rng.choice(_NUCLEI) + rng.choice(_CODAS)
                    for _ in range(n))
        if w not in seen and len(w) >= 4:
            seen.add(w)
            words.append(w)
    return words


def zipf_cum_weights(size: int, s: float = 1.0) -> list[float]:
    acc, out = 0.0, []
    for r in range(1, size + 1):
        acc += 1.0 / r**s
        out.append(acc)
    return out


class TextMaker:
    """Distinct documents of Zipf-drawn words; the same seed gives the same texts."""

    def __init__(self, seed: int = 11):
        self.words = vocabulary()
        self.cum = zipf_cum_weights(len(self.words))
        self.rng = random.Random(seed)

    def text(self, i: int, size: int = 1000) -> str:
        head = f"Document {i} reference R{i:07d}\n"
        parts = [head]
        n = len(head)
        while n < size:
            line = " ".join(self.rng.choices(self.words, cum_weights=self.cum, k=12)) + "\n"
            parts.append(line)
            n += len(line)
        return "".join(parts)


def make_corpus(root: Path, files: int, pdfs: int, pdf_pages: int, size: int = 1000,
                prefix: str = "doc") -> list[Path]:
    """`files` text files of ~`size` bytes plus `pdfs` PDFs, all distinct, flat in `root`."""
    root.mkdir(parents=True, exist_ok=True)
    tm = TextMaker()
    out = []
    for i in range(files):
        p = root / f"{prefix}_{i:07d}.txt"
        p.write_text(tm.text(i, size))
        out.append(p)
    for j in range(pdfs):
        pages = [f"{prefix} pdf {j} page {k} " + tm.text(j * 1000 + k, 60).replace("\n", " ")
                 for k in range(pdf_pages)]
        p = root / f"{prefix}_{j:07d}.pdf"
        p.write_bytes(make_pdf(pages))
        out.append(p)
    return out


def copy_corpus(src: list[Path], dst: Path) -> list[Path]:
    """A private copy for one scenario (each consumes its files)."""
    dst.mkdir(parents=True, exist_ok=True)
    out = []
    for p in src:
        q = dst / p.name
        shutil.copyfile(p, q)
        out.append(q)
    return out


GENERATE_SQL = """
INSERT INTO documents (sha256, original_name, source_path, status, mime_type, size_bytes,
                       extracted_text, created_at, updated_at)
SELECT encode(sha256(('bench-doc-' || g)::bytea), 'hex'),
       'doc_' || g || '.txt', 'gen/doc_' || g || '.txt', 'extracted', 'text/plain', 600,
       t.body, now() - (g || ' seconds')::interval, now()
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g,
LATERAL (
    SELECT string_agg((%(words)s::text[])[1 + least(%(nwords)s - 1,
                        floor(exp(random() * ln(%(nwords)s)))::int - 1)], ' ') AS body
    FROM generate_series(1, %(per_doc)s + (g %% 1)::int)
) AS t
"""


def generate_documents(url: str, n: int, per_doc: int, threads: int = 2) -> float:
    """n rows made server-side; words ~ Zipf(1) over the 5,000-word vocabulary (rank r has
    probability ∝ 1/r: rank = floor(exp(U·ln 5000))). GIN index dropped and rebuilt after."""
    words = vocabulary()
    t0 = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("DROP INDEX documents_search_vector_idx")
    step = 20_000
    ranges = [(lo, min(n, lo + step - 1)) for lo in range(1, n + 1, step)]
    lock = threading.Lock()

    def worker() -> None:
        with psycopg.connect(url, autocommit=True) as c:
            while True:
                with lock:
                    if not ranges:
                        return
                    lo, hi = ranges.pop(0)
                c.execute(GENERATE_SQL, {"lo": lo, "hi": hi, "words": words,
                                         "nwords": len(words), "per_doc": per_doc})

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    t_rows = time.perf_counter() - t0
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("SET maintenance_work_mem = '1GB'")
        c.execute("CREATE INDEX documents_search_vector_idx ON documents USING gin "
                  "(search_vector)")
        c.execute("VACUUM ANALYZE documents")
    log(f"generated {n} documents in {t_rows:.0f} s, index+analyze "
        f"{time.perf_counter() - t0 - t_rows:.0f} s")
    return time.perf_counter() - t0
