"""Logging setup: journald with structured fields under systemd, key=value lines elsewhere.

Every log record passes a :class:`SecretMaskFilter` on its way out, so a DSN or password
that slips into a message, an argument, an event field or a traceback is masked in the
output (the ``password`` in ``postgresql://user:password@host`` and ``password=...``).
Still call :func:`mask_dsn` yourself wherever a DSN is logged on purpose.

Events (:func:`event`) carry a stable name so operators can filter on it::

    journalctl -u alfrd-daemon ALFRD_EVENT=failed
    journalctl -u alfrd-daemon SHA256=ab12...
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Mapping

try:
    from systemd.journal import JournalHandler
except ImportError:  # systemd-python is optional
    JournalHandler = None

__all__ = [
    "SecretMaskFilter",
    "StderrFormatter",
    "event",
    "journal_field_name",
    "journal_fields",
    "journal_wanted",
    "mask_dsn",
    "setup_logging",
]

# Attribute names on LogRecord (lower case: journald ignores such fields, and they cannot
# collide with the upper-case journal fields).
EVENT_ATTR = "alfrd_event"
FIELDS_ATTR = "alfrd_fields"
# Marks handlers installed by setup_logging so a second call replaces exactly those and
# leaves foreign handlers (e.g. pytest's caplog) alone.
_OWNED_ATTR = "_alfrd_owned"

# Matches the SyslogIdentifier journald gives the unit's stdout/stderr (the binary's name).
SYSLOG_IDENTIFIER = "alfrd"

_JOURNAL_NAMES: dict[str, str] = {
    "document_id": "DOCUMENT_ID",
    "sha256": "SHA256",
    "path": "INBOX_PATH",
}

# --------------------------------------------------------------------------- masking

_MASK = "***"
# Values: libpq quotes with '...' (backslash escapes); YAML/JSON/repr use "..." too.
_VALUE = r"""(?P<secret>'(?:\\.|[^'\\])*'?|"(?:\\.|[^"\\])*"?|(?:\\.|\S)+)"""
# scheme://user:password@host -- greedy up to the last '@' of the token: an unencoded '@'
# in the password must not leave its tail visible (over-masking the host is acceptable).
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/?#@]*:)(?P<secret>\S*)@")
# ?password=... / &sslpassword=... in a URL query string end at '&' or '#'.
_QUERY_PASSWORD = re.compile(r"(?P<head>[?&][\w-]*passw(?:or)?d=)(?P<secret>[^&#\s]*)", re.I)
# password=..., password = '...', PGPASSWORD=..., 'password': '...', password: ... (not
# preceded by ? or &: the query-string pattern owns those).
_KEY_PASSWORD = re.compile(
    r"(?P<head>(?<![?&\w-])[\w-]*passw(?:or)?d['\"]?\s*[=:]\s*)" + _VALUE, re.I
)
# Cheap pre-check: most log lines contain neither, and then no regex runs.
_MAYBE_SECRET = re.compile(r"passw|://", re.I)


def _masked_value(match: re.Match[str]) -> str:
    secret = match["secret"]
    quote = secret[0] if secret[:1] in ("'", '"') else ""
    return f"{match['head']}{quote}{_MASK}{quote}"


def mask_dsn(dsn: str) -> str:
    """Hide passwords in a libpq DSN (URL or key=value form) or any text containing one."""
    if not _MAYBE_SECRET.search(dsn):
        return dsn
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{_MASK}@", dsn)
    text = _QUERY_PASSWORD.sub(_masked_value, text)
    return _KEY_PASSWORD.sub(_masked_value, text)


def _mask_object(value: object) -> object:
    return mask_dsn(value) if isinstance(value, str) else value


