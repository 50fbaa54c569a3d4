"""Title templates: "{correspondent} {document_type} {date:%Y-%m}". Only the named fields,
no attribute or index access, checked when the rule is loaded; a field without a value
renders empty and the spaces around it collapse."""

from __future__ import annotations

import datetime as dt
import re
import string
from collections.abc import Mapping

FIELDS = ("correspondent", "document_type", "date", "filename", "folder")
_SPACES = re.compile(r"\s+")


def check_template(template: str) -> str | None:
    """None when the template is usable, else what was expected (the validator's line reads
    "got …, expected <this>")."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"a valid template, fields written as {{correspondent}} ({exc})"
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in FIELDS:
            return ("fields among " + ", ".join(f"{{{f}}}" for f in FIELDS)
                    + f" ({{{name}}} is not one)")
        if conversion:
            return f"no !{conversion} conversion in {{{name}}}"
        if spec and name != "date":
            return f"a format only on {{date}}, as in {{date:%Y-%m}} (not on {{{name}}})"
        if spec and ("{" in spec or "%" not in spec):
            return f"a strftime date format such as {{date:%Y-%m-%d}} (not {spec!r})"
    return None


def render(template: str, values: Mapping[str, object]) -> str:
    out: list[str] = []
    for literal, name, spec, _ in string.Formatter().parse(template):
        out.append(literal)
        if name is None:
            continue
        value = values.get(name)
        if value is None or value == "":
            continue
        if name == "date" and isinstance(value, dt.date):
            out.append(value.strftime(spec or "%Y-%m-%d"))
        else:
            out.append(str(value))
    return _SPACES.sub(" ", "".join(out)).strip(" -_")
