"""Rules run again once OCR has read a document, in the transaction that writes its text:
the text the rules see and the tags, type and correspondent they give are committed
together, under the row lock that completion already holds."""

from __future__ import annotations

import functools
import logging

import psycopg
from psycopg.rows import DictRow

from alfrd_daemon.db.rules_rows import rerun_locked
from alfrd_daemon.logs import event
from alfrd_daemon.rules.model import RuleSet
from alfrd_daemon.rules.stored import Decision, decide

log = logging.getLogger("alfrd.rules")


def rerun(cur: psycopg.Cursor[DictRow], document_id: str, ruleset: RuleSet) -> None:
    """Apply `ruleset` to the stored document (nothing to do without rules)."""
    if not ruleset.rules:
        return
    decision = rerun_locked(cur, document_id, functools.partial(decide, ruleset))
    if isinstance(decision, Decision):
        report_timeouts(decision, str(document_id))


def report_timeouts(decision: Decision, document_id: str) -> None:
    for rule, patterns in decision.outcome.timed_out.items():
        event(log, "rule_timeout", f"rule {rule!r} ran out of time on {document_id}",
              level=logging.WARNING, rule=rule, patterns=patterns, document_id=document_id)
