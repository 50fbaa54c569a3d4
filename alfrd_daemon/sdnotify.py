"""The sd_notify(3) protocol: readiness, status, watchdog and reload/stop notifications.

Usage in the daemon::

    notifier = Notifier.from_env()
    ...                                   # connect to the database, start watching the inbox
    notifier.ready("watching /var/lib/alfrd/inbox")
    # every notifier.watchdog_interval seconds, from the main loop (not a helper thread,
    # so a hung loop really stops the pings):
    notifier.watchdog()
    # on SIGHUP:      notifier.reloading(); reload(); notifier.ready()
    # on SIGTERM:     notifier.stopping("draining"); drain(); exit

Two transports speak the same protocol:

* ``systemd-python``: ``systemd.daemon.notify`` (libsystemd's sd_notify). libsystemd reads
  the socket address from the *process* environment (``os.environ['NOTIFY_SOCKET']``) at
  send time, not from the mapping given to :meth:`Notifier.from_env`. With
  ``transport="auto"`` it is therefore only used while the process environment names the
  same socket as the notifier; otherwise that datagram goes through the fallback, so it
  always reaches the socket the notifier was built for. ``transport="systemd-python"``
  insists on libsystemd: construction fails unless the process environment matches.
* ``fallback``: an AF_UNIX SOCK_DGRAM ``sendto`` written here, for systems without
  systemd-python. Supports filesystem paths and abstract sockets (``@name``).

Nothing here unsets ``NOTIFY_SOCKET``/``WATCHDOG_*``: child processes inherit them. The unit
uses ``NotifyAccess=main`` so children cannot change the service state; use
:func:`child_environ` when spawning them anyway, so an embedded postgres built with systemd
support does not try to notify (systemd would log a warning for each attempt).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from types import ModuleType
from typing import Literal

__all__ = ["NOTIFY_ENV_VARS", "Notifier", "Transport", "child_environ"]

log = logging.getLogger("alfrd.sdnotify")

Transport = Literal["auto", "systemd-python", "fallback"]

NOTIFY_ENV_VARS: tuple[str, ...] = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")

# systemd drains its notification socket promptly; a bounded wait only matters when the
# receiver is wedged, and then the daemon must keep running rather than block forever.
_SEND_TIMEOUT_S = 1.0
_SEND_RETRY_S = 0.02

def _load_sd_daemon() -> ModuleType | None:
    try:
        import systemd.daemon
    except ImportError:  # systemd-python is optional
        return None
    return systemd.daemon


_sd_daemon = _load_sd_daemon()


def child_environ(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """A copy of ``environ`` without the sd_notify variables, for spawning children."""
    return {k: v for k, v in environ.items() if k not in NOTIFY_ENV_VARS}


def _parse_watchdog_usec(environ: Mapping[str, str]) -> int | None:
    """WATCHDOG_USEC if it is meant for this process, mirroring sd_watchdog_enabled(3)."""
    raw = environ.get("WATCHDOG_USEC", "").strip()
    if not raw:
        return None
    try:
        usec = int(raw)
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = environ.get("WATCHDOG_PID", "").strip()
    if pid:
        # A forked child inherits WATCHDOG_USEC; the PID tells whom it was meant for.
        try:
            if int(pid) != os.getpid():
                return None
        except ValueError:
            return None
    return usec


def _socket_address(address: str) -> str | bytes | None:
    """The sendto() address for a NOTIFY_SOCKET value, or None if unsupported."""
    if address.startswith("@"):
        # Abstract namespace: the leading NUL is part of the name, no trailing NUL.
        return b"\0" + address[1:].encode()
    if address.startswith("/"):
        return address
    # Relative paths and vsock:/ addresses (systemd >= 254) are not handled here;
    # libsystemd rejects relative paths too.
    return None


def _one_line(text: str) -> str:
    """STATUS= ends at a newline; anything after it would become a bogus assignment."""
    return " ".join(text.splitlines()).strip()


class Notifier:
    """Send sd_notify messages; every method is a silent no-op when not under systemd."""

    def __init__(
        self,
        address: str | None,
        *,
        watchdog_usec: int | None = None,
        transport: Transport = "auto",
    ) -> None:
        self.address: str | None = address or None
        self.enabled: bool = self.address is not None
        self.watchdog_usec: int | None = watchdog_usec if self.enabled else None
        self.watchdog_interval: float | None = (
            self.watchdog_usec / 2 / 1e6 if self.watchdog_usec else None
        )
        # "auto" may use libsystemd only while the process environment agrees with
        # ``address``; an explicit "systemd-python" always does (it is what tests pin).
        self._strict = transport == "systemd-python"
        self.transport: Literal["systemd-python", "fallback"] = self._pick_transport(transport)
        self._error_logged = False

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] = os.environ,
        *,
        transport: Transport = "auto",
    ) -> Notifier:
        """Build from NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID in ``environ``."""
        return cls(
            environ.get("NOTIFY_SOCKET"),
            watchdog_usec=_parse_watchdog_usec(environ),
            transport=transport,
        )

    def _pick_transport(self, wanted: Transport) -> Literal["systemd-python", "fallback"]:
        if wanted == "fallback":
            return "fallback"
        if wanted == "auto":
            return "fallback" if _sd_daemon is None else "systemd-python"
        if _sd_daemon is None:
            raise ValueError("transport 'systemd-python' needs systemd-python (import systemd)")
        if self.enabled and not self._process_env_matches():
            raise ValueError(
                "transport 'systemd-python' sends to os.environ['NOTIFY_SOCKET'], "
                f"which is not {self.address!r}"
            )
        return "systemd-python"

    def _process_env_matches(self) -> bool:
        return os.environ.get("NOTIFY_SOCKET") == self.address

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` joined by newlines as one datagram; True if it was sent.

        Never raises: a failure is logged at debug level once (until the next success), so a
        watchdog ping every few seconds cannot flood the log.
        """
        if not self.enabled or not lines:
            return False
        message = "\n".join(lines)
        try:
            sent = self._send(message)
        except (OSError, ValueError) as exc:
            self._log_failure(f"{type(exc).__name__}: {exc}")
            return False
        if not sent:
            self._log_failure("address not supported or not set")
            return False
        self._error_logged = False
        return True

    def _log_failure(self, reason: str) -> None:
        if not self._error_logged:
            log.debug("sd_notify to %s failed: %s", self.address, reason)
            self._error_logged = True

    def _send(self, message: str) -> bool:
        use_libsystemd = self._strict or self._process_env_matches()
        if self.transport == "systemd-python" and use_libsystemd:
            assert _sd_daemon is not None
            # unset_environment=False: later notifications (watchdog!) still need it.
            return bool(_sd_daemon.notify(message, unset_environment=False))
        return self._send_fallback(message)

    def _send_fallback(self, message: str) -> bool:
        assert self.address is not None
        addr = _socket_address(self.address)
        if addr is None:
            return False
        data = message.encode()
        deadline = time.monotonic() + _SEND_TIMEOUT_S
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            while True:
                try:
                    sock.sendto(data, socket.MSG_DONTWAIT, addr)
                    return True
                except BlockingIOError:
                    # The receiver's queue is full. Not a socket timeout: poll() reports an
                    # AF_UNIX datagram socket writable while its peer's queue is full, so
                    # Python's timed send spun on the CPU (and the GIL) for the whole timeout.
                    if time.monotonic() >= deadline:
                        raise
                    time.sleep(_SEND_RETRY_S)

    def ready(self, status: str | None = None) -> None:
        """READY=1, also after a reload has finished."""
        self._send_with_status("READY=1", status)

    def status(self, text: str) -> None:
        self.notify(f"STATUS={_one_line(text)}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def reloading(self) -> None:
        """RELOADING=1; systemd >= 253 (notify-reload) needs MONOTONIC_USEC alongside."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str | None = None) -> None:
        self._send_with_status("STOPPING=1", status)

    def _send_with_status(self, line: str, status: str | None) -> None:
        if status is None:
            self.notify(line)
        else:
            self.notify(line, f"STATUS={_one_line(status)}")

    def __repr__(self) -> str:
        return (
            f"Notifier(address={self.address!r}, watchdog_usec={self.watchdog_usec!r}, "
            f"transport={self.transport!r})"
        )
