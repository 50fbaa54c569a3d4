"""`alfrd status`'s verdict (health_view, status_code) from a report, without a database."""

from __future__ import annotations

from typing import Any

from alfrd_daemon.cli.status import health_view, status_code


def daemon(host: str = "here", *, running: bool = True, health: str = "ok",
           watcher: bool = True, stopped: bool = False, age: float = 2.0,
           role: str | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"instance": f"{host}-1-abc", "hostname": host, "running": running,
                         "health": health, "watcher_alive": watcher,
                         "stopped_at": "2026-01-01" if stopped else None,
                         "heartbeat_age_seconds": age}
    if role:
        d["role"] = role
    return d


def report(*daemons: dict[str, Any], db: str = "ok") -> dict[str, Any]:
    return {"database": {"state": db}, "daemons": list(daemons)}


def verdict(r: dict[str, Any]) -> tuple[int, list[str]]:
    r["health"] = health_view(r, "here")
    return status_code(r), r["health"]["problems"]


def test_a_running_healthy_daemon_on_this_host_is_healthy() -> None:
    assert verdict(report(daemon(), daemon("elsewhere", health="workers stuck"))) == (0, [])


def test_no_daemon_here_is_unhealthy_whatever_other_hosts_run() -> None:
    assert verdict(report(daemon("elsewhere"))) == (
        1, ["no daemon on here has a live heartbeat (none is running)"])
    assert verdict(report(daemon(running=False, age=300), daemon(stopped=True,
                                                                 running=False))) == (
        1, ["no daemon on here has a live heartbeat (the last beat 300 s ago)"])
    # An OCR worker is not the daemon.
    assert verdict(report(daemon(role="ocr-worker")))[0] == 1


def test_a_problem_the_daemon_reports_is_named() -> None:
    assert verdict(report(daemon(health="inbox missing: /srv/inbox"))) == (
        1, ["daemon here-1-abc: inbox missing: /srv/inbox"])
    assert verdict(report(daemon(watcher=False))) == (
        1, ["daemon here-1-abc: the file watcher is down"])


def test_without_the_database_the_code_is_2() -> None:
    r = {"database": {"state": "unreachable", "error": "refused"}}
    assert verdict(r) == (2, ["the database is unreachable"])
