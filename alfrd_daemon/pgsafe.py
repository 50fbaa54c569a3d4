"""What PostgreSQL accepts: every string bound for a text, text[] or JSONB column passes here.

PostgreSQL text holds no NUL and only valid UTF-8 (a lone surrogate, from a JSON escape or
from surrogateescape'd bytes, cannot be encoded at all); JSONB refuses `\\u0000` and the
non-standard NaN and Infinity that Python's json writes for floats. One bad character in a
sidecar file must not make a row permanently unwritable, so values are cleaned, not refused.
Dependency-free, so the extractor child processes can use it too.
"""

from __future__ import annotations

import math
import os
import re
from typing import Any

_SURROGATES = re.compile(r"[\ud800-\udfff]")


def clean_text(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATES.sub("\ufffd", text)
    return text


def clean_optional_text(text: str | None) -> str | None:
    """clean_text for a nullable column: None stays NULL."""
    return None if text is None else clean_text(text)


def clean_json(value: Any) -> Any:
    """A copy of `value` that JSONB takes: strings (keys too) cleaned, non-finite floats as
    null, tuples as lists, anything else JSON cannot hold as its str()."""
    if isinstance(value, str):
        return clean_text(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {clean_text(str(k)): clean_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean_json(v) for v in value]
    return clean_text(str(value))


def clean_tags(tags: list[str]) -> list[str]:
    out: list[str] = []
    for tag in tags:
        cleaned = clean_text(tag).strip()
        if cleaned and cleaned not in out:
            out.append(cleaned)
    return out


def display_text(name: str) -> str:
    """A faithful, displayable form of a file-system name: bytes that are not UTF-8 (held by
    Python as surrogate escapes) become \\xNN, which PostgreSQL text can store; NFC and NFD
    spellings are kept as they were."""
    raw = os.fsencode(name)
    return raw.decode("utf-8", errors="backslashreplace")
