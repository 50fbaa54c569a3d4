"""Does one rule match one document, and on which words? Each condition a rule names must
hold; `none` must not. A regex that runs out of time counts as no match and is reported."""

from __future__ import annotations

import fnmatch
import posixpath
from dataclasses import dataclass, field

import regex
from rapidfuzz import fuzz

from alfrd_daemon.rules.model import Rule, WordSet
from alfrd_daemon.rules.words import TextWords

FUZZY_MAX_CHARS = 200_000  # fuzzy alignment over the first part of a huge text only


@dataclass
class Match:
    matched: bool
    words: list[str] = field(default_factory=list)
    timed_out: list[str] = field(default_factory=list)  # patterns that ran out of time
    blocked_by: str | None = None  # the `none` word that vetoed a match


def _found(ws: WordSet, words: TextWords, case_sensitive: bool, timeout: float
           ) -> dict[str, str]:
    """{word as configured (casefolded): the text it matched}."""
    found: dict[str, str] = {}
    if ws.plain:
        index = words.exact() if case_sensitive else words.folded()
        for word in ws.plain:
            hit = index.get(word)
            if hit is not None:
                found.setdefault(_key(word), hit)
    if ws.pattern is not None:
        for m in ws.pattern.finditer(words.text, timeout=timeout):
            found.setdefault(_key(m.group(0)), m.group(0))
    return found


def _key(word: str) -> str:
    return " ".join(word.split()).casefold()


def _folder_matches(patterns: tuple[str, ...], folder: str) -> str | None:
    for pattern in patterns:
        p = pattern.strip("/")
        if fnmatch.fnmatchcase(folder, p) or folder.startswith(p + "/"):
            return folder
    return None


def match_rule(rule: Rule, words: TextWords, name: str, source_path: str, *,
               timeout: float) -> Match:
    """`words`: the document's text, split once for all rules."""
    text = words.text
    cs = rule.case_sensitive
    result = Match(False)
    matched = result.words
    try:
        if rule.filename:
            shown = name if rule.case_sensitive else name.casefold()
            if not any(fnmatch.fnmatchcase(shown, p) for p in rule.filename):
                return result
            matched.append(name)
        if rule.folder:
            folder = posixpath.dirname(source_path.replace("\\", "/"))
            folder = folder if rule.case_sensitive else folder.casefold()
            hit = _folder_matches(rule.folder, folder)
            if hit is None:
                return result
            matched.append(hit + "/")
        if rule.any is not None:
            found = _found(rule.any, words, cs, timeout)
            if not found:
                return result
            matched += found.values()
        if rule.all is not None:
            found = _found(rule.all, words, cs, timeout)
            if not {_key(w) for w in rule.all.words} <= set(found):
                return result
            matched += found.values()
        for pattern in rule.exact:
            m = pattern.search(text, timeout=timeout)
            if m is not None:
                matched.append(m.group(0))
                break
        else:
            if rule.exact:
                return result
        if rule.regex:
            hits = []
            for pattern in rule.regex:
                try:
                    m = pattern.search(text, timeout=timeout)
                except TimeoutError:
                    result.timed_out.append(pattern.pattern)
                    continue
                if m is not None:
                    hits.append(m.group(0))
            if not hits:
                return result
            matched += hits
        if rule.fuzzy is not None:
            hit = _fuzzy(rule, text)
            if hit is None:
                return result
            matched.append(hit)
        if rule.none is not None:
            vetoed = _found(rule.none, words, cs, timeout)
            if vetoed:
                result.blocked_by = next(iter(vetoed.values()))
                return result
    except TimeoutError:  # a word list on a pathological text: no match, reported
        result.timed_out.append(rule.name)
        return result
    result.matched = True
    return result


def _fuzzy(rule: Rule, text: str) -> str | None:
    assert rule.fuzzy is not None
    haystack = text[:FUZZY_MAX_CHARS]
    if not rule.case_sensitive:
        haystack = haystack.casefold()
    # OCR breaks lines and doubles spaces: compare on single spaces.
    hay = regex.sub(r"\s+", " ", haystack)
    for phrase in rule.fuzzy.phrases:
        needle = phrase if rule.case_sensitive else phrase.casefold()
        needle = " ".join(needle.split())
        alignment = fuzz.partial_ratio_alignment(needle, hay,
                                                 score_cutoff=rule.fuzzy.threshold)
        if alignment is not None:
            return hay[alignment.dest_start:alignment.dest_end]
    return None
