"""Reading one section of the YAML: the walker that collects problems, and the converters that
check one value each.

Every problem comes out as one line, "At 'a.b': got <value>, expected <what>", and all of them
are collected before anything is raised (the borgmatic habit), so a user fixes a file in one
pass. A key that is absent or null takes its default from the settings dataclass the section
fills, so each default is written once, on its field.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from alfrd_daemon.logs import mask_dsn

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    None: 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "pb": 10**15,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "pib": 2**50,
}
SIZE_EXPECTED = "a size such as 1048576, '500MB' or '2GiB'"
# Room for a path in the kernel (PATH_MAX, with its NUL) and for one name (NAME_MAX).
PATH_MAX_BYTES = 4095
NAME_MAX_BYTES = 255
PATH_LENGTH_EXPECTED = (f"expected a path of at most {PATH_MAX_BYTES} bytes, each name at most "
                        f"{NAME_MAX_BYTES}")
_SHOWN_MAX = 120


def shown(value: object) -> str:
    """A value as one short line: repr shows NUL and newlines as escapes; passwords masked."""
    text = mask_dsn(repr(value))
    return text if len(text) <= _SHOWN_MAX else text[:_SHOWN_MAX - 1] + "…"


def _key_text(key: object) -> str:
    """A YAML key as it can sit in one line (keys may hold newlines or control characters)."""
    text = str(key)
    return text if text.isprintable() else repr(text)[1:-1]


class Reader:
    """Walks one mapping section, collecting problems instead of stopping at the first.

    `defaults` is the settings object the section fills, built with its own defaults: a key
    that is absent or null reads the attribute of the same name (or `attr`) from it.
    """

    def __init__(self, data: Mapping[str, Any], prefix: str, problems: list[str],
                 defaults: object):
        self.data = data
        self.prefix = prefix
        self.problems = problems
        self.defaults = defaults
        self.seen: set[str] = set()

    def path(self, key: str) -> str:
        key = _key_text(key)
        return f"{self.prefix}.{key}" if self.prefix else key

    def problem(self, key: str, value: object, expected: str) -> None:
        self.problems.append(f"At '{self.path(key)}': got {shown(value)}, expected {expected}")

    def default(self, key: str, attr: str | None = None) -> Any:
        return getattr(self.defaults, attr or key)

    def get(self, key: str, convert: Callable[[object], Any], expected: str = "", *,
            attr: str | None = None) -> Any:
        """The converted value of `key`, or its default when it is absent, null or invalid
        (an invalid one is recorded as a problem). `expected` describes a value when the
        converter raises without saying."""
        self.seen.add(key)
        if key not in self.data or self.data[key] is None:
            return self.default(key, attr)
        value = self.data[key]
        try:
            return convert(value)
        except (TypeError, ValueError, OverflowError) as exc:
            detail = str(exc) if isinstance(exc, ValueError) and str(exc) else expected
            self.problem(key, value, detail.removeprefix("expected "))
            return self.default(key, attr)

    def section(self, key: str, defaults: object) -> Reader:
        self.seen.add(key)
        value = self.data.get(key) or {}
        if not isinstance(value, Mapping):
            self.problem(key, value, "a mapping of settings")
            value = {}
        return Reader(value, self.path(key), self.problems, defaults)

    def finish(self) -> None:
        for key in self.data:
            if key not in self.seen:
                self.problems.append(
                    f"At '{self.path(key)}': unknown setting (check the spelling against "
                    "config/alfrd.yaml)"
                )


def bound_text(bound: float) -> str:
    """3.0 → '3', 0.5 → '0.5': a bound as a user would write it."""
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _range_text(what: str, minimum: float, maximum: float, above: bool) -> str:
    low = "above" if above else "at least"
    return f"expected {what} {low} {bound_text(minimum)} and at most {bound_text(maximum)}"


def _within(value: float, minimum: float, maximum: float, above: bool) -> bool:
    """NaN fails every comparison, so it is never within a range; infinities are outside."""
    return (value > minimum if above else value >= minimum) and value <= maximum


def number(minimum: float, maximum: float, *, above: bool = False) -> Callable[[object], float]:
    """A finite int or float in [minimum, maximum] (or (minimum, maximum] when `above`)."""
    expected = _range_text("a number", minimum, maximum, above)

    def convert(value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(expected)
        if not _within(value, minimum, maximum, above):
            raise ValueError(expected)
        return float(value)

    return convert


def integer(minimum: int, maximum: int) -> Callable[[object], int]:
    expected = _range_text("a whole number", minimum, maximum, above=False)

    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(expected)
        if not _within(value, minimum, maximum, above=False):
            raise ValueError(expected)
        return value

    return convert


def parse_size(value: object) -> int:
    """'512MiB', '2GB', 1048576 → bytes (0 or more). Raises ValueError with what was expected."""
    if isinstance(value, bool):
        raise ValueError(f"expected {SIZE_EXPECTED}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected {SIZE_EXPECTED}")
        return value
    m = _SIZE_RE.match(str(value))
    if not m:
        raise ValueError(f"expected {SIZE_EXPECTED}")
    unit = m.group(2).lower() if m.group(2) else None
    amount = float(m.group(1)) * _SIZE_UNITS[unit]
    if not math.isfinite(amount):  # hundreds of digits overflow a float
        raise ValueError(f"expected {SIZE_EXPECTED}")
    return int(amount)


def _size_text(size_bytes: int) -> str:
    for unit in ("PiB", "TiB", "GiB", "MiB", "KiB"):
        factor = _SIZE_UNITS[unit.lower()]
        if size_bytes >= factor and size_bytes % factor == 0:
            return f"{size_bytes // factor}{unit}"
    return f"{size_bytes} bytes" if size_bytes != 1 else "1 byte"


def size(minimum: int, maximum: int) -> Callable[[object], int]:
    """A size in bytes (a number, or text such as '500MB') from minimum to maximum."""
    expected = (f"expected a size from {_size_text(minimum)} to {_size_text(maximum)}, such as "
                "1048576, '500MB' or '2GiB'")

    def convert(value: object) -> int:
        try:
            amount = parse_size(value)
        except ValueError:
            raise ValueError(expected) from None
        if not minimum <= amount <= maximum:
            raise ValueError(expected)
        return amount

    return convert


def boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise TypeError
    return value


def string(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError
    if "\0" in value:
        raise ValueError("expected text without NUL bytes")
    return value


def path_text(value: object) -> str:
    """A file-system path the kernel can take: text, not blank, no NUL, within PATH_MAX and
    NAME_MAX (otherwise it passes here and fails later with a traceback at start)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected a path")
    if "\0" in value:
        raise ValueError("expected a path without NUL bytes")
    try:
        raw = os.fsencode(value)
    except UnicodeError:
        raise ValueError("expected a path in valid text") from None
    if len(raw) > PATH_MAX_BYTES or any(len(name) > NAME_MAX_BYTES for name in raw.split(b"/")):
        raise ValueError(PATH_LENGTH_EXPECTED)
    return value


