"""Rules are part of the configuration: a start, a reload and `alfrd config check` refuse
rules that do not compile, each problem one line naming the rule and the key."""

from __future__ import annotations

from alfrd_daemon.config.parse import ConfigError
from alfrd_daemon.config.settings import Settings
from alfrd_daemon.rules.load import RulesError, compiled
from alfrd_daemon.rules.model import RuleSet


def check_rules(settings: Settings) -> RuleSet:
    """The compiled rules of `settings`. Raises ConfigError."""
    try:
        return compiled(settings.rules.inline, settings.rules.regex_timeout)
    except RulesError as exc:
        raise ConfigError(settings.source, exc.problems) from exc
