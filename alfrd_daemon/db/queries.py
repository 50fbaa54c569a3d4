"""Named queries: the SQL files under db/sql, read once, asked for by name.

A block starting `-- name: x` is the statement x. A block starting `-- fragment: y` is a piece
of SQL that statements (and other fragments) of the same file include as `{y}`: it is pasted
in when the file is read, so the text sent to the server is exactly as if it were written out,
and values still travel only as parameters.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

_BLOCK = re.compile(r"^-- (name|fragment): ", flags=re.MULTILINE)
_REFERENCE = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@functools.cache
def load_named_queries(filename: str) -> dict[str, str]:
    """The statements of sql/<filename> by name. Every module's SQL lives in such a file;
    Python asks for a query by name and passes parameters."""
    text = resources.files("alfrd_daemon.db").joinpath("sql", filename).read_text("utf-8")
    return parse_named_queries(text, filename)


def parse_named_queries(text: str, source: str = "<text>") -> dict[str, str]:
    """{name: statement} of a named-query file, fragments pasted in."""
    parts = _BLOCK.split(text)[1:]
    blocks: dict[str, dict[str, str]] = {"name": {}, "fragment": {}}
    for kind, block in zip(parts[::2], parts[1::2], strict=True):
        name, _, body = block.partition("\n")
        if kind == "fragment":  # its comments describe it; they would not read well pasted
            body = "\n".join(line for line in body.splitlines()
                              if not line.lstrip().startswith("--"))
        blocks[kind][name.strip()] = body.strip().rstrip(";")
    fragments = blocks["fragment"]

    def expand(body: str, within: tuple[str, ...]) -> str:
        def paste(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in fragments:
                raise ValueError(f"{source}: no fragment named {name!r}")
            if name in within:
                raise ValueError(f"{source}: fragment {name!r} includes itself")
            return expand(fragments[name], (*within, name))
        return _REFERENCE.sub(paste, body)

    return {name: expand(body, ()) for name, body in blocks["name"].items()}


QUERIES = load_named_queries("queries.sql")
