"""The collector's store-and-forward spool: accepted batches on local disk until the store has them.

A SQLite file in WAL mode with ``synchronous=FULL``: when :meth:`Spool.put`
returns, the batch survives a crash or a power cut, so the collector may
acknowledge its MQTT messages.  Batches leave in the order they came
(:meth:`oldest`, then :meth:`delete` once the store has them), so the store
receives a replay in time order.

The spool is bounded by ``max_bytes``; :meth:`put` raises :class:`SpoolFull`
past it, or when the disk itself is full, and the collector then stops
acknowledging (backpressure: the broker keeps the messages) instead of
dropping anything.
"""

from __future__ import annotations

import base64
import sqlite3
import threading
import time
from pathlib import Path

import orjson

from storage.base import Point, Rejected


class SpoolFull(Exception):
    """The spool is at its size limit, or the disk under it is full."""


def _encode(points, rejected) -> bytes:
    return orjson.dumps({
        "p": [list(p) for p in points],
        "r": [[r.arrived_ns, r.topic, r.reason, r.detail, base64.b64encode(r.raw).decode(), r.kind, r.device] for r in rejected],
    })


def _decode(blob: bytes) -> tuple[list[Point], list[Rejected]]:
    doc = orjson.loads(blob)
    points = [Point(*p) for p in doc["p"]]
    rejected = [Rejected(a, t, reason, d, base64.b64decode(raw), k, dev) for a, t, reason, d, raw, k, dev in doc["r"]]
    return points, rejected


class Spool:
    def __init__(self, path: str | Path, max_bytes: int):
        if max_bytes <= 0:
            raise ValueError(f"spool size must be > 0 bytes, got {max_bytes}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("CREATE TABLE IF NOT EXISTS batches (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                         "created_ns INTEGER NOT NULL, readings INTEGER NOT NULL, bytes INTEGER NOT NULL, body BLOB NOT NULL)")
        self._bytes, self._count, self._readings = self._totals()

    def _totals(self) -> tuple[int, int, int]:
        row = self._db.execute("SELECT COALESCE(SUM(bytes), 0), COUNT(*), COALESCE(SUM(readings), 0) FROM batches").fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    def put(self, points, rejected) -> int:
        """Store a batch durably; returns its id. Raises SpoolFull (size limit or disk full)."""
        body = _encode(points, rejected)
        with self._lock:
            if self._bytes + len(body) > self.max_bytes:
                raise SpoolFull(f"spool {self.path} is full: {self._bytes:,} of {self.max_bytes:,} bytes "
                                f"({self._count} batches waiting for the store)")
            try:
                cur = self._db.execute("INSERT INTO batches (created_ns, readings, bytes, body) VALUES (?, ?, ?, ?)",
                                       (time.time_ns(), len(points) + len(rejected), len(body), body))
            except sqlite3.OperationalError as exc:  # "database or disk is full", an unwritable file...
                raise SpoolFull(f"cannot write to the spool {self.path}: {exc}") from exc
            self._bytes += len(body)
            self._count += 1
            self._readings += len(points) + len(rejected)
            return int(cur.lastrowid)

    def oldest(self) -> tuple[int, list[Point], list[Rejected]] | None:
        with self._lock:
            row = self._db.execute("SELECT id, body FROM batches ORDER BY id LIMIT 1").fetchone()
        if row is None:
            return None
        return (int(row[0]), *_decode(row[1]))

    def delete(self, batch_id: int) -> None:
        with self._lock:
            row = self._db.execute("SELECT bytes, readings FROM batches WHERE id = ?", (batch_id,)).fetchone()
            if row is None:
                return
            self._db.execute("DELETE FROM batches WHERE id = ?", (batch_id,))
            self._bytes -= int(row[0])
            self._readings -= int(row[1])
            self._count -= 1

    def stats(self) -> dict:
        """Size and age, for the collector's metrics and alarms."""
        with self._lock:
            row = self._db.execute("SELECT MIN(created_ns) FROM batches").fetchone()
            age = (time.time_ns() - row[0]) / 1e9 if row and row[0] else 0.0
            return {"batches": self._count, "readings": self._readings, "bytes": self._bytes,
                    "fill": self._bytes / self.max_bytes, "oldest_age_s": age}

    def __len__(self) -> int:
        return self._count

    def close(self) -> None:
        self._db.close()
