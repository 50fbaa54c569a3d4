"""What date detection costs per document: a typical 2 KB letter, the same with no date, and
the worst a text can ask within dates.max_chars: 20 KB of written dates that are none
("31. April 1950", each different), which are all parsed, up to MAX_PARSES, and rejected.

    python -m benchmarks.dates_cpu [--texts 2000] [--runs 3]

Each run calls `find_dates` (text and file name, default settings: DMY, [en, de]) `--texts`
times on the same text in this process, after one warm-up call, and reports the mean CPU
time per call (time.process_time): once with dateparser's readings dropped before each call
(every date new to the process), once with them kept (the same dates seen before).
`first` is the first call of a fresh process: dateparser's import and its loading of the en
and de locales, paid once per process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import time

from alfrd_daemon.dates import DateOptions, find_dates
from alfrd_daemon.dates.parsing import parse_day, parse_month

TODAY = dt.date(2026, 6, 15)
LINES = [
    "Stadtwerke Musterstadt GmbH · Postfach 12 34 · 12345 Musterstadt",
    "Herrn Max Mustermann, Beispielweg 7, 54321 Beispielstadt",
    "Kundennummer 100234567   Vertragskonto 2000 1234 5678   Zählernummer 1ESY1160",
    "Musterstadt, den 5. März 2024",
    "Jahresrechnung Strom für den Abrechnungszeitraum 01.01.2023 bis 31.12.2023",
    "Sehr geehrter Herr Mustermann, wir danken Ihnen für Ihr Vertrauen. Ihr Verbrauch im",
    "Abrechnungszeitraum betrug 3.412 kWh; im Vorjahr waren es 3.655 kWh. Arbeitspreis",
    "32,41 ct/kWh, Grundpreis 11,90 EUR/Monat, Summe netto 1.248,37 EUR, MwSt 19 % 237,19 EUR,",
    "Rechnungsbetrag 1.485,56 EUR. Ihre Abschläge von 1.440,00 EUR sind verrechnet; der",
    "Nachzahlungsbetrag von 45,56 EUR wird am 20.03.2024 von Ihrem Konto abgebucht.",
    "Ihr neuer monatlicher Abschlag ab April 2024 beträgt 124,00 EUR. IBAN DE02 1203 0000",
    "0000 2020 51, BIC BYLADEM1001. Bei Fragen erreichen Sie uns montags bis freitags von",
    "8 bis 18 Uhr unter 0800 123 4567 oder per E-Mail an service@stadtwerke.example.",
]


def letter() -> str:
    text = "\n".join(LINES)
    while len(text) < 2000:
        text += "\nHinweis: Preise und Bedingungen gelten laut Preisblatt, Stand Januar 2024."
    return text[:2048]


def per_call(text: str, name: str, n: int, *, cached: bool) -> float:
    """Mean CPU per call; unless `cached`, dateparser's readings kept from the call before
    are dropped first, so every candidate is read afresh (a document unlike any before)."""
    options = DateOptions()
    find_dates(text, name, options, TODAY)
    start = time.process_time()
    for _ in range(n):
        if not cached:
            parse_day.cache_clear()
            parse_month.cache_clear()
        find_dates(text, name, options, TODAY)
    return (time.process_time() - start) / n


def first_call() -> float:
    code = ("import time; t=time.process_time(); import datetime as dt;"
            "from alfrd_daemon.dates import DateOptions, find_dates;"
            "find_dates('den 5. März 2024, March 5, 2024', 'x.pdf', DateOptions(),"
            " dt.date(2026, 6, 15)); print(time.process_time()-t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return float(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--texts", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    typical = letter()
    dateless = "".join(ch for ch in typical if not ch.isdigit())
    # Dates that are none, each different: read (and rejected) up to MAX_PARSES per source.
    impossible = " ".join(f"31. {m} {1950 + n}" for n in range(70)
                          for m in ("April", "Juni", "September", "November"))
    impossible = (impossible + " ") * (20_000 // len(impossible) + 1)
    cases = {"typical 2 KB letter": (typical, "2024-03-05_Stromrechnung.pdf"),
             "2 KB without a date": (dateless, "Stromrechnung.pdf"),
             "20 KB impossible dates": (impossible[:20_000], "table.txt")}
    found = find_dates(typical, "2024-03-05_Stromrechnung.pdf", DateOptions(), TODAY)
    print(f"typical letter: {len(typical)} chars, date {found.document_date}, "
          f"suggestions {[s.shown() for s in found.suggestions]}")
    for label, (text, name) in cases.items():
        for cached in (False, True):
            n = args.texts if len(text) < 5000 else args.texts // 10
            runs = [per_call(text, name, n, cached=cached) for _ in range(args.runs)]
            how = "dates seen before" if cached else "every date new"
            print(f"{label:>22}, {how:>17}: {statistics.median(runs) * 1e3:.3f} ms CPU per "
                  f"document (runs: {', '.join(f'{r * 1e3:.3f}' for r in runs)})")
    firsts = [first_call() for _ in range(args.runs)]
    print(f"{'first call':>22}: {statistics.median(firsts) * 1e3:.1f} ms CPU "
          f"(import and locales; runs: {', '.join(f'{f * 1e3:.1f}' for f in firsts)})")


if __name__ == "__main__":
    main()
