"""Logging setup, event fields, journald selection and password masking."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alfrd_daemon import logs
from alfrd_daemon.logs import event, journal_fields, journal_wanted, mask_dsn, setup_logging

try:
    from systemd.journal import JournalHandler  # type: ignore[import-untyped]
except ImportError:  # the systemd extra is optional: only the journald tests need it
    JournalHandler = None

needs_systemd_python = pytest.mark.skipif(
    JournalHandler is None,
    reason="systemd-python is not installed (the systemd extra: pip install -e '.[systemd]', "
    "which needs libsystemd-dev and pkg-config)")

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


def _owned_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if getattr(h, "_alfrd_owned", False)]


def _stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


# --------------------------------------------------------------------------- mask_dsn


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://user:secret@host/db", "postgresql://user:***@host/db"),
        (
            "postgres://alfrd:s3cr3t@db.example:5432/alfrd",
            "postgres://alfrd:***@db.example:5432/alfrd",
        ),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("postgresql://host:5432/db", "postgresql://host:5432/db"),
        ("postgresql:///alfrd?host=/run/postgresql", "postgresql:///alfrd?host=/run/postgresql"),
        ("postgresql://u:p%40ss%2Fw%3Ard@h/db", "postgresql://u:***@h/db"),
        # An unencoded '@' in the password: nothing of it may stay visible.
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),
        ("postgresql://u:!$&'()*+,;=@h/db", "postgresql://u:***@h/db"),
        ("postgresql://:onlypw@h/db", "postgresql://:***@h/db"),
        (
            "postgresql://h/db?user=u&password=secret&sslmode=require",
            "postgresql://h/db?user=u&password=***&sslmode=require",
        ),
        ("postgresql://h/db?password=secret", "postgresql://h/db?password=***"),
        (
            "postgresql://u:a@h/db?sslpassword=keypass#frag",
            "postgresql://u:***@h/db?sslpassword=***#frag",
        ),
        ("host=h user=u password=secret dbname=d", "host=h user=u password=*** dbname=d"),
        ("host=h password = secret dbname=d", "host=h password = *** dbname=d"),
        ("host=h password='se cret' dbname=d", "host=h password='***' dbname=d"),
        (r"host=h password='it\'s  secret' dbname=d", "host=h password='***' dbname=d"),
        (r"password=with\ space dbname=d", "password=*** dbname=d"),
        ("sslpassword=keypass", "sslpassword=***"),
        ("PGPASSWORD=abc pg_dump -h h", "PGPASSWORD=*** pg_dump -h h"),
        ("{'password': 'x y', 'host': 'h'}", "{'password': '***', 'host': 'h'}"),
        ('{"password": "a\\"b", "host": "h"}', '{"password": "***", "host": "h"}'),
        ("host=h user=u dbname=d", "host=h user=u dbname=d"),
        ("", ""),
    ],
)
def test_mask_dsn(dsn: str, expected: str) -> None:
    assert mask_dsn(dsn) == expected


@pytest.mark.parametrize(
    "text",
    [
        'password authentication failed for user "alfrd"',
        "ingested bills/a.pdf (sha256 ab12)",
        "see https://example.org/docs for details",
    ],
)
def test_mask_dsn_leaves_ordinary_text_alone(text: str) -> None:
    assert mask_dsn(text) == text


def test_mask_dsn_is_idempotent() -> None:
    dsn = "postgresql://u:pw@h/db?password=x host=h password='y'"
    assert mask_dsn(mask_dsn(dsn)) == mask_dsn(dsn)
    assert "pw" not in mask_dsn(dsn).replace("password", "")


# --------------------------------------------------------------------------- stderr output


def test_event_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", journal=False)
    log = logging.getLogger("alfrd.ingest")
    event(log, "ingested", "ingested", path="bills/a.pdf", sha256="ab12", document_id=42)

    (line,) = _stderr_lines(capsys)
    assert re.fullmatch(
        STAMP + r" INFO  alfrd\.ingest ingested path=bills/a\.pdf sha256=ab12 document_id=42",
        line,
    ), line


def test_event_name_and_quoted_fields(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("DEBUG", journal=False)
    log = logging.getLogger("alfrd.ingest")
    event(
        log,
        "failed",
        "could not ingest 100% of it",
        level=logging.WARNING,
        path="scans/a b.pdf",
        reason='bad "pdf"\nsecond line',
        empty="",
    )

    (line,) = _stderr_lines(capsys)
    assert re.fullmatch(STAMP + r" WARNING alfrd\.ingest could not ingest 100% of it .*", line)
    assert line.endswith(
        ' event=failed path="scans/a b.pdf" reason="bad \\"pdf\\"\\nsecond line" empty=""'
    )


def test_plain_messages_are_one_line_and_masked(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", journal=False)
    log = logging.getLogger("alfrd.db")
    log.info("connecting to %s", "postgresql://alfrd:hunter2@db/alfrd")
    log.info("odd file name %r", Path("x\ny.pdf"))
    event(log, "db_connect", "connecting", dsn="host=db password=hunter2")

    lines = _stderr_lines(capsys)
    assert len(lines) == 3
    assert lines[0].endswith("INFO  alfrd.db connecting to postgresql://alfrd:***@db/alfrd")
    assert lines[1].endswith("odd file name PosixPath('x\\ny.pdf')")
    assert lines[2].endswith('connecting event=db_connect dsn="host=db password=***"')
    assert "hunter2" not in "\n".join(lines)


def test_tracebacks_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO", journal=False)
    try:
        raise ConnectionError("cannot reach postgresql://alfrd:hunter2@db/alfrd")
    except ConnectionError:
        logging.getLogger("alfrd.db").exception("connect failed")

    err = capsys.readouterr().err
    assert "Traceback (most recent call last):" in err
    assert "postgresql://alfrd:***@db/alfrd" in err
    assert "hunter2" not in err


def test_level_filters_and_debug_is_off_at_info(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("info", journal=False)
    log = logging.getLogger("alfrd.x")
    log.debug("hidden")
    event(log, "noise", "hidden too", level=logging.DEBUG)
    log.info("shown")
    (line,) = _stderr_lines(capsys)
    assert line.endswith("INFO  alfrd.x shown")


def test_setup_logging_twice_replaces_its_handler(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    foreign = list(root.handlers)
    setup_logging("INFO", journal=False)
    setup_logging("DEBUG", journal=False)

    assert len(_owned_handlers()) == 1
    assert [h for h in root.handlers if h not in _owned_handlers()] == foreign
    assert root.level == logging.DEBUG
    logging.getLogger("alfrd.x").debug("once")
    assert len(_stderr_lines(capsys)) == 1


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="VERBOSE"):
        setup_logging("VERBOSE", journal=False)


# --------------------------------------------------------------------------- journald


def _stat(path: Path) -> os.stat_result:
    path.touch()
    return os.stat(path)


def test_journal_wanted_matches_device_and_inode(tmp_path: Path) -> None:
    st = _stat(tmp_path / "stderr")
    assert journal_wanted({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}, st)


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"JOURNAL_STREAM": ""},
        {"JOURNAL_STREAM": "garbage"},
        {"JOURNAL_STREAM": "1:x"},
        {"JOURNAL_STREAM": "0:0"},
    ],
)
def test_journal_not_wanted(environ: dict[str, str], tmp_path: Path) -> None:
    assert not journal_wanted(environ, _stat(tmp_path / "stderr"))


def test_journal_not_wanted_without_stderr() -> None:
    assert not journal_wanted({"JOURNAL_STREAM": "1:2"}, None)


def test_journal_stream_of_another_file_is_ignored(tmp_path: Path) -> None:
    other = _stat(tmp_path / "other")
    st = _stat(tmp_path / "stderr")
    assert not journal_wanted({"JOURNAL_STREAM": f"{other.st_dev}:{other.st_ino}"}, st)


def _is_journal(handler: logging.Handler) -> bool:
    return JournalHandler is not None and isinstance(handler, JournalHandler)


@pytest.mark.parametrize("matching", [pytest.param(True, marks=needs_systemd_python), False])
def test_setup_logging_auto_picks_journal_when_stderr_is_the_stream(
    matching: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "stderr").open("w") as stderr:
        # A real file as stderr, standing in for the socket systemd connects.
        monkeypatch.setattr(sys, "stderr", stderr)
        st = os.fstat(stderr.fileno())
        ino = st.st_ino if matching else st.st_ino + 1
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{ino}")
        setup_logging("INFO")
        (handler,) = _owned_handlers()
    assert _is_journal(handler) is matching


def test_journal_false_overrides_matching_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with (tmp_path / "stderr").open("w") as stderr:
        monkeypatch.setattr(sys, "stderr", stderr)
        st = os.fstat(stderr.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        setup_logging("INFO", journal=False)
        (handler,) = _owned_handlers()
    assert not _is_journal(handler) and isinstance(handler, logging.StreamHandler)


def _record(caplog: pytest.LogCaptureFixture, emit: Any) -> logging.LogRecord:
    caplog.set_level(logging.DEBUG, logger="alfrd.test")
    emit(logging.getLogger("alfrd.test"))
    return caplog.records[-1]


def test_journal_field_names(caplog: pytest.LogCaptureFixture) -> None:
    unusual: dict[str, Any] = {"weird-key": "x"}  # not an identifier: only ** can pass it
    record = _record(
        caplog,
        lambda log: event(
            log,
            "failed",
            "could not ingest",
            path="bills/a.pdf",
            sha256="ab12",
            document_id=7,
            reason="not a pdf",
            retry_in_s=5.0,
            **unusual,
        ),
    )
    assert journal_fields(record) == {
        "ALFRD_EVENT": "failed",
        "INBOX_PATH": "bills/a.pdf",
        "SHA256": "ab12",
        "DOCUMENT_ID": "7",
        "ALFRD_REASON": "not a pdf",
        "ALFRD_RETRY_IN_S": "5.0",
        "ALFRD_WEIRD_KEY": "x",
    }


def test_plain_records_have_no_event_fields(caplog: pytest.LogCaptureFixture) -> None:
    record = _record(caplog, lambda log: log.info("hello %s", "world"))
    assert journal_fields(record) == {}


@needs_systemd_python
def test_journal_handler_sends_masked_well_formed_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[tuple[str, dict[str, str]]] = []

    def sender(message: str, **fields: str) -> None:
        sent.append((message, fields))

    handler = logs.AlfrdJournalHandler(sender_function=sender)
    handler.setFormatter(logs.JournalMessageFormatter())
    handler.addFilter(logs.SecretMaskFilter())
    record = _record(
        caplog,
        lambda log: event(
            log,
            "db_error",
            "lost postgresql://u:hunter2@db/x",
            level=logging.ERROR,
            document_id=3,
            dsn="password=hunter2",
        ),
    )
    handler.handle(record)

    ((message, fields),) = sent
    assert message == 'lost postgresql://u:***@db/x event=db_error document_id=3 dsn="password=***"'
    assert fields["ALFRD_EVENT"] == "db_error"
    assert fields["DOCUMENT_ID"] == "3"
    assert fields["ALFRD_DSN"] == "password=***"
    assert fields["PRIORITY"] == "3"
    assert fields["LOGGER"] == "alfrd.test"
    assert fields["SYSLOG_IDENTIFIER"] == "alfrd"
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]*", key) for key in fields)
    assert "CODE_ARGS" not in fields
    assert "hunter2" not in repr(sent)
