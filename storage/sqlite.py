"""The embedded store: one SQLite file, for a single machine without any server.

Layout: a table a kind, one row a reading, a column a field; the last-seen
times and the quarantine (storage/sqlite_schema.py, which also upgrades a
file of the earlier long layout in place).

Durability: the database runs in WAL mode with ``synchronous=FULL``, so every
committed batch has been fsynced to the WAL before :meth:`SQLiteStore.write`
returns.  ``synchronous=NORMAL`` in WAL mode is crash-safe for the *process*
but may lose the last transactions on power loss, which would break
"acknowledge the MQTT message only after a durable write".

Concurrency: WAL lets other processes read (the API, dashboards) while the
collector writes.  Inside one process each thread gets its own connection;
writers wait for each other up to ``busy_timeout_s``, then raise a retryable
StoreError.

:meth:`SQLiteStore.frame` reads a whole kind with one query that seeks the
primary key once per device over the time range: the rows are the frame's
rows already, read into numpy.

Values keep their type: a float field always reads back as float, int and
bool fields as int (bools are stored as 0/1), exactly as from InfluxDB.  The
quarantine stores the same text as the InfluxDB stores do (see
storage.line_protocol), so every backend answers identically.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from . import sqlite_schema
from .base import Frame, Point, Rejected, StoreError, Value
from .columns import ColumnBatch
from .common import (
    NS_PER_S,
    check_limit,
    check_query,
    check_range,
    float_fields,
    kind_from_tag,
    rows,
    value_caster,
)
from .frame import MAX_ROWS, assemble, check_frame, check_max_rows, empty, too_many
from .line_protocol import quarantine_tag, quarantine_times, raw_text, stored_text
from .sqlite_columns import SQLiteRows, column_rows, point_rows
from .sqlite_schema import insert_rows, quote, table, values

if TYPE_CHECKING:  # pragma: no cover
    from device_profiles.loader import Registry


@cache
def _last_seen(rows: int) -> str:
    return (f"INSERT INTO last_seen VALUES {values(rows, 2)} ON CONFLICT(device) DO UPDATE "
            "SET ts_ns = MAX(ts_ns, excluded.ts_ns)")


# window start = ts - (ts mod w), with a modulo that is never negative (times before 1970)
_BUCKET = "(ts_ns - ((ts_ns % :w) + :w) % :w)"
_AGG_SQL = {
    "mean": f"SELECT {_BUCKET} AS b, AVG({{col}}) FROM {{table}} {{where}} GROUP BY b ORDER BY b",
    "min": f"SELECT {_BUCKET} AS b, MIN({{col}}) FROM {{table}} {{where}} GROUP BY b ORDER BY b",
    "max": f"SELECT {_BUCKET} AS b, MAX({{col}}) FROM {{table}} {{where}} GROUP BY b ORDER BY b",
    "count": f"SELECT {_BUCKET} AS b, COUNT({{col}}) FROM {{table}} {{where}} GROUP BY b ORDER BY b",
    # SQLite takes the bare column from the row holding MAX(ts_ns)
    "last": f"SELECT b, {{col}} FROM (SELECT {_BUCKET} AS b, {{col}}, MAX(ts_ns) FROM {{table}} {{where}} GROUP BY b) "
            "ORDER BY b",
}
_WHERE = "WHERE device = :device AND ts_ns >= :start AND ts_ns < :end AND {col} IS NOT NULL"
# frame(): the json_each key is the position in the device list, so every row is numbers only; CROSS JOIN keeps
# that loop order, which seeks the primary key on (device, ts range) for each device
_FRAME_SQL = ("SELECT d.key, r.ts_ns, r.arrived_ms{cols} FROM json_each(:devices) AS d CROSS JOIN {table} AS r "
              "WHERE r.device = d.value AND r.ts_ns >= :start AND r.ts_ns < :end AND ({any}) LIMIT :limit")

# SQLite result codes worth retrying, with what to tell the operator
_RETRYABLE = {
    5: "another connection holds the write lock; retry later",  # SQLITE_BUSY
    6: "a table is locked; retry later",  # SQLITE_LOCKED
    10: "an I/O error; check the disk, then retry",  # SQLITE_IOERR
    13: "the disk is full; free some space, then retry",  # SQLITE_FULL
}


class SQLiteStore:
    """Telemetry and quarantine in one SQLite file (see the module docstring for the guarantees)."""

    def __init__(self, path: str | Path, registry: Registry, busy_timeout_s: float = 10.0,
                 max_rows: int = MAX_ROWS):
        self.path = Path(path)
        self.registry = registry
        self.busy_timeout_s = busy_timeout_s
        self.max_rows = check_max_rows(max_rows)
        self._floats = float_fields(registry)
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._closed = False
        self._tables = sqlite_schema.Tables()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._errors(f"create the schema in {self.path}"):
            try:
                sqlite_schema.create(self._conn(), self._tables, registry, self.path)
            except ValueError as exc:
                raise StoreError(str(exc), retryable=False) from exc

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # ---------------------------------------------------------------- plumbing

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError(f"{self!r} is closed", retryable=False)
            with self._errors(f"open {self.path}"):
                conn = sqlite3.connect(self.path, timeout=self.busy_timeout_s, isolation_level=None,
                                       check_same_thread=False)
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode.lower() != "wal":
                    raise StoreError(f"{self.path}: cannot switch to WAL mode (got {mode!r}); "
                                     "is it on a network file system?", retryable=False)
                conn.execute("PRAGMA synchronous=FULL")
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    class _errors:
        """Context manager turning sqlite3 errors into StoreError with the file and what was being done."""

        def __init__(self, doing: str):
            self.doing = doing

        def __enter__(self):
            return self

        def __exit__(self, et, exc, tb):
            if exc is None or not isinstance(exc, sqlite3.Error):
                return False
            code = getattr(exc, "sqlite_errorcode", None)
            hint = _RETRYABLE.get(code & 0xFF) if code is not None else None
            name = getattr(exc, "sqlite_errorname", type(exc).__name__)
            raise StoreError(f"SQLite: cannot {self.doing}: {name}: {exc}" + (f" ({hint})" if hint else ""),
                             retryable=hint is not None) from exc

    # ---------------------------------------------------------------- writes

    def write(self, points: Sequence[Point], rejected: Sequence[Rejected] = ()) -> None:
        """Store the batch in one transaction, fsynced before returning.

        Raises StoreError: retryable when the database is busy, the disk full or
        an I/O error occurred; not retryable when a value cannot be stored (NaN,
        infinity or a non-numeric value: a bug upstream, since the validator
        refuses those).
        """
        self._insert(self._rows(points, rejected), len(points), len(rejected))

    def _quarantine_rows(self, rejected: Sequence[Rejected]) -> list[tuple]:
        return [(t, quarantine_tag(r.reason), quarantine_tag(r.kind), stored_text(r.topic), stored_text(r.device),
                 stored_text(r.detail), stored_text(raw_text(r.raw)))
                for r, t in zip(rejected, quarantine_times(rejected))]

    def encode_columns(self, batch: ColumnBatch, rejected: Sequence[Rejected] = ()) -> SQLiteRows:
        """A bulk batch as the rows of one transaction (storage/sqlite_columns.py); StoreError for a bad value."""
        return self._rows(batch.extra, rejected, batch)

    def _rows(self, points: Sequence[Point], rejected: Sequence[Rejected], batch: ColumnBatch | None = None
              ) -> SQLiteRows:
        readings: dict = {}
        seen: dict[str, int] = {}
        try:
            if batch is not None:
                column_rows(batch, readings, seen)
            point_rows(points, self._floats, readings, seen)
        except ValueError as exc:
            raise StoreError(f"SQLite {self.path}: batch refused: {exc}", retryable=False) from exc
        return SQLiteRows(readings, seen, self._quarantine_rows(rejected))

    def write_columns(self, batch: ColumnBatch, rejected: Sequence[Rejected] = ()) -> None:
        """``write`` for a bulk batch, without a Point per reading; uses the rows encoded ahead if any."""
        rows = batch.encoded if isinstance(batch.encoded, SQLiteRows) else self.encode_columns(batch, rejected)
        self._insert(rows, len(batch), len(rejected))

    def _insert(self, rows: SQLiteRows, n_points: int, n_rejected: int) -> None:
        if not rows.readings and not rows.seen and not rows.quarantine:
            return
        conn = self._conn()
        with self._errors(f"write {n_points} points and {n_rejected} refusals to {self.path}"):
            conn.execute("BEGIN IMMEDIATE")
            try:
                for (kind, fields), kind_rows in rows.readings.items():
                    self._tables.ensure(conn, kind, fields)
                    insert_rows(conn, partial(self._tables.upsert, kind, fields), kind_rows)
                insert_rows(conn, _last_seen, list(rows.seen.items()))
                conn.executemany("INSERT OR REPLACE INTO quarantine VALUES (?, ?, ?, ?, ?, ?, ?)", rows.quarantine)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                self._tables.forget()  # what ensure() created is rolled back too
                raise

    # ---------------------------------------------------------------- reads

    def query(self, device: str, field: str, start_ns: int, end_ns: int,
              window_s: int | None = None, agg: str | None = None) -> list[tuple[int, Value]]:
        """See storage.base.Store.query."""
        dev, ftype = check_query(self.registry, device, field, start_ns, end_ns, window_s, agg)
        args = {"device": device, "start": start_ns, "end": end_ns}
        col, where = quote(field), _WHERE.format(col=quote(field))
        if window_s is None:
            sql = f"SELECT ts_ns, {col} FROM {table(dev.kind)} {where} ORDER BY ts_ns"
        else:
            sql = _AGG_SQL[agg].format(col=col, table=table(dev.kind), where=where)
            args["w"] = window_s * NS_PER_S
        with self._errors(f"query {device}.{field} in {self.path}"):
            result = self._conn().execute(sql, args).fetchall()
        return rows(result, value_caster(ftype, agg))

    def frame(self, kind: str, start_ns: int, end_ns: int, devices: Sequence[str] | None = None) -> Frame:
        """See storage.base.Store.frame: one query over the kind's table, rows read straight into numpy."""
        chosen, fields = check_frame(self.registry, kind, start_ns, end_ns, devices)
        if not chosen:
            return empty(fields)
        limit = self.max_rows + 1
        sql = _FRAME_SQL.format(cols="".join(f", r.{quote(f)}" for f in fields), table=table(kind),
                                any=" OR ".join(f"r.{quote(f)} IS NOT NULL" for f in fields))
        dtype = [("device", "i4"), ("ts", "i8"), ("arrived", "i8")] + [(f"f{j}", "f8") for j in range(len(fields))]
        args = {"devices": json.dumps(chosen), "start": start_ns, "end": end_ns, "limit": limit}
        with self._errors(f"read a frame of {kind} from {self.path}"):
            cur = self._conn().execute(sql, args)
            try:
                got = np.fromiter(cur, dtype=dtype)  # NULL (a field the reading did not carry) reads as NaN
            finally:
                cur.close()
        if got.size >= limit:
            raise too_many(kind, start_ns, end_ns, self.max_rows)
        return assemble(chosen, got["device"], got["ts"], got["arrived"],
                        {f: got[f"f{j}"] for j, f in enumerate(fields)})

    def last_seen(self) -> dict[str, int]:
        with self._errors(f"read last_seen from {self.path}"):
            return dict(self._conn().execute("SELECT device, ts_ns FROM last_seen").fetchall())

    def quarantined(self, start_ns: int, end_ns: int, limit: int = 1000) -> list[Rejected]:
        """See storage.base.Store.quarantined; text fields read back as in storage.line_protocol."""
        check_range(start_ns, end_ns)
        check_limit(limit)
        with self._errors(f"read the quarantine from {self.path}"):
            result = self._conn().execute(
                "SELECT arrived_ns, topic, reason, detail, raw, kind, device FROM quarantine "
                "WHERE arrived_ns >= ? AND arrived_ns < ? ORDER BY arrived_ns DESC LIMIT ?",
                (start_ns, end_ns, limit)).fetchall()
        return [Rejected(t, topic, reason, detail, raw.encode("utf-8"), kind_from_tag(kind, self.registry), device)
                for t, topic, reason, detail, raw, kind, device in result]

    def close(self) -> None:
        """Close every thread's connection; later calls raise StoreError."""
        self._closed = True
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()
