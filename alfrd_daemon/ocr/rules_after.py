"""Rules run again once OCR has read a document, in the transaction that writes its text:
the text the rules see and the tags, type and correspondent they give are committed
together, under the row lock that completion already holds."""

from __future__ import annotations

import logging

import psycopg
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.logs import event
from alfrd_daemon.pgsafe import clean_json
from alfrd_daemon.rules.apply import Outcome, apply_rules, changed
from alfrd_daemon.rules.model import RuleSet
from alfrd_daemon.rules.stored import document_from_row, update_params

Q = load_named_queries("rules.sql")
log = logging.getLogger("alfrd.rules")


def rerun(cur: psycopg.Cursor[DictRow], document_id: str, ruleset: RuleSet) -> Outcome | None:
    """Apply `ruleset` to the stored document; None when there is nothing to do."""
    if not ruleset.rules:
        return None
    row = cur.execute(Q["rules_lock_one"], {"id": document_id}).fetchone()
    if row is None:
        return None
    doc = document_from_row(row)
    out = apply_rules(doc, ruleset)
    if changed(doc, out):
        params = update_params(row["id"], out)
        cur.execute(Q["rules_update"], {**params, "patch": Jsonb(clean_json(params["patch"]))})
    for rule, patterns in out.timed_out.items():
        event(log, "rule_timeout", f"rule {rule!r} ran out of time on {document_id}",
              level=logging.WARNING, rule=rule, patterns=patterns, document_id=document_id)
    return out
