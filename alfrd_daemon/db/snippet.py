"""A search result's snippet: ts_headline's best fragment, bounded and made safe to print.

ts_headline bounds a fragment by words, but a run of punctuation (dotted leaders in a table
of contents, a line of dashes) is no word, so one fragment could still be a page long. Runs of
a repeated symbol are shortened, whitespace collapsed, control characters (which could drive
a terminal) replaced, and the text cut to `max_chars` around the first match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

START, STOP = "\x02", "\x03"  # the StartSel / StopSel of the snippet fragment in queries.sql
MAX_CHARS = 240

_RUN = re.compile(r"([^\w\s])\1{3,}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SPACES = re.compile(r"\s+")
BOLD, RESET = "\x1b[1m", "\x1b[0m"


@dataclass(frozen=True)
class Snippet:
    text: str
    matches: tuple[tuple[int, int], ...]  # [start, end) character offsets of matched words

    def highlighted(self, start: str = BOLD, stop: str = RESET) -> str:
        out, pos = [], 0
        for a, b in self.matches:
            out += [self.text[pos:a], start, self.text[a:b], stop]
            pos = b
        out.append(self.text[pos:])
        return "".join(out)


def _clean(part: str) -> str:
    return _SPACES.sub(" ", _RUN.sub(r"\1\1\1", _CONTROL.sub(" ", part)))


def make_snippet(headline: str, max_chars: int = MAX_CHARS) -> Snippet:
    """Plain text and match offsets from ts_headline output marked with START/STOP."""
    text, matches = "", []
    inside = False
    for i, part in enumerate(re.split(f"[{START}{STOP}]", headline or "")):
        if i:
            inside = not inside  # markers alternate; an unpaired one just ends the match
        part = _clean(part)
        if inside and part.strip():
            lead = len(part) - len(part.lstrip())
            word = part.strip()
            start = len(text) + lead
            matches.append((start, start + len(word)))
        text += part
    if text.startswith(" "):
        text = text[1:]
        matches = [(a - 1, b - 1) for a, b in matches]
    text = text.rstrip()
    return _cut(text, matches, max_chars)


def _cut(text: str, matches: list[tuple[int, int]], max_chars: int) -> Snippet:
    if len(text) <= max_chars:
        return Snippet(text, tuple(matches))
    first = matches[0][0] if matches else 0
    begin = max(0, min(first - max_chars // 4, len(text) - max_chars))
    end = begin + max_chars
    head = "…" if begin else ""
    tail = "…" if end < len(text) else ""
    body = text[begin + len(head):end - len(tail)]
    kept = tuple((a - begin, b - begin) for a, b in matches
                 if a >= begin + len(head) and b <= end - len(tail))
    return Snippet(head + body + tail, kept)
