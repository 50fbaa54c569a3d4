"""Pure decisions: when a file in the inbox has settled."""

from __future__ import annotations

import pytest

from alfrd_daemon.ingest.readiness import Observed, ReadinessParams, Sighting, Verdict
from alfrd_daemon.ingest.readiness import decide as _decide

# Wall-clock seconds for the tests whose files were last written long ago (mtime 1 ns).
OLD_WALL = 1e6


def decide(s: Sighting, seen: Observed, now: float, p: ReadinessParams,
           wall_now: float = OLD_WALL) -> tuple[Verdict, float]:
    return _decide(s, seen, now, p, wall_now=wall_now)


P = ReadinessParams(settle_seconds=1.0, quiet_seconds=0.1, stale_write_seconds=60,
                    close_events=True)


def look(size: int = 10, mtime: int = 1) -> Observed:
    return Observed(exists=True, regular=True, size=size, mtime_ns=mtime)


def test_closed_file_is_ready_after_quiet_time() -> None:
    s = Sighting(last_activity=100.0, closed=True)
    assert decide(s, look(), 100.05, P) == (Verdict.WAIT, 100.1)
    assert decide(s, look(), 100.1, P)[0] is Verdict.READY


def test_file_being_written_waits_for_close_not_settle() -> None:
    s = Sighting(last_activity=100.0, writing=True)
    assert decide(s, look(), 105.0, P) == (Verdict.WAIT, 160.0)
    assert decide(s, look(), 160.0, P)[0] is Verdict.READY  # stale writer taken anyway


def test_polling_has_no_close_events_so_settle_decides() -> None:
    polling = ReadinessParams(settle_seconds=1.0, close_events=False)
    s = Sighting(last_activity=100.0, writing=True)
    assert decide(s, look(), 100.5, polling)[0] is Verdict.WAIT
    assert decide(s, look(), 101.0, polling)[0] is Verdict.READY


def test_growing_file_restarts_the_settle_clock() -> None:
    s = Sighting(last_activity=100.0)
    assert decide(s, look(size=10), 100.9, P)[0] is Verdict.WAIT
    verdict, due = decide(s, look(size=20, mtime=2), 101.5, P)
    assert verdict is Verdict.WAIT and due == pytest.approx(102.5)
    assert decide(s, look(size=20, mtime=2), 102.5, P)[0] is Verdict.READY


def test_change_after_close_means_not_done() -> None:
    s = Sighting(last_activity=100.0, closed=True)
    assert decide(s, look(size=10), 100.05, P)[0] is Verdict.WAIT
    assert decide(s, look(size=99, mtime=5), 100.2, P)[0] is Verdict.WAIT
    assert not s.closed


def test_empty_file_waits_settle_even_when_closed() -> None:
    s = Sighting(last_activity=100.0, closed=True)
    assert decide(s, look(size=0), 100.5, P)[0] is Verdict.WAIT
    assert decide(s, look(size=0), 101.0, P)[0] is Verdict.READY


def test_special_files_are_ready_at_once_and_gone_files_are_gone() -> None:
    s = Sighting(last_activity=100.0)
    assert decide(s, Observed(exists=True, regular=False), 100.0, P)[0] is Verdict.READY
    assert decide(s, Observed(exists=False), 100.0, P)[0] is Verdict.GONE


def wall_look(size: int, mtime_wall: float) -> Observed:
    return Observed(exists=True, regular=True, size=size, mtime_ns=int(mtime_wall * 1e9))


def test_polling_measures_settle_on_the_files_own_mtime() -> None:
    """A writer appending every 0.7 s, noticed late by a poll: the old rule counted the settle
    time from when the poll saw it and took a truncated prefix; the mtime keeps it waiting."""
    polling = ReadinessParams(settle_seconds=1.0, close_events=False)
    # monotonic == wall here; chunks at 0, 0.7, 1.4, ...; the poll's event came at 2.0.
    s = Sighting(last_activity=2.0)
    size = 1
    for t in (3.0, 3.8, 4.6, 5.4, 6.2):
        last_chunk = int(t / 0.7) * 0.7
        size = int(t / 0.7) + 1
        verdict, _ = decide(s, wall_look(size, last_chunk), t, polling, wall_now=t)
        assert verdict is Verdict.WAIT, t
    # The writer stopped at its last chunk: two looks agree and the mtime is old enough.
    last = int(6.2 / 0.7) * 0.7
    assert decide(s, wall_look(size, last), 7.0, polling, wall_now=7.0)[0] is Verdict.WAIT
    assert decide(s, wall_look(size, last), 7.6, polling, wall_now=7.6)[0] is Verdict.READY


def test_a_first_look_is_never_enough() -> None:
    s = Sighting(last_activity=0.0)
    verdict, due = decide(s, look(), 100.0, P)
    assert verdict is Verdict.WAIT and due == pytest.approx(100.05)
    assert decide(s, look(), 100.05, P)[0] is Verdict.READY


def test_mtime_in_the_future_falls_back_to_when_the_change_was_noticed() -> None:
    s = Sighting(last_activity=100.0)
    future = wall_look(10, 5000.0)
    assert decide(s, future, 100.5, P, wall_now=1000.0)[0] is Verdict.WAIT
    assert decide(s, future, 101.0, P, wall_now=1000.5)[0] is Verdict.READY
