"""The embedded store's tables: a table a kind, a column a field; and the upgrade from the long layout.

Layout (schema version 2)::

    "readings_<kind>"(device, ts_ns, arrived_ms, <field>, <field>, ...)  PRIMARY KEY (device, ts_ns) WITHOUT ROWID
    last_seen(device, ts_ns)                           latest measurement time per device
    quarantine(arrived_ns, reason, kind, topic, device, detail, raw)

One row a reading: a field the reading did not carry is NULL.  Field columns
have no type affinity, so an int stays an INTEGER and a float a REAL.  A
second write of the same (device, time) merges field by field, the later
value winning, and keeps the latest arrival: what InfluxDB does with a point
written twice.

Version 1 kept one row a reading *and field* in one ``readings`` table: four
to five B-tree inserts a reading, which cost the collector most of its time
on one-reading messages (BENCHMARKS.md).  A version-1 file is upgraded in
place when a store opens it (:func:`upgrade_v1`), in one transaction.

Tables and columns for the registry's kinds are created when a store opens
the file; a kind or field first seen in a write (a newer registry in a
collector) gets its table or column inside that write's transaction.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from device_profiles.loader import Registry

log = logging.getLogger("fansipan.storage")

SCHEMA_VERSION = 2
PREFIX = "readings_"
BASE = """
CREATE TABLE IF NOT EXISTS last_seen (
    device TEXT    NOT NULL PRIMARY KEY,
    ts_ns  INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS quarantine (
    arrived_ns INTEGER NOT NULL,
    reason     TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    topic      TEXT    NOT NULL,
    device     TEXT    NOT NULL,
    detail     TEXT    NOT NULL,
    raw        TEXT    NOT NULL,
    PRIMARY KEY (arrived_ns, reason, kind)
) WITHOUT ROWID;
"""
_KEY_COLUMNS = ("device", "ts_ns", "arrived_ms")
V1_LEFTOVER = "v1_readings_of_unregistered_devices"


PARAMS_A_STATEMENT = 999  # the lowest limit on a statement's parameters of any SQLite (32,766 since 3.32)


def values(rows: int, width: int) -> str:
    """``(?, ?), (?, ?)``: the VALUES of an INSERT of ``rows`` rows of ``width`` columns."""
    one = f"({', '.join('?' * width)})"
    return ", ".join([one] * rows)


def insert_rows(conn: sqlite3.Connection, statement: Callable[[int], str], rows: Sequence[tuple]) -> None:
    """``rows`` (of one width) through ``statement(k)``, an INSERT of k rows: as many a statement as SQLite allows.

    Not ``executemany``: Python's sqlite3 lets go of the GIL around every step, and a step a row is a
    GIL hand-off a reading, taken from the MQTT client's thread that the collector shares its process with
    (BENCHMARKS.md, fourth round).
    """
    if not rows:
        return
    per = max(1, PARAMS_A_STATEMENT // len(rows[0]))
    for i in range(0, len(rows), per):
        part = rows[i:i + per]
        conn.execute(statement(len(part)), list(chain.from_iterable(part)))


def quote(name: str) -> str:
    """An SQL identifier for any name (kinds and fields come from YAML and payloads)."""
    return '"' + name.replace('"', '""') + '"'


def table(kind: str) -> str:
    return quote(PREFIX + kind)


def add_columns(db: sqlite3.Connection, name: str, columns: Iterable[tuple[str, str]]) -> set[str]:
    """Add each (column, declared type) that table ``name`` lacks; returns the columns it has now.

    Another process (the API, the CLI, a second collector) adding the same column first is not an error.
    """
    have = {r[1] for r in db.execute(f"PRAGMA table_info({quote(name)})")}
    for column, sql_type in columns:
        if column not in have:
            try:
                db.execute(f"ALTER TABLE {quote(name)} ADD COLUMN {quote(column)} {sql_type}".rstrip())
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):
                    raise
            have.add(column)
    return have


class Tables:
    """The kind tables and their field columns this file has, created on demand.

    :meth:`ensure` must run inside the caller's write transaction (``BEGIN
    IMMEDIATE``), so two writers never race to create the same column; after
    a rolled-back transaction call :meth:`forget`, since what it created is
    gone.
    """

    def __init__(self) -> None:
        self.columns: dict[str, set[str]] = {}
        self._upserts: dict[tuple[str, tuple[str, ...], int], str] = {}  # (kind, fields, rows) -> SQL

    def load(self, conn: sqlite3.Connection) -> None:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND substr(name, 1, ?) = ?",
            (len(PREFIX), PREFIX))]
        self.columns = {n[len(PREFIX):]: {r[1] for r in conn.execute(f"PRAGMA table_info({quote(n)})")}
                        - set(_KEY_COLUMNS) for n in names}

    def forget(self) -> None:
        self.columns = {}

    def missing(self, kind: str, fields: Iterable[str]) -> bool:
        have = self.columns.get(kind)
        return have is None or not have.issuperset(fields)

    def ensure(self, conn: sqlite3.Connection, kind: str, fields: Iterable[str]) -> None:
        """The table of ``kind`` with a column for each of ``fields``, created if missing (by us or another process)."""
        fields = tuple(fields)
        if not self.missing(kind, fields):
            return
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table(kind)} (device TEXT NOT NULL, ts_ns INTEGER NOT NULL, "
                     "arrived_ms INTEGER NOT NULL" + "".join(f", {quote(f)}" for f in fields)
                     + ", PRIMARY KEY (device, ts_ns)) WITHOUT ROWID")
        self.columns[kind] = add_columns(conn, PREFIX + kind, ((f, "") for f in fields)) - set(_KEY_COLUMNS)

    def upsert(self, kind: str, fields: tuple[str, ...], rows: int = 1) -> str:
        """INSERT of ``rows`` (device, ts_ns, arrived_ms, *fields) rows, merging into a reading already stored.

        SQLite takes a statement's rows in order, so a reading twice in one statement merges as in two.
        """
        sql = self._upserts.get((kind, fields, rows))
        if sql is None:
            cols = ", ".join(quote(c) for c in (*_KEY_COLUMNS, *fields))
            merge = "".join(f", {quote(f)} = coalesce(excluded.{quote(f)}, {quote(f)})" for f in fields)
            sql = (f"INSERT INTO {table(kind)} ({cols}) VALUES {values(rows, 3 + len(fields))} "
                   f"ON CONFLICT (device, ts_ns) DO UPDATE SET arrived_ms = max(arrived_ms, excluded.arrived_ms)"
                   + merge)
            self._upserts[(kind, fields, rows)] = sql
        return sql


def create(conn: sqlite3.Connection, tables: Tables, registry: Registry, path: object) -> None:
    """Bring the file to this version: base tables, a table a registered kind, a v1 file upgraded.

    Takes the write lock only when something is missing, so an API opening a
    file a collector is writing does not wait for it.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version not in (0, 1, SCHEMA_VERSION):
        raise ValueError(f"{path} has schema version {version}, this Fansipan knows versions 1 and "
                         f"{SCHEMA_VERSION}: upgrade Fansipan or point it at a new file")
    tables.load(conn)
    wanted = {k: tuple(p.fields) for k, p in registry.kinds.items()}
    if version == SCHEMA_VERSION and not any(tables.missing(k, f) for k, f in wanted.items()):
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]  # again, under the lock
        for statement in BASE.split(";"):  # not executescript: it would commit the transaction first
            if statement.strip():
                conn.execute(statement)
        for kind, fields in wanted.items():
            tables.ensure(conn, kind, fields)
        if version == 1:
            upgrade_v1(conn, tables, registry, path)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        tables.forget()
        raise


