"""E-mail (`.eml`): the headers worth searching, attachment names, and the text body.

Malformed mail is still archived and searchable: when the message cannot be parsed, its raw
text is taken instead.
"""

from __future__ import annotations

import email
from email.message import EmailMessage, Message, MIMEPart
from email.policy import EmailPolicy
from itertools import islice
from typing import Any

from alfrd_daemon.extract.api import Parsed
from alfrd_daemon.extract.decode import decode_text
from alfrd_daemon.extract.text import html_to_text, parse_plain, squash

_MAX_ATTACHMENT_NAMES = 50


class _BoundedHeaderPolicy(EmailPolicy):
    """policy.default, but header values are cut before structured parsing.

    The header parser in Python 3.11 is quadratic on crafted values (measured: a 16 KB To: of
    repeated '"a' takes 1.4 s), and every header we touch goes through this method.
    """

    max_header_chars = 1000

    def header_fetch_parse(self, name: str, value: str) -> Any:
        if isinstance(value, str) and len(value) > self.max_header_chars:
            value = value[:self.max_header_chars]
        return super().header_fetch_parse(name, value)


_EMAIL_POLICY = _BoundedHeaderPolicy()


def parse_email(data: bytes, partial: bool) -> Parsed:
    try:
        return _parse_message(email.message_from_bytes(data, policy=_EMAIL_POLICY))
    except Exception as exc:
        fallback = parse_plain(data, partial)
        metadata = {**fallback.metadata, "email_error": type(exc).__name__}
        return Parsed(fallback.text, "email", metadata=metadata)


def _parse_message(msg: Message) -> Parsed:
    metadata: dict[str, Any] = {}
    for name in ("from", "to", "cc", "date", "subject"):
        value = _header(msg, name)
        if value:
            metadata[name] = value
    attachments = _attachment_names(msg)
    if attachments:
        metadata["attachments"] = attachments
    body = msg.get_body(preferencelist=("plain", "html")) if isinstance(msg, EmailMessage) else None
    text = _part_text(body) if body is not None else ""
    return Parsed(text, "email", metadata.get("subject"), metadata)


def _header(msg: Message, name: str) -> str | None:
    try:
        value = msg.get(name)
        return squash(str(value)) if value is not None else None
    except Exception:  # a header that cannot be parsed is just left out
        return None


def _attachment_names(msg: Message) -> list[str]:
    if not isinstance(msg, EmailMessage):
        return []
    try:
        parts = islice(msg.iter_attachments(), _MAX_ATTACHMENT_NAMES)
        return [str(name) for part in parts if (name := part.get_filename())]
    except Exception:
        return []


def _part_text(part: MIMEPart) -> str:
    try:
        content = part.get_content()
    except Exception:  # unknown charset, broken transfer encoding
        raw = part.get_payload(decode=True)
        content = decode_text(raw)[0] if isinstance(raw, bytes) else ""
    if not isinstance(content, str):
        return ""
    if part.get_content_type() == "text/html":
        return html_to_text(content)[0]
    return content
