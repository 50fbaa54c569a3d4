"""The `rules:` section: rules written inline and a folder of rule files (rules.d), gathered
in order as YAML for the rules package to compile. Reading the files happens here, with the
rest of the configuration, so a SIGHUP re-reads them too."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from alfrd_daemon.config.reader import Reader, number, path_text, shown
from alfrd_daemon.pgsafe import display_text

RULE_FILE_SUFFIXES = (".yaml", ".yml")
MAX_RULE_FILE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class RuleEntry:
    """One rule as written, and the file (and position) it came from."""

    origin: str
    data: Any


@dataclass(frozen=True)
class RulesSettings:
    dir: Path | None = None  # None: rules.d next to the config file, if there is one
    regex_timeout: float = 0.25  # seconds one pattern may run on one document
    # The rules written under rules.inline, then those of the folder's files (by file name):
    # every rule this configuration has, in the order they run.
    inline: tuple[RuleEntry, ...] = ()


def parse_rules(top: Reader, *, source: str, base_dir: Path, config_dir: Path | None,
                problems: list[str]) -> RulesSettings:
    """`config_dir`: the config file's folder, whose rules.d is read by default (None: no
    file, no default folder)."""
    defaults = RulesSettings()
    raw = top.data.get("rules")
    top.seen.add("rules")
    inline: object = []
    explicit_dir: Path | None = None
    timeout = defaults.regex_timeout
    if isinstance(raw, list):
        inline = raw
    elif isinstance(raw, Mapping):
        r = Reader(raw, "rules", problems, defaults)
        text = r.get("dir", path_text)
        if text is not None:
            path = Path(text)
            explicit_dir = path if path.is_absolute() else (config_dir or base_dir) / path
        timeout = r.get("regex_timeout", number(0.001, 60), "seconds")
        r.seen.add("inline")
        inline = raw.get("inline") or []
        r.finish()
    elif raw is not None:
        problems.append(f"At 'rules': got {shown(raw)}, expected a list of rules or a mapping "
                        "with dir, regex_timeout and inline")
    entries: list[RuleEntry] = []
    if not isinstance(inline, list):
        problems.append(f"At 'rules.inline': got {shown(inline)}, expected a list of rules")
    else:
        entries += [RuleEntry(source, item) for item in inline]
    folder = explicit_dir or (config_dir / "rules.d" if config_dir else None)
    if folder is None:
        pass
    elif explicit_dir is not None and not folder.is_dir():
        problems.append(f"At 'rules.dir': got {shown(str(folder))}, expected a folder of "
                        "rule files (*.yaml)")
    elif folder.is_dir():
        entries += _folder_entries(folder, problems)
    return RulesSettings(dir=explicit_dir, regex_timeout=timeout, inline=tuple(entries))


def _folder_entries(folder: Path, problems: list[str]) -> list[RuleEntry]:
    entries: list[RuleEntry] = []
    for path in sorted(p for p in folder.iterdir() if p.suffix in RULE_FILE_SUFFIXES):
        origin = display_text(str(path))
        try:
            if not path.is_file() or path.stat().st_size > MAX_RULE_FILE_BYTES:
                problems.append(f"{origin}: not a regular file of at most 4 MiB")
                continue
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            problems.append(f"{origin}: cannot read the file: {exc.strerror}")
            continue
        except UnicodeDecodeError as exc:
            problems.append(f"{origin}: not UTF-8 text: {exc.reason}")
            continue
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problems.append(f"{origin}: invalid YAML{where}: "
                            f"{getattr(exc, 'problem', None) or exc}")
            continue
        if isinstance(data, Mapping) and set(data) == {"rules"}:
            data = data["rules"]
        if data is None:
            continue
        if not isinstance(data, list):
            problems.append(f"{origin}: got {shown(data)}, expected a list of rules (or a "
                            "mapping with one key, rules)")
            continue
        entries += [RuleEntry(origin, item) for item in data]
    return entries