def upgrade_v1(conn: sqlite3.Connection, tables: Tables, registry: Registry, path: object) -> None:
    """Move a version-1 ``readings`` table (a row a field) into the kind tables, inside the caller's transaction.

    Each registered device's rows become one row a reading (every field the
    file holds for its kind, registered or not).  Rows of devices the registry
    no longer has stay, renamed to ``v1_readings_of_unregistered_devices``, so
    nothing is lost; a warning says how many.
    """
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'readings'").fetchone():
        return
    total = conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0]
    moved = 0
    for kind in sorted(registry.kinds):
        devices = json.dumps(sorted(d.id for d in registry.devices_of(kind)))
        of_kind = "device IN (SELECT value FROM json_each(?))"
        fields = [r[0] for r in conn.execute(f"SELECT DISTINCT field FROM readings WHERE {of_kind}", (devices,))]
        if not fields:
            continue
        tables.ensure(conn, kind, fields)
        pick = ", MAX(CASE WHEN field = ? THEN value END)" * len(fields)
        conn.execute(f"INSERT INTO {table(kind)} (device, ts_ns, arrived_ms{''.join(', ' + quote(f) for f in fields)}) "
                     f"SELECT device, ts_ns, MAX(arrived_ms){pick} FROM readings WHERE {of_kind} "
                     "GROUP BY device, ts_ns", (*fields, devices))
        moved += conn.execute(f"DELETE FROM readings WHERE {of_kind}", (devices,)).rowcount
    left = total - moved
    if left:
        conn.execute(f"ALTER TABLE readings RENAME TO {V1_LEFTOVER}")
        log.warning("%s: upgraded to schema version %d; %d field rows of devices not in the registry (%s) were "
                    "kept in table %s: add those devices back to read them, or drop the table",
                    path, SCHEMA_VERSION, left, registry.source, V1_LEFTOVER)
    else:
        conn.execute("DROP TABLE readings")
        log.info("%s: upgraded to schema version %d (%d field rows moved into one table a kind)",
                 path, SCHEMA_VERSION, total)
