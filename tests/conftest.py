"""Shared fixtures: a real PostgreSQL for every test run, and a fresh database per test.

ALFRD_TEST_DATABASE_URL names an existing server (any database on it; we only create and drop
our own). Without it the suite starts a private throwaway cluster, so it passes on a machine
with no PostgreSQL running. Each run creates its databases under a unique prefix and drops them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from alfrd_daemon.db.cluster import Cluster
from alfrd_daemon.db.migrations import migrate
from tests.helpers import NotifyListener

RUN_PREFIX = f"alfrd_t{os.getpid()}_{secrets.token_hex(2)}"


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[str]:
    """Conninfo of a maintenance database on the server the suite uses."""
    url = os.environ.get("ALFRD_TEST_DATABASE_URL")
    if url:
        yield url
        return
    root = Path(tempfile.mkdtemp(prefix="alfrd-test-pg-"))
    cluster = Cluster(root)
    cluster.start()
    try:
        yield cluster.conninfo("postgres")
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)


def with_dbname(conninfo: str, dbname: str) -> str:
    params = conninfo_to_dict(conninfo)
    params["dbname"] = dbname
    return make_conninfo(**params)


def create_database(admin: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(admin, autocommit=True) as conn:
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(template))
        conn.execute(query)
    return with_dbname(admin, name)


def drop_database(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


@pytest.fixture(scope="session")
def template_db(pg_admin: str) -> Iterator[str]:
    """A migrated database that each test clones (fast: CREATE DATABASE … TEMPLATE)."""
    name = f"{RUN_PREFIX}_tpl"
    url = create_database(pg_admin, name)
    with psycopg.connect(url) as conn:
        migrate(conn)
    try:
        yield name
    finally:
        drop_database(pg_admin, name)


@pytest.fixture
def db_url(pg_admin: str, template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test."""
    name = f"{RUN_PREFIX}_{secrets.token_hex(4)}"
    url = create_database(pg_admin, name, template=template_db)
    try:
        yield url
    finally:
        drop_database(pg_admin, name)


@pytest.fixture
def empty_db_url(pg_admin: str) -> Iterator[str]:
    """A fresh database with no schema at all."""
    name = f"{RUN_PREFIX}_{secrets.token_hex(4)}"
    url = create_database(pg_admin, name)
    try:
        yield url
    finally:
        drop_database(pg_admin, name)


@pytest.fixture
def private_cluster() -> Iterator[Cluster]:
    """A PostgreSQL cluster owned by one test, which may stop, kill or freeze it.

    Lives under a traversable temporary directory because, as root, the server runs as the
    unprivileged `alfrd` user. Destroyed (server stopped, files removed) afterwards.
    """
    root = Path(tempfile.mkdtemp(prefix="alfrd-owned-pg-"))
    os.chmod(root, 0o755)
    cluster = Cluster(root / "pg")
    cluster.start()
    cluster.ensure_database("alfrd")
    with psycopg.connect(cluster.conninfo("alfrd")) as conn:
        migrate(conn)
    try:
        yield cluster
    finally:
        cluster.destroy()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    """A real sd_notify socket the daemon under test reports to."""
    lst = NotifyListener(tmp_path / "notify.sock")
    try:
        yield lst
    finally:
        lst.close()
