"""Running a RuleSet over one document: the changes it makes and why.

Fields the user set by hand (user_fields) are never written; tags the user took off
(user_removed_tags) are never added again; a re-run takes back only tags that rules added
(rule_tags), never folder or user tags; a type or correspondent is cleared on a re-run only
when rules had set it. Every rule that matched is named with the words it matched on, and
every action left undone says why, so no tag goes missing without a reason."""

from __future__ import annotations

import datetime as dt
import posixpath
from dataclasses import dataclass, field
from typing import Any

from alfrd_daemon.rules.match import match_rule
from alfrd_daemon.rules.model import Document, RuleSet
from alfrd_daemon.rules.title import render
from alfrd_daemon.rules.words import TextWords


@dataclass
class Outcome:
    tags: list[str]
    rule_tags: list[str]
    document_type: str | None
    correspondent: str | None
    title: str | None
    matched: dict[str, list[str]] = field(default_factory=dict)  # rule → words
    set_by: dict[str, str] = field(default_factory=dict)  # field → rule that set it
    skipped: list[str] = field(default_factory=list)  # actions not taken, and why
    timed_out: dict[str, list[str]] = field(default_factory=dict)  # rule → patterns
    vetoed: dict[str, str] = field(default_factory=dict)  # rule → the `none` word found
    title_before: str | None = None  # the title a rule's template replaced (given back later)

    def metadata(self) -> dict[str, Any]:
        """What goes into documents.metadata (merged over the previous run's keys)."""
        return {"rules": self.matched, "rules_set": self.set_by,
                "rules_skipped": self.skipped, "rules_timed_out": self.timed_out,
                "rules_title_before": self.title_before}


def _tag_key(tag: str) -> str:
    return tag.casefold()


def apply_rules(doc: Document, ruleset: RuleSet) -> Outcome:
    protected = set(doc.user_fields)
    previous_set: dict[str, str] = dict(doc.metadata.get("rules_set") or {})
    removed = {_tag_key(t) for t in doc.user_removed_tags}
    earlier_rule_tags = {_tag_key(t) for t in doc.rule_tags}
    base = [t for t in doc.tags if _tag_key(t) not in earlier_rule_tags]
    base_keys = {_tag_key(t) for t in base}
    out = Outcome(tags=list(doc.tags), rule_tags=list(doc.rule_tags),
                  document_type=doc.document_type, correspondent=doc.correspondent,
                  title=doc.title)
    # A re-run starts from what rules did not set.
    for name in ("document_type", "correspondent"):
        if name in previous_set and name not in protected:
            setattr(out, name, None)
    title_before = doc.title
    if "title" in previous_set and "title" not in protected:
        title_before = out.title = doc.metadata.get("rules_title_before")
    added: list[str] = []
    titles: list[tuple[str, str]] = []
    words = TextWords(doc.text)
    for rule in ruleset.rules:
        m = match_rule(rule, words, doc.original_name, doc.source_path,
                       timeout=ruleset.regex_timeout)
        if m.timed_out:
            out.timed_out[rule.name] = m.timed_out
        if m.blocked_by is not None:
            out.vetoed[rule.name] = m.blocked_by
        if not m.matched:
            continue
        out.matched[rule.name] = list(dict.fromkeys(m.words))
        for tag in rule.tags:
            key = _tag_key(tag)
            if "tags" in protected:
                out.skipped.append(f"{rule.name}: tag {tag!r} not added: the tags were set "
                                   "by hand")
            elif key in removed:
                out.skipped.append(f"{rule.name}: tag {tag!r} not added: the user removed it")
            elif key not in base_keys and key not in {_tag_key(t) for t in added}:
                added.append(tag)
        for name in ("document_type", "correspondent"):
            value = getattr(rule, name)
            if value is None:
                continue
            if name in protected:
                out.skipped.append(f"{rule.name}: {name} {value!r} not set: set by hand")
            elif name in out.set_by:
                out.skipped.append(f"{rule.name}: {name} {value!r} not set: rule "
                                   f"{out.set_by[name]!r} came first")
            else:
                setattr(out, name, value)
                out.set_by[name] = rule.name
        if rule.title is not None:
            titles.append((rule.name, rule.title))
    if "tags" not in protected:
        out.tags = base + added
        out.rule_tags = added
    if titles:
        name, template = titles[0]
        if "title" in protected:
            out.skipped.append(f"{name}: title not set: set by hand")
        else:
            out.title = render(template, _title_values(doc, out)) or title_before
            out.set_by["title"] = name
            out.title_before = title_before
    return out


def _title_values(doc: Document, out: Outcome) -> dict[str, object]:
    date = doc.document_date if doc.document_date is not None else doc.ingested
    if isinstance(date, dt.datetime):
        date = date.date()
    if date is None:
        date = dt.date.today()
    return {"correspondent": out.correspondent, "document_type": out.document_type,
            "date": date, "filename": posixpath.splitext(doc.original_name)[0],
            "folder": posixpath.dirname(doc.source_path)}


def changed(doc: Document, out: Outcome) -> bool:
    """Whether writing `out` would change the stored row."""
    meta = doc.metadata
    return (out.tags != doc.tags or out.rule_tags != doc.rule_tags
            or out.document_type != doc.document_type
            or out.correspondent != doc.correspondent or out.title != doc.title
            or any(meta.get(k) != v for k, v in out.metadata().items()))
