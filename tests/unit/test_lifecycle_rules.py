"""Pure rules of start-up, reload and stop: which settings a SIGHUP applies, how a libpq
connection error is told in one line, and the stop budget against the unit's TimeoutStopSec."""

from __future__ import annotations

import pytest

from alfrd_daemon.db import connection_problem


@pytest.mark.parametrize(("message", "reason"), [
    ('connection failed: connection to server on socket "/run/pg/.s.PGSQL.5432" failed: '
     "FATAL:  the database system is starting up",
     "the database system is starting up"),
    ('connection failed: connection to server on socket "/run/pg/.s.PGSQL.5432" failed: '
     "FATAL:  the database system is not accepting connections\nDETAIL:  Hot standby mode is "
     "disabled.",
     "the database system is not accepting connections (Hot standby mode is disabled.)"),
    ('connection failed: connection to server at "10.0.0.5", port 5432 failed: Connection '
     "refused\n\tIs the server running on that host and accepting TCP/IP connections?",
     'connection to server at "10.0.0.5", port 5432 failed: Connection refused'),
    ("", "Exception"),
])
def test_a_connection_error_is_told_in_one_line(message: str, reason: str) -> None:
    assert connection_problem(Exception(message)) == reason
