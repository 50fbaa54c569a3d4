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
    """None when the template is usable, else what is wrong with it."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        return f"not a valid template ({exc}); write fields as {{correspondent}}"
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in FIELDS:
            return (f"unknown field {{{name}}}; expected one of "
                    + ", ".join(f"{{{f}}}" for f in FIELDS))
        if conversion:
            return f"field {{{name}}} takes no !{conversion} conversion"
        if spec and name != "date":
            return f"field {{{name}}} takes no format; only {{date:%Y-%m}} does"
        if spec and ("{" in spec or "%" not in spec):
            return f"the date format {spec!r} is not a strftime format such as %Y-%m-%d"
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
