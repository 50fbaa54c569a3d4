"""The package's shape, checked from its own imports: no cycles, each subpackage imports only
the layers below it, the DuckDB extra is reached only from the CLI, and no module reaches into
another's private names. Function-level imports count: a cycle hidden in a function is one."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "alfrd_daemon"
ROOT = Path(__file__).resolve().parents[2] / PACKAGE

# What each part may import (besides itself). Root modules are the foundation.
FOUNDATION = {"logs", "pgsafe", "progress", "sdnotify", "__init__"}
ALLOWED: dict[str, set[str]] = {
    "foundation": set(),
    "config": {"foundation"},
    "db": {"config", "foundation"},
    "extract": {"foundation"},
    "rules": {"foundation"},
    "dates": {"foundation"},
    "ingest": {"config", "dates", "db", "extract", "rules", "foundation"},
    "ocr": {"config", "dates", "db", "extract", "rules", "foundation"},
    "hooks": {"config", "db", "foundation"},
    "jobs": {"config", "dates", "db", "ingest", "rules", "foundation"},
    "legacy": {"config", "db", "ingest", "foundation"},
    "service": {"config", "db", "extract", "hooks", "ingest", "jobs", "ocr", "rules",
                "foundation"},
    "cli": {"config", "dates", "db", "extract", "hooks", "ingest", "jobs", "legacy", "ocr",
            "rules", "service", "foundation"},
}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (resolved to a module of the package)
    names: tuple[str, ...]  # names taken with `from target import …`
    line: int


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(rel.parts)
        found[name.removesuffix(".__init__")] = path
    return found


def part_of(module: str) -> str:
    parts = module.split(".")
    if module == f"{PACKAGE}.__main__":
        return "cli"  # `python -m alfrd_daemon` is the CLI
    if len(parts) == 1 or (len(parts) == 2 and parts[1] in FOUNDATION):
        return "foundation"
    return parts[1]


def imports(mods: dict[str, Path]) -> Iterator[Import]:
    for name, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _resolve(alias.name, mods)
                    if target:
                        yield Import(name, target, (), node.lineno)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = name.split(".")[: None if is_pkg else -1]
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for alias in node.names:
                    sub = _resolve(f"{module}.{alias.name}", mods)
                    if sub == f"{module}.{alias.name}":  # `from pkg import module`
                        yield Import(name, sub, (), node.lineno)
                        continue
                    target = _resolve(module, mods)
                    if target:
                        yield Import(name, target, (alias.name,), node.lineno)


def _resolve(dotted: str, mods: dict[str, Path]) -> str | None:
    while dotted and dotted not in mods:
        dotted = dotted.rpartition(".")[0]
    return dotted if dotted.startswith(PACKAGE) else None


def test_no_import_cycles() -> None:
    mods = modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for imp in imports(mods):
        if imp.target != imp.source and mods[imp.target].name != "__init__.py":
            graph[imp.source].add(imp.target)
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_each_part_imports_only_the_layers_below_it() -> None:
    mods = modules()
    wrong = []
    for imp in imports(mods):
        src, dst = part_of(imp.source), part_of(imp.target)
        if src != dst and dst not in ALLOWED[src]:
            wrong.append(f"{imp.source}:{imp.line} imports {imp.target} ({src} -> {dst})")
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_no_private_name_is_used_outside_its_module() -> None:
    mods = modules()
    wrong = [f"{imp.source}:{imp.line} takes {name} from {imp.target}"
             for imp in imports(mods) for name in imp.names
             if name.startswith("_") and not name.startswith("__")]
    for name, path in mods.items():
        aliases = _module_aliases(path, mods)
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in aliases and node.attr.startswith("_")
                    and not node.attr.startswith("__")):
                wrong.append(f"{name}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not wrong, "private names used across modules:\n" + "\n".join(sorted(wrong))


def _module_aliases(path: Path, mods: dict[str, Path]) -> dict[str, str]:
    """Local names bound to modules of the package (`from alfrd_daemon.db import pool as db`)."""
    aliases = {}
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                if full in mods:
                    aliases[alias.asname or alias.name] = full
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in mods and alias.asname:
                    aliases[alias.asname] = alias.name
    return aliases


def test_the_duckdb_extra_is_reached_only_from_the_cli() -> None:
    mods = modules()
    wrong = [f"{imp.source}:{imp.line} imports {imp.target}" for imp in imports(mods)
             if part_of(imp.target) == "legacy" and part_of(imp.source) not in ("legacy", "cli")]
    assert not wrong, "\n".join(wrong)


def test_the_checker_sees_a_cycle_and_a_layer_break() -> None:
    """The checks above must be able to fail."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert "cli" not in ALLOWED["ingest"] and part_of("alfrd_daemon.cli.main") == "cli"
    assert part_of("alfrd_daemon.logs") == "foundation"
