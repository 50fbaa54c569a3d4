"""The compiled form of a rule: what it looks for and what it sets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import regex

# A pattern that runs longer than this counts as no match (and is reported): a catastrophic
# regex from a config file must not stall an ingest worker.
DEFAULT_REGEX_TIMEOUT = 0.25


@dataclass(frozen=True)
class WordSet:
    """`any` / `all` / `none`: words or phrases, each between word boundaries. A plain word
    (letters and digits only) is looked up among the text's words, split once per document
    for every rule; only phrases and words with other characters need a pattern."""

    words: tuple[str, ...]  # as configured
    plain: tuple[str, ...]  # the plain words, casefolded unless the rule is case-sensitive
    pattern: regex.Pattern[str] | None  # the rest, or None


@dataclass(frozen=True)
class Fuzzy:
    phrases: tuple[str, ...]
    threshold: float


@dataclass(frozen=True)
class Rule:
    name: str
    origin: str  # the config file (and rules.d file) it came from
    case_sensitive: bool = False
    any: WordSet | None = None
    all: WordSet | None = None
    none: WordSet | None = None
    exact: tuple[regex.Pattern[str], ...] = ()
    regex: tuple[regex.Pattern[str], ...] = ()
    fuzzy: Fuzzy | None = None
    filename: tuple[str, ...] = ()
    folder: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    document_type: str | None = None
    correspondent: str | None = None
    title: str | None = None  # a template checked at load (rules/title.py)


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[Rule, ...] = ()
    regex_timeout: float = DEFAULT_REGEX_TIMEOUT


@dataclass
class Document:
    """What the rules look at and what they may change, as stored or about to be."""

    text: str
    original_name: str
    source_path: str
    tags: list[str] = field(default_factory=list)
    rule_tags: list[str] = field(default_factory=list)
    user_fields: list[str] = field(default_factory=list)
    user_removed_tags: list[str] = field(default_factory=list)
    document_type: str | None = None
    correspondent: str | None = None
    title: str | None = None
    document_date: Any = None  # datetime.date or None
    ingested: Any = None  # datetime.date/datetime: the title's {date} when no document date
    metadata: dict[str, Any] = field(default_factory=dict)
