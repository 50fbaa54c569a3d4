"""Did the import arrive whole? Per ALFRD table: every row read with a valid id is present,
and a checksum over (id, text) pairs is the same on both sides; rejected rows are where the
report says they are."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import DictRow, dict_row

from alfrd_daemon.db.queries import load_named_queries
from alfrd_daemon.legacy.mapping import LEGACY_BY_SOURCE, table_checksum, text_digest

Q = load_named_queries("legacy.sql")
CHUNK = 5000
SAMPLE = 10


@dataclass
class TableCheck:
    table: str
    expected: int
    found: int
    source_checksum: str
    destination_checksum: str
    rejected_expected: int
    rejected_found: int
    missing_ids: list[str] = field(default_factory=list)
    different_ids: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (self.expected == self.found
                and self.source_checksum == self.destination_checksum
                and self.rejected_expected == self.rejected_found)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


class Expectations:
    """What the source says the destination must hold, collected while the rows stream by."""

    def __init__(self) -> None:
        self.digests: dict[str, dict[str, str]] = defaultdict(dict)
        self.rejected: dict[str, set[str]] = defaultdict(set)
        self.tables: list[str] = []

    def table(self, name: str) -> None:
        if name not in self.tables:
            self.tables.append(name)

    def expect(self, table: str, row_id: str, text: str | None) -> None:
        self.digests[table][row_id] = text_digest(text)

    def reject(self, table: str, source_id: str) -> None:
        self.rejected[table].add(source_id)


def verify(conn: psycopg.Connection[DictRow], expected: Expectations) -> list[TableCheck]:
    return [_check(conn, table, expected.digests.get(table, {}),
                   expected.rejected.get(table, set())) for table in expected.tables]


def _check(conn: psycopg.Connection[DictRow], table: str, want: dict[str, str],
           rejected: set[str]) -> TableCheck:
    cur = conn.cursor(row_factory=dict_row)
    found: dict[str, str] = {}
    ids = sorted(want)
    for start in range(0, len(ids), CHUNK):
        for row in cur.execute(_digest_query(table), {"ids": ids[start:start + CHUNK]}):
            found[row["id"]] = row["digest"]
    rejected_found = 0
    names = sorted(rejected)
    for start in range(0, len(names), CHUNK):
        counted = cur.execute(Q["verify_rejects"],
                              {"table": table, "ids": names[start:start + CHUNK]}).fetchone()
        rejected_found += int(counted["n"]) if counted else 0
    missing = [i for i in ids if i not in found]
    different = [i for i in ids if i in found and found[i] != want[i]]
    return TableCheck(
        table=table, expected=len(want), found=sum(1 for i in ids if i in found),
        source_checksum=table_checksum(want),
        destination_checksum=table_checksum({i: found[i] for i in ids if i in found}),
        rejected_expected=len(rejected), rejected_found=rejected_found,
        missing_ids=missing[:SAMPLE], different_ids=different[:SAMPLE])


def _digest_query(table: str) -> sql.SQL | sql.Composed:
    if table == "documents":
        return sql.SQL(Q["verify_documents"])
    spec = LEGACY_BY_SOURCE[table]
    column = sql.Identifier(spec.checksum_column)
    return sql.SQL(
        "SELECT id::text AS id, CASE WHEN {col} IS NULL THEN 'null' "
        "ELSE encode(sha256(convert_to({col}, 'UTF8')), 'hex') END AS digest "
        "FROM {table} WHERE id = ANY(%(ids)s::uuid[])"
    ).format(col=column, table=sql.Identifier(spec.target))

