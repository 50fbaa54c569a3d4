"""The rows an arrival leaves in PostgreSQL: one builder for the document row (extracted or
failed) and one for the arrival, the transaction that writes one file's pair, and the event
that reports its outcome."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from alfrd_daemon.config.settings import Settings
from alfrd_daemon.dates import date_document
from alfrd_daemon.db.pool import Database
from alfrd_daemon.extract.api import Extraction
from alfrd_daemon.ingest import committer
from alfrd_daemon.ingest.errors import Permanent
from alfrd_daemon.ingest.paths import tags_for
from alfrd_daemon.ingest.store import Store
from alfrd_daemon.ingest.work import Outcome
from alfrd_daemon.logs import event
from alfrd_daemon.pgsafe import clean_json, clean_tags, clean_text, display_text
from alfrd_daemon.rules.apply import Outcome as RulesOutcome
from alfrd_daemon.rules.apply import apply_rules
from alfrd_daemon.rules.load import RulesError, compiled
from alfrd_daemon.rules.model import Document, RuleSet

log = logging.getLogger("alfrd.ingest")


@dataclass
class Prepared:
    """Everything the database transaction needs, gathered before it starts."""

    row: dict[str, Any]
    arrival: dict[str, Any]


def arrival_key(prefix: str, relpath: str) -> str:
    """An arrival's key: what identifies the arrival (device, inode, mtime, size, and the
    content when it was read), then the relative path, which a claim keeps across crashes and
    adoption. Two hard links to one inode dropped under two names share device, inode, mtime
    and content, yet are two arrivals; only a replay of the same claim has the same path."""
    return f"{prefix}:{hashlib.sha256(os.fsencode(relpath)).hexdigest()[:16]}"


class RowBuilder:
    def __init__(self, settings: Settings, store: Store, instance: str):
        self.settings = settings
        self.store = store
        self.instance = instance

    def ruleset(self) -> RuleSet:
        """The rules of the current settings, compiled once per configuration. The daemon
        refuses to start (or to reload) with rules that do not compile, so the fallback to
        no rules only covers a caller that skipped that check."""
        try:
            return compiled(self.settings.rules.inline, self.settings.rules.regex_timeout)
        except RulesError as exc:
            log.error("rules not applied: %s", exc)
            return RuleSet()

    def classify(self, relpath: str, text: str, tags: list[str],
                 title: str | None) -> RulesOutcome | None:
        """The rules' verdict on a new document; None when no rule is configured."""
        ruleset = self.ruleset()
        if not ruleset.rules:
            return None
        # The names as the row stores them, so that `alfrd rules apply` sees the same.
        doc = Document(text=text, original_name=display_text(Path(relpath).name),
                       source_path=display_text(relpath), tags=tags, title=title,
                       ingested=dt.date.today())
        outcome = apply_rules(doc, ruleset)
        report_rules(outcome, relpath)
        return outcome

    def tags(self, relpath: str) -> list[str]:
        return tags_for(relpath, subdirs_as_tags=self.settings.inbox.subdirs_as_tags)

    def document(
        self, relpath: str, *, sha256: str | None, size: int | None, stored_path: str | None,
        extraction: Extraction | None = None, error: str | None = None,
        doc_id: str | None = None, tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A documents row. With an extraction, its text, type and status; without one, a
        failed row whose `error` says why."""
        x = extraction
        meta: dict[str, Any] = {}
        if x is not None:
            meta.update(x.metadata)
            if x.truncated:
                meta["text_truncated"] = True
        if metadata:
            meta.update(metadata)
        tags = clean_tags(tags if tags is not None else self.tags(relpath))
        title = clean_text(x.title) if x is not None and x.title else None
        ruled = (self.classify(relpath, x.text, tags, title)
                 if x is not None and x.status != "failed" else None)
        if ruled is not None:
            tags = clean_tags(ruled.tags)
            title = clean_text(ruled.title) if ruled.title else None
            meta.update(ruled.metadata())
        document_date = self.document_date(relpath, x, meta)
        return {
            "id": doc_id,
            "sha256": sha256,
            "original_name": display_text(Path(relpath).name),
            "source_path": display_text(relpath),
            "tags": tags,
            "document_type": clean_text(ruled.document_type) if ruled and ruled.document_type
            else None,
            "correspondent": clean_text(ruled.correspondent) if ruled and ruled.correspondent
            else None,
            "rule_tags": clean_tags(ruled.rule_tags) if ruled else [],
            "mime_type": x.mime_type if x is not None else None,
            "size_bytes": size,
            "stored_path": stored_path,
            "status": x.status if x is not None else "failed",
            "title": title,
            "extracted_text": clean_text(x.text) if x is not None else None,
            "extractor": x.extractor if x is not None else None,
            "search_config": self.settings.search.language,
            "metadata": Jsonb(clean_json(meta)),
            "error": clean_text(error) if error is not None else None,
            "store_id": self.store.id,
            "document_date": document_date,
        }

    def document_date(self, relpath: str, x: Extraction | None,
                      meta: dict[str, Any]) -> dt.date | None:
        """The date printed on the document (or in its name), its candidates into `meta`.
        A pending document (waiting for OCR) is dated again when its text is known."""
        if x is None:
            return None
        dated = date_document(self.settings.dates, x.text, Path(relpath).name, dt.date.today())
        if dated is None:
            return None
        meta.update(dated.metadata())
        return dated.document_date

    def arrival(self, relpath: str, key: str, size: int | None) -> dict[str, Any]:
        return {
            "claim_key": key,
            "source_path": display_text(relpath),
            "original_name": display_text(Path(relpath).name),
            "size_bytes": size,
            "instance": self.instance,
        }

    def prepare(
        self, relpath: str, *, sha256: str, size: int, claim_key: str, extraction: Extraction,
        stored_path: str, doc_id: str | None = None, tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Prepared:
        """The row and arrival of content that was read and extracted."""
        row = self.document(relpath, sha256=sha256, size=size, stored_path=stored_path,
                            extraction=extraction, doc_id=doc_id, tags=tags, metadata=metadata)
        return Prepared(row, self.arrival(relpath, arrival_key(claim_key, relpath), size))


def write_one(db: Database, p: Prepared) -> tuple[Outcome, str]:
    """One file's transaction, written by the same code as a committer batch."""
    try:
        [(outcome, document_id, replayed)] = committer.write_rows(db, [(p.row, p.arrival)])
    except (psycopg.errors.DataError, psycopg.errors.IntegrityError) as exc:
        raise Permanent(f"the database refused the row: {exc}") from exc
    if replayed:
        log.info("claim replayed after a restart; already recorded: %s",
                 p.arrival["source_path"])
    return Outcome(outcome), document_id


def log_outcome(outcome: Outcome, relpath: str, sha: str, doc_id: str) -> None:
    shown = display_text(relpath)
    if outcome is Outcome.INGESTED:
        event(log, "ingested", f"ingested {shown}", path=shown, sha256=sha, document_id=doc_id)
    else:
        event(log, "duplicate", f"duplicate of {doc_id}: {shown}", path=shown, sha256=sha,
              document_id=doc_id)


def report_rules(outcome: RulesOutcome, relpath: str) -> None:
    """A pattern that ran out of time is worth a warning: it matched nothing, maybe wrongly."""
    for rule, patterns in outcome.timed_out.items():
        event(log, "rule_timeout", f"rule {rule!r} ran out of time on {display_text(relpath)}",
              level=logging.WARNING, rule=rule, patterns=patterns, path=display_text(relpath))
