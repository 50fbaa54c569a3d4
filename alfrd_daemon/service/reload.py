"""What a SIGHUP applies: settings named by their YAML keys, and the merge of a re-read file
with the running settings that keeps every restart-only key at its running value."""

from __future__ import annotations

from dataclasses import fields, is_dataclass, replace
from typing import Any

from alfrd_daemon.config.settings import LIVE_KEYS, PATH_FIELDS, Settings


def setting_keys(settings: Settings) -> list[str]:
    """Every setting as its YAML key: "state_dir", "paths.store", "watch.mode", "jobs.backup"."""
    by_field = {name: key for key, name in PATH_FIELDS.items()}
    keys = []
    for f in fields(settings):
        value = getattr(settings, f.name)
        if f.name == "source":
            continue
        if is_dataclass(value):
            keys += [f"{f.name}.{sub.name}" for sub in fields(value)]
        else:
            keys.append(by_field.get(f.name, f.name))
    return keys


def setting_value(settings: Settings, key: str) -> Any:
    """The value of a YAML key ("watch.mode", "paths.store", "state_dir") in `settings`."""
    if key in PATH_FIELDS:
        return getattr(settings, PATH_FIELDS[key])
    section, _, name = key.partition(".")
    value = getattr(settings, section)
    return getattr(value, name) if name else value


def with_setting(settings: Settings, key: str, value: Any) -> Settings:
    """`settings` with the YAML key `key` set to `value`."""
    if key in PATH_FIELDS:
        return replace(settings, **{PATH_FIELDS[key]: value})
    section, _, name = key.partition(".")
    if not name:
        return replace(settings, **{section: value})
    return replace(settings, **{section: replace(getattr(settings, section), **{name: value})})


def split_reload(running: Settings, loaded: Settings) -> tuple[Settings, list[str]]:
    """What a reload leaves running: `loaded` with every key outside LIVE_KEYS put back to
    its running value, so the daemon never half-applies one (store.fsync on for the workers
    but not for the committer); and the keys that changed but wait for a restart."""
    effective, waiting = loaded, []
    for key in setting_keys(running):
        if key in LIVE_KEYS:
            continue
        old = setting_value(running, key)
        if setting_value(loaded, key) != old:
            waiting.append(key)
            effective = with_setting(effective, key, old)
    return effective, waiting
