"""A committed batch's releases run as one piece of work: one that fails must not keep the
others' claimed copies (and their slots) from being released."""

from __future__ import annotations

import logging

import pytest

from alfrd_daemon.service.daemon import run_each


def test_a_failing_release_is_logged_and_the_rest_of_its_batch_still_runs(
        caplog: pytest.LogCaptureFixture) -> None:
    ran: list[int] = []

    def fails() -> None:
        raise OSError("the claimed copy vanished")

    with caplog.at_level(logging.ERROR):
        run_each([lambda: ran.append(1), fails, lambda: ran.append(3)])
    assert ran == [1, 3]
    assert "releasing a committed file failed" in caplog.text
    assert "the claimed copy vanished" in caplog.text
