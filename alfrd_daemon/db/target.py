"""Which PostgreSQL to use: database.url, ALFRD_DATABASE_URL, libpq's PG* variables, or the
embedded cluster under the state directory (started on demand, stopped when no daemon uses it)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from alfrd_daemon.config.settings import Settings
from alfrd_daemon.db import pool as dbmod
from alfrd_daemon.db.cluster import Cluster

log = logging.getLogger("alfrd.db")


@dataclass
class DatabaseTarget:
    conninfo: str
    cluster: Cluster | None  # set when we run the embedded server


def resolve_database(settings: Settings, environ: dict[str, str] | None = None,
                     *, start_embedded: bool = True) -> DatabaseTarget:
    """database.url / ALFRD_DATABASE_URL / libpq PG* variables, else the embedded cluster."""
    environ = dict(os.environ if environ is None else environ)
    if settings.database.url:
        return DatabaseTarget(settings.database.url, None)
    if any(environ.get(k) for k in ("PGHOST", "PGDATABASE", "PGSERVICE")):
        return DatabaseTarget("", None)  # libpq reads PG* itself
    cluster = Cluster(settings.embedded_dir)
    if start_embedded:
        cluster.start(timeout=settings.database.startup_timeout)
        cluster.ensure_database("alfrd")
    return DatabaseTarget(cluster.conninfo("alfrd"), cluster)


def stop_embedded_if_unused(target: DatabaseTarget, timeout: float = 60) -> None:
    """Stop the embedded server unless another daemon on this host still uses it."""
    cluster = target.cluster
    if cluster is None or not cluster.running():
        return
    try:
        with dbmod.connect(target.conninfo, connect_timeout=min(5.0, timeout)) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                "AND pid <> pg_backend_pid()", (dbmod.APPLICATION_NAME,)).fetchone()
        others = row[0] if row else 0
    except dbmod.DatabaseUnavailable:
        others = 0
    if others:
        log.info("leaving the embedded PostgreSQL running: %d other connections use it", others)
        return
    cluster.stop(timeout=max(1.0, timeout))
