"""Where the metrics go: the Prometheus endpoint (metrics.listen) and the node-exporter
textfile (metrics.textfile), both started once at start and stopped with the daemon."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile

from alfrd_daemon.config.reader import split_listen
from alfrd_daemon.config.settings import MetricsSettings
from alfrd_daemon.service.startup import StartupError

log = logging.getLogger("alfrd.metrics")


class MetricsExport:
    def __init__(self, settings: MetricsSettings, registry: CollectorRegistry):
        self.settings = settings
        self.registry = registry
        self.server: WSGIServer | None = None
        self._server_thread: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        self._stop = threading.Event()
        self._last_error: str | None = None

    @property
    def port(self) -> int | None:
        return self.server.server_port if self.server is not None else None

    def start(self) -> None:
        """Bind the endpoint and write the textfile once; either failing stops the start with
        one line naming its setting."""
        s = self.settings
        if s.listen is not None:
            host, port = split_listen(s.listen)
            try:
                self.server, self._server_thread = start_http_server(
                    port, addr=host, registry=self.registry)
            except OSError as exc:
                raise StartupError(f"cannot listen on metrics.listen {s.listen}: "
                                   f"{exc.strerror or exc}") from exc
            log.info("metrics on http://%s/metrics", s.listen)
        if s.textfile is not None:
            try:
                self.write_textfile()
            except OSError as exc:
                self.stop()
                raise StartupError(f"cannot write metrics.textfile {s.textfile}: "
                                   f"{exc.strerror or exc}") from exc
            self._writer = threading.Thread(target=self._write_loop, args=(s.textfile,),
                                            name="alfrd-metrics-textfile", daemon=True)
            self._writer.start()

    def write_textfile(self) -> None:
        """Written to a temporary file beside it and renamed over it: a reader never sees half
        a file (prometheus_client's write_to_textfile does exactly that)."""
        assert self.settings.textfile is not None
        write_to_textfile(str(self.settings.textfile), self.registry)

    def _write_loop(self, path: Path) -> None:
        while not self._stop.wait(self.settings.textfile_interval):
            try:
                self.write_textfile()
                self._last_error = None
            except OSError as exc:
                reason = exc.strerror or str(exc)
                if reason != self._last_error:  # once per new reason, not every interval
                    log.error("cannot write metrics.textfile %s: %s", path, reason)
                self._last_error = reason

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        if self._server_thread is not None:
            self._server_thread.join(timeout)
        if self._writer is not None:
            self._writer.join(timeout)
