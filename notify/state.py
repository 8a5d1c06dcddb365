"""Delivery state, in the incidents SQLite database (own tables), so a restart neither resends nor forgets.

* ``notify_cursor``: the last incident event (``incident_events.id``) turned into deliveries;
* ``notify_deliveries``: one row per (change, channel): pending, sent, failed (gave up) with attempts,
  the next try and the last error; ``dedup`` makes enqueueing the same change twice a no-op;
* ``notify_messages``: what went out per channel and when, for the rate limit.

A message is marked sent after the far end accepted it: a crash in between sends
it once more (at least once); webhook receivers drop duplicates by
X-Fansipan-Delivery, which stays the same on a retry.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS notify_cursor (
    name TEXT PRIMARY KEY,
    last_event_id BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS notify_deliveries (
    id INTEGER PRIMARY KEY,
    dedup TEXT NOT NULL UNIQUE,
    incident_id INTEGER NOT NULL,
    channel TEXT NOT NULL,
    event TEXT NOT NULL,
    event_ts_ns BIGINT NOT NULL,
    rules TEXT NOT NULL,
    remind_s REAL,
    status TEXT NOT NULL,
    created_ns BIGINT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try_ns BIGINT NOT NULL,
    last_error TEXT,
    sent_ns BIGINT,
    message_id TEXT
);
CREATE INDEX IF NOT EXISTS notify_deliveries_by_status ON notify_deliveries (status, channel, next_try_ns);
CREATE INDEX IF NOT EXISTS notify_deliveries_by_incident ON notify_deliveries (incident_id, channel);
CREATE TABLE IF NOT EXISTS notify_messages (
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    sent_ns BIGINT NOT NULL,
    changes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS notify_messages_by_channel ON notify_messages (channel, sent_ns);
"""


@dataclass(frozen=True)
class Delivery:
    id: int
    incident_id: int
    channel: str
    event: str
    event_ts_ns: int
    created_ns: int
    attempts: int


class DeliveryState:
    def __init__(self, path: str | Path, busy_timeout_s: float = 10.0):
        self.path = str(path)
        self._db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def _tx(self):
        db = self._db

        class _Tx:
            def __enter__(self):
                db.execute("BEGIN IMMEDIATE")
                return db

            def __exit__(self, exc_type, exc, tb):
                db.execute("ROLLBACK" if exc_type else "COMMIT")
                return False

        return _Tx()

    # --- events -> deliveries -------------------------------------------------------------------

    def cursor(self, name: str = "notify") -> int | None:
        row = self._db.execute("SELECT last_event_id FROM notify_cursor WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def last_event_id(self) -> int:
        return self._db.execute("SELECT COALESCE(MAX(id), 0) FROM incident_events").fetchone()[0]

    def events_after(self, event_id: int, limit: int = 1000) -> list[tuple[int, int, int, str]]:
        """(event id, incident id, ts_ns, event), oldest first."""
        return self._db.execute("SELECT id, incident_id, ts_ns, event FROM incident_events WHERE id > ? "
                                "ORDER BY id LIMIT ?", (event_id, limit)).fetchall()

    def enqueue(self, rows: list[tuple], cursor: int | None, name: str = "notify") -> int:
        """Insert deliveries (dedup, incident_id, channel, event, event_ts_ns, rules, remind_s, now_ns) and move
        the cursor, in one transaction. Returns how many were new."""
        with self._tx() as db:
            before = db.total_changes
            db.executemany(
                "INSERT INTO notify_deliveries (dedup, incident_id, channel, event, event_ts_ns, rules, remind_s, "
                "status, created_ns, next_try_ns) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?) "
                "ON CONFLICT (dedup) DO NOTHING", [(*r, r[-1]) for r in rows])
            added = db.total_changes - before
            if cursor is not None:
                db.execute("INSERT INTO notify_cursor (name, last_event_id) VALUES (?, ?) ON CONFLICT (name) "
                           "DO UPDATE SET last_event_id = excluded.last_event_id", (name, cursor))
        return added

    def notified_channels(self, incident_id: int) -> list[str]:
        """Channels that were sent (or are about to send) something about this incident."""
        return [r[0] for r in self._db.execute(
            "SELECT DISTINCT channel FROM notify_deliveries WHERE incident_id = ? AND status IN ('pending', 'sent') "
            "AND event <> 'resolved' ORDER BY channel", (incident_id,))]

    def reminders_due(self, now_ns: int) -> list[tuple[int, str, float]]:
        """(incident id, channel, remind_s) for incidents still open and unacknowledged whose last message on
        the channel is older than its reminder period, with nothing pending there."""
        return self._db.execute(
            "SELECT d.incident_id, d.channel, MAX(d.remind_s) FROM notify_deliveries d "
            "JOIN incidents i ON i.id = d.incident_id WHERE i.status = 'open' AND d.status <> 'failed' "
            "GROUP BY d.incident_id, d.channel "
            "HAVING MAX(d.remind_s) IS NOT NULL AND SUM(CASE WHEN d.status = 'pending' THEN 1 ELSE 0 END) = 0 "
            "AND ? - MAX(COALESCE(d.sent_ns, d.created_ns)) >= MAX(d.remind_s) * 1000000000",
            (now_ns,)).fetchall()

    # --- sending --------------------------------------------------------------------------------

    def ready(self, channel: str, now_ns: int) -> list[Delivery]:
        return [Delivery(*r) for r in self._db.execute(
            "SELECT id, incident_id, channel, event, event_ts_ns, created_ns, attempts FROM notify_deliveries "
            "WHERE status = 'pending' AND channel = ? AND next_try_ns <= ? ORDER BY id", (channel, now_ns))]

    def pending_count(self, channel: str | None = None) -> int:
        q, args = "SELECT COUNT(*) FROM notify_deliveries WHERE status = 'pending'", ()
        if channel is not None:
            q, args = q + " AND channel = ?", (channel,)
        return self._db.execute(q, args).fetchone()[0]

    def sent_since(self, channel: str, since_ns: int) -> int:
        return self._db.execute("SELECT COUNT(*) FROM notify_messages WHERE channel = ? AND sent_ns > ?",
                                (channel, since_ns)).fetchone()[0]

    def mark_sent(self, ids: list[int], channel: str, message_id: str, now_ns: int) -> None:
        with self._tx() as db:
            db.executemany("UPDATE notify_deliveries SET status = 'sent', sent_ns = ?, message_id = ?, last_error = NULL "
                           "WHERE id = ?", [(now_ns, message_id, i) for i in ids])
            db.execute("INSERT INTO notify_messages (id, channel, sent_ns, changes) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (id) DO NOTHING", (message_id, channel, now_ns, len(ids)))

    def mark_failed_attempt(self, ids: list[int], error: str, next_try_ns: int, give_up: bool) -> None:
        with self._tx() as db:
            db.executemany("UPDATE notify_deliveries SET attempts = attempts + 1, last_error = ?, next_try_ns = ?, "
                           "status = ? WHERE id = ?",
                           [(error[:500], next_try_ns, "failed" if give_up else "pending", i) for i in ids])

    def deliveries(self) -> list[tuple]:
        """Every delivery (id, incident_id, channel, event, status, attempts, last_error), for tests and inspection."""
        return self._db.execute("SELECT id, incident_id, channel, event, status, attempts, last_error "
                                "FROM notify_deliveries ORDER BY id").fetchall()
