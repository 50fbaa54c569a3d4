"""From YAML to a RuleSet, every rule checked: one line per problem naming the rule, the key,
the value and what was expected. All problems are reported at once."""

from __future__ import annotations

import threading
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import regex

from alfrd_daemon.rules.model import DEFAULT_REGEX_TIMEOUT, Fuzzy, Rule, RuleSet, WordSet
from alfrd_daemon.rules.title import check_template
from alfrd_daemon.rules.words import is_plain

CONDITIONS = ("any", "all", "exact", "regex", "fuzzy", "filename", "folder")
ACTIONS = ("tags", "document_type", "correspondent", "title")
KEYS = ("name", "enabled", "case_sensitive", "none", *CONDITIONS, *ACTIONS)
DEFAULT_FUZZY_THRESHOLD = 85.0
MAX_TEXT = 500  # a word, phrase, pattern or value longer than this is a mistake


class RulesError(Exception):
    def __init__(self, problems: Sequence[str]):
        super().__init__("; ".join(problems))
        self.problems = list(problems)


class SourceLike(Protocol):
    @property
    def origin(self) -> str: ...
    @property
    def data(self) -> Any: ...


@dataclass(frozen=True)
class RuleSource:
    """One rule as read from YAML, and where it was read (config's RuleEntry has the same
    shape)."""

    origin: str
    data: Any


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


class _Checker:
    def __init__(self, name: str, origin: str, problems: list[str]):
        self.name, self.origin, self.problems = name, origin, problems

    def problem(self, key: str, value: object, expected: str) -> None:
        self.problems.append(f"{self.origin}: rule {self.name!r}, key {key!r}: got "
                             f"{_shown(value)}, expected {expected}")

    def texts(self, key: str, value: object, *, split: bool = False) -> tuple[str, ...]:
        """A string or a list of strings; `split`: a string is a space-separated word list."""
        items: Iterable[object]
        if isinstance(value, str):
            items = value.split() if split else [value]
        elif isinstance(value, list):
            items = value
        else:
            self.problem(key, value, "a string or a list of strings")
            return ()
        out, bad = [], 0
        for item in items:
            if not _usable(item):
                bad += 1
                self.problem(key, item, f"a non-empty string of at most {MAX_TEXT} printable "
                             "characters")
                continue
            assert isinstance(item, str)
            out.append(unicodedata.normalize("NFC", item.strip()))
        if not out and not bad:
            self.problem(key, value, "at least one word")
        return tuple(out)

    def value(self, key: str, value: object) -> str | None:
        if not _usable(value):
            self.problem(key, value, f"a non-empty string of at most {MAX_TEXT} printable "
                         "characters")
            return None
        assert isinstance(value, str)
        return unicodedata.normalize("NFC", value.strip())


def _usable(value: object) -> bool:
    """Text PostgreSQL stores and a line shows: no NUL, no control characters."""
    return (isinstance(value, str) and bool(value.strip()) and len(value) <= MAX_TEXT
            and value.strip().isprintable())


def _flags(case_sensitive: bool) -> int:
    return regex.V0 if case_sensitive else regex.IGNORECASE | regex.FULLCASE


def _phrase(text: str) -> str:
    # Words of a phrase may be split by any run of white space (OCR line breaks).
    return r"\s+".join(regex.escape(w) for w in text.split())


def word_set(words: tuple[str, ...], case_sensitive: bool) -> WordSet:
    plain = tuple(w if case_sensitive else w.casefold() for w in words if is_plain(w))
    rest = sorted((w for w in words if not is_plain(w)), key=len, reverse=True)
    pattern = None
    if rest:
        alternatives = "|".join(_phrase(w) for w in rest)
        pattern = regex.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", _flags(case_sensitive))
    return WordSet(words, plain, pattern)


def _fuzzy(c: _Checker, value: object) -> Fuzzy | None:
    threshold = DEFAULT_FUZZY_THRESHOLD
    if isinstance(value, Mapping):
        unknown = sorted(set(map(str, value)) - {"text", "threshold"})
        if unknown:
            c.problem(f"fuzzy.{unknown[0]}", value[unknown[0]], "only text and threshold")
        raw = value.get("threshold", threshold)
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not 50 <= raw <= 100:
            c.problem("fuzzy.threshold", raw, "a number from 50 to 100 (a similarity in %)")
        else:
            threshold = float(raw)
        if "text" not in value:
            c.problem("fuzzy.text", None, "the words or phrases to look for")
            return None
        value = value["text"]
    phrases = c.texts("fuzzy", value)
    return Fuzzy(phrases, threshold) if phrases else None


