"""sd_notify against real AF_UNIX datagram sockets, through both transports."""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from alfrd_daemon.sdnotify import Notifier, child_environ

TRANSPORTS = ["fallback", "systemd-python"]


def _bound_socket(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2.0)
    return sock


@pytest.fixture
def path_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    # AF_UNIX paths are limited to 108 bytes; pytest's tmp_path can exceed that.
    path = tmp_path / "notify.sock"
    if len(os.fsencode(path)) >= 100:
        path = Path("/tmp") / f"alfrd-notify-{uuid.uuid4().hex}.sock"
    sock = _bound_socket(str(path))
    try:
        yield str(path), sock
    finally:
        sock.close()
        path.unlink(missing_ok=True)


@pytest.fixture
def abstract_socket() -> Iterator[tuple[str, socket.socket]]:
    name = f"alfrd-test-{uuid.uuid4().hex}"
    sock = _bound_socket(b"\0" + name.encode())
    try:
        yield "@" + name, sock
    finally:
        sock.close()


def _notifier(address: str, transport: str, monkeypatch: pytest.MonkeyPatch) -> Notifier:
    # libsystemd reads the process environment, so it must name the same socket.
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    return Notifier.from_env({"NOTIFY_SOCKET": address}, transport=transport)  # type: ignore[arg-type]