def conninfo(value: object) -> str:
    """A libpq URL or key=value string that libpq can parse (what is in it is checked when it
    connects)."""
    from psycopg import ProgrammingError
    from psycopg.conninfo import conninfo_to_dict

    text = string(value)
    try:
        conninfo_to_dict(text)
    except ProgrammingError as exc:
        detail = mask_dsn(str(exc).strip().splitlines()[0]) if str(exc).strip() else "unparsable"
        raise ValueError("expected a PostgreSQL URL such as postgresql://user@host/db "
                         f"({detail})") from None
    return text


def choice(*options: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if value not in options:
            raise ValueError("expected one of " + ", ".join(options))
        return str(value)

    return convert


def patterns(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(
            isinstance(v, str) and v and "\0" not in v for v in value):
        raise ValueError("expected a list of glob patterns such as ['*.tmp', '.*']")
    return tuple(value)


LISTEN_EXPECTED = "expected host:port such as 127.0.0.1:9464 or [::1]:9464 (port 1-65535)"


def split_listen(text: str) -> tuple[str, int]:
    """(host, port) of "host:port" or "[v6]:port"; ValueError naming the expected form."""
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(LISTEN_EXPECTED)  # a bare IPv6 address: its port is ambiguous
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(LISTEN_EXPECTED)
    return host, int(port)


def listen_address(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(LISTEN_EXPECTED)
    split_listen(value)
    return value
