"""A document's words, split once and shared by every rule: a plain word of a rule is then
a dictionary lookup, however many rules there are and however long the text."""

from __future__ import annotations

import re

_WORD = re.compile(r"\w+")


def is_plain(word: str) -> bool:
    """Letters, digits and underscores only: exactly one word of the text."""
    return _WORD.fullmatch(word) is not None


class TextWords:
    def __init__(self, text: str):
        self.text = text
        self._exact: dict[str, str] | None = None
        self._folded: dict[str, str] | None = None

    def exact(self) -> dict[str, str]:
        """{word: word} of the text."""
        if self._exact is None:
            self._exact = {w: w for w in _WORD.findall(self.text)}
        return self._exact

    def folded(self) -> dict[str, str]:
        """{casefolded word: the word as first written}."""
        if self._folded is None:
            folded: dict[str, str] = {}
            for word in self.exact():
                folded.setdefault(word.casefold(), word)
            self._folded = folded
        return self._folded
