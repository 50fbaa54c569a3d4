"""What a user types into `alfrd search`, turned into to_tsquery text that is always valid.

The syntax is websearch_to_tsquery's, plus prefix matching: every word matches the words it
begins (`invoic` finds invoices), "quoted words" match as a phrase, `-word` or `-"a phrase"`
excludes, `or` between two items accepts either. Each word or phrase goes to to_tsquery as one
quoted lexeme, escaped, so the only operators in the text are the ones written here: the
server's parser still splits, stems and drops stop words inside each quoted piece, and a piece
that is nothing but punctuation or stop words simply drops out.

websearch_to_tsquery itself cannot do prefixes, and rewriting its output would mean parsing
tsquery text; building the query from parsed terms keeps the whole grammar in this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Shorter words match exactly: a one- or two-letter prefix would union the index entries of
# a large part of the vocabulary, which costs time in proportion to the whole archive.
MIN_PREFIX_CHARS = 3

# Characters that cannot reach the server (NUL) or be encoded (lone surrogates from argv).
_UNSENDABLE = re.compile("[\x00\ud800-\udfff]")
_TOKEN = re.compile(r'(-?)"([^"]*)"?|(\S+)')
_ONLY_PUNCTUATION = re.compile(r"^[\W_]*$")


@dataclass(frozen=True)
class Term:
    """One word or phrase of the query."""

    text: str
    phrase: bool = False
    exclude: bool = False

    @property
    def prefix(self) -> bool:
        return not self.phrase and len(self.text.strip()) >= MIN_PREFIX_CHARS


def parse_terms(text: str) -> list[list[Term]]:
    """The query as groups joined by AND; the terms of a group are joined by OR."""
    text = _UNSENDABLE.sub(" ", text)
    groups: list[list[Term]] = []
    join_next = False
    for match in _TOKEN.finditer(text):
        negated, quoted, word = match.group(1), match.group(2), match.group(3)
        if word is not None and word.lower() == "or":
            join_next = bool(groups)
            continue
        if quoted is not None:
            term = Term(quoted, phrase=True, exclude=bool(negated))
        elif word.startswith("-") and len(word) > 1:
            term = Term(word[1:], exclude=True)
        else:
            term = Term(word)
        if _ONLY_PUNCTUATION.match(term.text):
            continue  # the server would drop it anyway; leaving it out keeps `or` pairing
        if join_next:
            groups[-1].append(term)
        else:
            groups.append([term])
        join_next = False
    return groups


def quote_lexeme(text: str) -> str:
    """A quoted tsquery lexeme: inside quotes a backslash escapes the next character, so
    escaping backslashes and quotes leaves nothing the tsquery parser reads as syntax."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def term_tsquery(term: Term) -> str:
    piece = quote_lexeme(term.text) + (":*" if term.prefix else "")
    return "!" + piece if term.exclude else piece


def to_tsquery_text(text: str) -> str:
    """to_tsquery input for what the user typed; empty when nothing searchable is left."""
    parts = []
    for group in parse_terms(text):
        pieces = [term_tsquery(t) for t in group]
        parts.append(pieces[0] if len(pieces) == 1 else "(" + " | ".join(pieces) + ")")
    return " & ".join(parts)