def compile_rule(source: SourceLike, index: int, problems: list[str]) -> Rule | None:
    data = source.data
    if not isinstance(data, Mapping):
        problems.append(f"{source.origin}: rule #{index + 1}: got {_shown(data)}, expected a "
                        "mapping with name and conditions")
        return None
    raw_name = data.get("name")
    name = raw_name.strip() if isinstance(raw_name, str) and raw_name.strip() else f"#{index + 1}"
    c = _Checker(name, source.origin, problems)
    before = len(problems)
    if name.startswith("#"):
        c.problem("name", raw_name, "a non-empty name for the rule")
    for key in data:
        if key not in KEYS:
            c.problem(str(key), data[key], "one of " + ", ".join(KEYS))
    enabled = data.get("enabled", True)
    case_sensitive = data.get("case_sensitive", False)
    for key, flag in (("enabled", enabled), ("case_sensitive", case_sensitive)):
        if not isinstance(flag, bool):
            c.problem(key, flag, "true or false")
    cs = case_sensitive is True
    fields: dict[str, Any] = {}
    for key in ("any", "all", "none"):
        if key in data:
            words = c.texts(key, data[key], split=True)
            if words:
                fields[key] = word_set(words, cs)
    if "exact" in data:
        phrases = c.texts("exact", data["exact"])
        fields["exact"] = tuple(regex.compile(rf"(?<!\w){_phrase(p)}(?!\w)", _flags(cs))
                                for p in phrases)
    if "regex" in data:
        compiled = []
        for pattern in c.texts("regex", data["regex"]):
            try:
                compiled.append(regex.compile(pattern, _flags(cs)))
            except regex.error as exc:
                c.problem("regex", pattern, f"a valid regular expression ({exc})")
        fields["regex"] = tuple(compiled)
    if "fuzzy" in data:
        fields["fuzzy"] = _fuzzy(c, data["fuzzy"])
    for key in ("filename", "folder"):
        if key in data:
            fields[key] = tuple(p.casefold() if not cs else p for p in c.texts(key, data[key]))
    if not any(key in data for key in CONDITIONS):
        c.problem("none" if "none" in data else "name", data.get("none", raw_name),
                  "at least one of " + ", ".join(CONDITIONS)
                  + " (a rule with only `none` would match every document)")
    if "tags" in data:
        fields["tags"] = c.texts("tags", data["tags"])
    for key in ("document_type", "correspondent"):
        if key in data:
            fields[key] = c.value(key, data[key])
    if "title" in data:
        template = c.value("title", data["title"])
        why = check_template(template) if template else None
        if why:
            c.problem("title", template, why)
        fields["title"] = template
    if not any(key in data for key in ACTIONS):
        c.problem("name", raw_name, "at least one action: " + ", ".join(ACTIONS))
    if len(problems) > before or enabled is False:
        return None
    return Rule(name=name, origin=source.origin, case_sensitive=cs, **fields)


def compile_rules(sources: Sequence[SourceLike], *,
                  regex_timeout: float = DEFAULT_REGEX_TIMEOUT) -> RuleSet:
    """The rules in order (first match sets type, correspondent and title). Raises RulesError
    naming every problem."""
    problems: list[str] = []
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for index, source in enumerate(sources):
        rule = compile_rule(source, index, problems)
        if rule is None:
            continue
        if rule.name in seen:
            problems.append(f"{source.origin}: rule {rule.name!r}, key 'name': got "
                            f"{rule.name!r}, expected a name no other rule has (also in "
                            f"{seen[rule.name]})")
            continue
        seen[rule.name] = source.origin
        rules.append(rule)
    if problems:
        raise RulesError(problems)
    return RuleSet(tuple(rules), regex_timeout)


_cache_lock = threading.Lock()
_cache: tuple[object, float, RuleSet] | None = None


def compiled(sources: Sequence[SourceLike], regex_timeout: float) -> RuleSet:
    """compile_rules, once per configuration: every document of a worker, and every worker,
    shares the RuleSet compiled from the settings' entries until a reload brings new ones."""
    global _cache
    with _cache_lock:
        if _cache is not None and _cache[0] is sources and _cache[1] == regex_timeout:
            return _cache[2]
    ruleset = compile_rules(sources, regex_timeout=regex_timeout)
    with _cache_lock:
        _cache = (sources, regex_timeout, ruleset)
    return ruleset
