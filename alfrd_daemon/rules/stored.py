"""Between a stored documents row and the rules: the row as a Document, and the changes as
the parameters of the rules_update statement (db/sql/rules.sql)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alfrd_daemon.rules.apply import Outcome, apply_rules, changed
from alfrd_daemon.rules.model import Document, RuleSet

# The columns rules_lock_* select.
COLUMNS = ("id", "extracted_text", "original_name", "source_path", "tags", "rule_tags",
           "user_fields", "user_removed_tags", "document_type", "correspondent", "title",
           "document_date", "created_at", "metadata")


def document_from_row(row: Mapping[str, Any]) -> Document:
    return Document(
        text=row["extracted_text"] or "", original_name=row["original_name"] or "",
        source_path=row["source_path"] or "", tags=list(row["tags"] or []),
        rule_tags=list(row["rule_tags"] or []), user_fields=list(row["user_fields"] or []),
        user_removed_tags=list(row["user_removed_tags"] or []),
        document_type=row["document_type"], correspondent=row["correspondent"],
        title=row["title"], document_date=row["document_date"], ingested=row["created_at"],
        metadata=dict(row["metadata"] or {}))


def update_params(document_id: object, out: Outcome) -> dict[str, Any]:
    """rules_update's parameters (`patch`: the metadata keys to merge, as a dict)."""
    return {"id": document_id, "tags": out.tags, "rule_tags": out.rule_tags,
            "document_type": out.document_type, "correspondent": out.correspondent,
            "title": out.title, "patch": out.metadata()}


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    params: dict[str, Any] | None  # rules_update's parameters; None: the row stays as it is


def decide(ruleset: RuleSet, row: Mapping[str, Any]) -> Decision:
    """The rules' verdict on a stored row (selected with the rules.sql columns)."""
    doc = document_from_row(row)
    out = apply_rules(doc, ruleset)
    return Decision(out, update_params(row["id"], out) if changed(doc, out) else None)