def _recv(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("which", ["path_socket", "abstract_socket"])
def test_messages_arrive_exactly(
    transport: str, which: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    address, sock = request.getfixturevalue(which)
    notifier = _notifier(address, transport, monkeypatch)
    assert notifier.enabled
    assert notifier.transport == transport

    notifier.ready()
    assert _recv(sock) == "READY=1"
    notifier.ready("watching inbox")
    assert _recv(sock) == "READY=1\nSTATUS=watching inbox"
    notifier.status("line one\nline two")
    assert _recv(sock) == "STATUS=line one line two"
    notifier.watchdog()
    assert _recv(sock) == "WATCHDOG=1"
    notifier.stopping()
    assert _recv(sock) == "STOPPING=1"
    notifier.stopping("draining 3 documents")
    assert _recv(sock) == "STOPPING=1\nSTATUS=draining 3 documents"
    assert notifier.notify("A=1", "B=2") is True
    assert _recv(sock) == "A=1\nB=2"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_reloading_sends_monotonic_usec(
    transport: str, path_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, sock = path_socket
    notifier = _notifier(address, transport, monkeypatch)

    before = time.monotonic_ns() // 1000
    notifier.reloading()
    after = time.monotonic_ns() // 1000

    first, second = _recv(sock).split("\n")
    assert first == "RELOADING=1"
    key, _, value = second.partition("=")
    assert key == "MONOTONIC_USEC"
    assert value.isdigit()
    assert before <= int(value) <= after


def test_systemd_python_transport_reads_process_environment(
    path_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proves the systemd-python transport is really libsystemd: it follows os.environ."""
    address, sock = path_socket
    notifier = _notifier(address, "systemd-python", monkeypatch)
    other_path = Path("/tmp") / f"alfrd-other-{uuid.uuid4().hex}.sock"
    other = _bound_socket(str(other_path))
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", str(other_path))
        assert notifier.notify("WATCHDOG=1") is True
        assert _recv(other) == "WATCHDOG=1"
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.recv(4096)
    finally:
        other.close()
        other_path.unlink(missing_ok=True)


def test_auto_keeps_the_socket_from_the_mapping(
    path_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A notifier built from a mapping must not be redirected by os.environ."""
    address, sock = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/elsewhere.sock")
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
    assert notifier.notify("READY=1") is True
    assert _recv(sock) == "READY=1"


def test_systemd_python_refuses_a_mismatching_process_environment(
    path_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, _ = path_socket
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    with pytest.raises(ValueError, match="NOTIFY_SOCKET"):
        Notifier.from_env({"NOTIFY_SOCKET": address}, transport="systemd-python")


@pytest.mark.parametrize("transport", ["auto", *TRANSPORTS])
def test_without_notify_socket_everything_is_a_silent_noop(
    transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier.from_env({"WATCHDOG_USEC": "30000000"}, transport=transport)  # type: ignore[arg-type]
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    assert notifier.notify("READY=1") is False
    notifier.ready("x")
    notifier.status("x")
    notifier.watchdog()
    notifier.reloading()
    notifier.stopping("x")


def test_from_env_defaults_to_process_environment(
    path_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    address, sock = path_socket
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    notifier = Notifier.from_env()
    assert notifier.transport == "systemd-python"
    notifier.ready()
    assert _recv(sock) == "READY=1"


@pytest.mark.parametrize("transport", ["auto", *TRANSPORTS])
def test_missing_socket_path_returns_false_and_logs_once(
    transport: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    address = str(tmp_path / "gone.sock")
    notifier = _notifier(address, transport, monkeypatch)
    caplog.set_level("DEBUG", logger="alfrd.sdnotify")

    assert notifier.notify("READY=1") is False
    notifier.watchdog()
    notifier.watchdog()

    failures = [r for r in caplog.records if r.name == "alfrd.sdnotify"]
    assert len(failures) == 1
    assert failures[0].levelname == "DEBUG"
    assert address in failures[0].getMessage()


def test_failure_is_logged_again_after_a_success(caplog: pytest.LogCaptureFixture) -> None:
    path = Path("/tmp") / f"alfrd-flaky-{uuid.uuid4().hex}.sock"
    notifier = Notifier(str(path), transport="fallback")
    caplog.set_level("DEBUG", logger="alfrd.sdnotify")
    assert notifier.notify("A=1") is False
    sock = _bound_socket(str(path))
    try:
        assert notifier.notify("A=2") is True
        assert _recv(sock) == "A=2"
    finally:
        sock.close()
        path.unlink()
    assert notifier.notify("A=3") is False
    assert len([r for r in caplog.records if r.name == "alfrd.sdnotify"]) == 2


@pytest.mark.parametrize("address", ["relative/notify.sock", "vsock:2:1234"])
def test_unsupported_address_returns_false(address: str) -> None:
    notifier = Notifier(address, transport="fallback")
    assert notifier.enabled
    assert notifier.notify("READY=1") is False


@pytest.mark.parametrize(
    ("env", "expected_usec", "expected_interval"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 30_000_000, 15.0),
        ({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": str(os.getpid())}, 5_000_000, 2.5),
        ({"WATCHDOG_USEC": " 1000000 "}, 1_000_000, 0.5),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None, None),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "not-a-pid"}, None, None),
        ({"WATCHDOG_USEC": "0"}, None, None),
        ({"WATCHDOG_USEC": "-5"}, None, None),
        ({"WATCHDOG_USEC": "30s"}, None, None),
        ({"WATCHDOG_USEC": ""}, None, None),
        ({"WATCHDOG_PID": str(os.getpid())}, None, None),
        ({}, None, None),
    ],
)
def test_watchdog_environment(
    env: dict[str, str], expected_usec: int | None, expected_interval: float | None
) -> None:
    notifier = Notifier.from_env({"NOTIFY_SOCKET": "@unused", **env}, transport="fallback")
    assert notifier.watchdog_usec == expected_usec
    assert notifier.watchdog_interval == expected_interval


def test_child_environ_drops_notify_variables() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1", "WATCHDOG_PID": "2", "PATH": "/bin"}
    assert child_environ(env) == {"PATH": "/bin"}


def test_a_receiver_that_reads_nothing_costs_time_but_no_cpu(
    path_socket: tuple[str, socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full notification queue (a wedged receiver, or a test harness that stopped reading)
    makes a send give up after its bound; waiting for room must sleep, not spin. Python's own
    timed send on an AF_UNIX datagram socket spun for the whole bound: poll() reports it
    writable while the peer's queue is full. The daemon's main loop sends twice a second, so
    the spin took a fifth of a core from OCR and ingest."""
    address, _receiver = path_socket  # never read
    notifier = _notifier(address, "fallback", monkeypatch)
    while notifier.notify("STATUS=filling the queue"):
        pass  # until a send gives up: the queue is full now
    cpu, wall = time.thread_time(), time.monotonic()
    assert notifier.notify("WATCHDOG=1") is False
    cpu, wall = time.thread_time() - cpu, time.monotonic() - wall
    assert wall >= 0.9, "the send gave up before its bound"
    assert cpu < wall / 4, f"{cpu:.2f} s of CPU while waiting {wall:.2f} s"