class SecretMaskFilter(logging.Filter):
    """Masks passwords in every record's final message, event fields and traceback text.

    Formats the message once here (args are then dropped) so a DSN hidden inside any
    argument type is caught, and so journald's CODE_ARGS cannot leak it either.
    """

    _exc_formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            # Broken format args: let the handler's formatter report it via handleError.
            return True
        record.msg, record.args = mask_dsn(message), ()
        fields = getattr(record, FIELDS_ATTR, None)
        if fields:
            setattr(record, FIELDS_ATTR, {k: _mask_object(v) for k, v in fields.items()})
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exc_formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_dsn(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_dsn(record.stack_info)
        return True


# --------------------------------------------------------------------------- events


def event(
    logger: logging.Logger,
    name: str,
    message: str,
    *,
    level: int = logging.INFO,
    **fields: object,
) -> None:
    """Log ``message`` as event ``name`` with structured ``fields``.

    In the journal: ALFRD_EVENT=<name>, DOCUMENT_ID, SHA256, INBOX_PATH (from ``path``) and
    ALFRD_<FIELD> for everything else. On stderr: ``message event=<name> k=v ...`` (the
    event= pair is left out when it equals the message). ``message`` is not %-formatted.
    """
    if not logger.isEnabledFor(level):
        return
    # "%s" keeps a literal '%' in the message from being treated as a format directive.
    logger.log(
        level,
        "%s",
        message,
        extra={EVENT_ATTR: name, FIELDS_ATTR: fields},
        stacklevel=2,
    )


def journal_field_name(field: str) -> str:
    """The journald field name for an event field (journald allows only [A-Z0-9_])."""
    mapped = _JOURNAL_NAMES.get(field)
    if mapped is not None:
        return mapped
    return "ALFRD_" + re.sub(r"[^A-Z0-9_]", "_", field.upper())


def _journal_value(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def journal_fields(record: logging.LogRecord) -> dict[str, str]:
    """The event-specific journal fields of ``record`` (empty for a plain log call)."""
    name = getattr(record, EVENT_ATTR, None)
    if name is None:
        return {}
    fields: Mapping[str, object] = getattr(record, FIELDS_ATTR, None) or {}
    out = {journal_field_name(k): _journal_value(v) for k, v in fields.items()}
    out["ALFRD_EVENT"] = str(name)
    return out


# --------------------------------------------------------------------------- formatting


def _logfmt_value(value: object) -> str:
    text = str(value)
    if text and not re.search(r'[\s"=\\]|[\x00-\x1f\x7f]', text):
        return text
    # JSON string syntax: quotes the value and escapes quotes, backslashes and newlines.
    return json.dumps(text, ensure_ascii=False)


def _escape_newlines(text: str) -> str:
    """One record, one line: a file name with a newline must not forge a log line."""
    return text.replace("\n", "\\n").replace("\r", "\\r")


def render_fields(record: logging.LogRecord, message: str) -> str:
    """`` event=<name> k=v ...`` for an event record, '' otherwise."""
    name = getattr(record, EVENT_ATTR, None)
    if name is None:
        return ""
    pairs: list[str] = []
    if name != message:
        pairs.append(f"event={_logfmt_value(name)}")
    fields: Mapping[str, object] = getattr(record, FIELDS_ATTR, None) or {}
    pairs.extend(f"{key}={_logfmt_value(value)}" for key, value in fields.items())
    return " " + " ".join(pairs) if pairs else ""


class StderrFormatter(logging.Formatter):
    """``2026-11-24T06:30:00Z INFO  alfrd.ingest ingested path=bills/a.pdf sha256=ab12``."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        stamp = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z")
        line = (
            f"{stamp} {record.levelname:<5} {record.name} "
            f"{_escape_newlines(message)}{render_fields(record, message)}"
        )
        return line + self._traceback(record)

    def _traceback(self, record: logging.LogRecord) -> str:
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        extra = [text for text in (record.exc_text, record.stack_info) if text]
        return "".join("\n" + text for text in extra)


class JournalMessageFormatter(StderrFormatter):
    """MESSAGE= for journald: no time or level (journald has them), fields kept readable."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        return message + render_fields(record, message) + self._traceback(record)


# --------------------------------------------------------------------------- handlers


def journal_wanted(environ: Mapping[str, str], stderr_stat: os.stat_result | None) -> bool:
    """True when stderr is the journal stream systemd set up (sd_journal_stream_fd(3)).

    systemd exports JOURNAL_STREAM=<st_dev>:<st_ino> of the stream it connected; checking
    it against stderr's fstat avoids logging to journald when stderr was redirected (e.g.
    a shell run by a unit, or `alfrd run 2>file`) and the environment variable leaked.
    """
    raw = environ.get("JOURNAL_STREAM", "")
    if not raw or stderr_stat is None:
        return False
    dev, sep, ino = raw.partition(":")
    if not sep:
        return False
    try:
        return (int(dev), int(ino)) == (stderr_stat.st_dev, stderr_stat.st_ino)
    except ValueError:
        return False


def _stderr_stat() -> os.stat_result | None:
    try:
        return os.fstat(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):
        # stderr closed or replaced by an object without a file descriptor.
        return None


if JournalHandler is not None:

    class AlfrdJournalHandler(JournalHandler):  # type: ignore[misc,valid-type]
        """JournalHandler that sends only well-formed, masked fields.

        The stock emit() forwards every LogRecord attribute (lower-case names that journald
        drops) plus CODE_ARGS/EXCEPTION_INFO, which would bypass secret masking.
        """

        def emit(self, record: logging.LogRecord) -> None:
            try:
                self.send(self.format(record), **self.fields_for(record))
            except Exception:
                self.handleError(record)

        def fields_for(self, record: logging.LogRecord) -> dict[str, str]:
            fields = {
                "PRIORITY": str(self.map_priority(record.levelno)),
                "LOGGER": record.name,
                "THREAD_NAME": str(record.threadName),
                "PROCESS_NAME": str(record.processName),
                "CODE_FILE": record.pathname,
                "CODE_LINE": str(record.lineno),
                "CODE_FUNC": record.funcName,
                "SYSLOG_IDENTIFIER": SYSLOG_IDENTIFIER,
            }
            if record.exc_text:
                fields["EXCEPTION_TEXT"] = record.exc_text
            fields.update(journal_fields(record))
            return fields


def _journal_handler() -> logging.Handler | None:
    if JournalHandler is None:
        return None
    handler = AlfrdJournalHandler(SYSLOG_IDENTIFIER=SYSLOG_IDENTIFIER)
    handler.setFormatter(JournalMessageFormatter())
    return handler


def _stderr_handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(StderrFormatter())
    return handler


def _parse_level(level: str) -> int:
    levels = logging.getLevelNamesMapping()
    try:
        return levels[level.strip().upper()]
    except KeyError:
        raise ValueError(f"unknown log level {level!r}") from None


def setup_logging(level: str = "INFO", *, journal: bool | None = None) -> None:
    """Install the alfrd handler on the root logger, replacing one installed earlier.

    ``journal=None`` picks journald when stderr is systemd's journal stream and
    systemd-python is importable; ``journal=True`` forces it (falling back to stderr with a
    warning if systemd-python is missing); ``journal=False`` forces stderr.
    """
    numeric_level = _parse_level(level)
    if journal is None:
        journal = journal_wanted(os.environ, _stderr_stat())
    handler = _journal_handler() if journal else None
    fell_back = journal and handler is None
    if handler is None:
        handler = _stderr_handler()
    handler.addFilter(SecretMaskFilter())
    setattr(handler, _OWNED_ATTR, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _OWNED_ATTR, False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(numeric_level)
    # watchdog logs every raw inotify event at DEBUG: noise that would drown our own events.
    logging.getLogger("watchdog").setLevel(max(numeric_level, logging.INFO))
    if fell_back:
        logging.getLogger("alfrd.logs").warning(
            "journal logging requested but systemd-python is not installed; using stderr"
        )
