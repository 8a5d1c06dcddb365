"""Incidents: relational state with a lifecycle (open -> acknowledged -> resolved).

One open incident per *key* (for example ``silence:yty-router`` or
``limit:dc-srv-03:inlet_temp_c``): the detector reports conditions every cycle and
:meth:`IncidentStore.reconcile` turns them into incidents, deduplicated, with flap
damping:

* a condition opens an incident at once (the detectors already apply their own
  minimum durations), with the time the condition started, not the time it was
  noticed;
* an incident resolves only after its condition has been absent for
  ``clear_hold_s``; a condition that comes back within ``reopen_s`` of the
  resolution reopens the same incident instead of paging again;
* severity can escalate while open, never silently drop;
* silence incidents resolve only when the device is heard from again: the
  condition is "no report since T", so a vanished series cannot look healthy.

Operators act on incidents through the API: acknowledge, assign, resolve (an
incident resolved by hand while its condition persists is reopened by the next
detection cycle, as a flap would be), and comment.  The detector records a
heartbeat every cycle, so the API can tell how far behind it is.

SQL is plain (parameters, a partial unique index, no SQLite-only functions), so
PostgreSQL can take over; the connection factory is the one place to change.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from storage.sqlite_schema import add_columns

SEVERITIES = ("info", "warning", "critical")
STATUSES = ("open", "acknowledged", "resolved")

SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    title TEXT NOT NULL,
    cause TEXT NOT NULL,
    site TEXT NOT NULL,
    district TEXT NOT NULL,
    device TEXT NOT NULL,
    started_ns BIGINT NOT NULL,
    last_active_ns BIGINT NOT NULL,
    resolved_ns BIGINT,
    acknowledged_by TEXT,
    evidence TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS incidents_one_open_per_key ON incidents (key) WHERE status <> 'resolved';
CREATE INDEX IF NOT EXISTS incidents_by_status ON incidents (status, started_ns);
CREATE TABLE IF NOT EXISTS incident_devices (
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    device TEXT NOT NULL,
    role TEXT NOT NULL,
    PRIMARY KEY (incident_id, device)
);
CREATE TABLE IF NOT EXISTS incident_events (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    ts_ns BIGINT NOT NULL,
    event TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS incident_comments (
    id INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents (id),
    ts_ns BIGINT NOT NULL,
    author TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS detector_heartbeat (
    name TEXT PRIMARY KEY,
    ts_ns BIGINT NOT NULL,
    beats BIGINT NOT NULL
);
"""

# Columns added after the first release: created on older files by ALTER TABLE (portable SQL).
ADDED_COLUMNS = (("assignee", "TEXT"), ("resolved_by", "TEXT"))


@dataclass(frozen=True)
class Condition:
    """Something a detector finds true right now; the raw material of incidents."""

    key: str  # dedup key: one open incident per key
    kind: str  # silence | uplink_down | power_loss | limit | anomaly | stuck | drift | peer | multivariate
    severity: str
    title: str
    cause: str
    site: str
    district: str
    device: str  # the device at fault (the root, for topology incidents)
    started_ns: int  # when the condition began, by measurement time
    evidence: dict = field(default_factory=dict)
    members: tuple[tuple[str, str], ...] = ()  # (device, role): "unreachable (inferred)" children


@dataclass(frozen=True)
class Incident:
    id: int
    key: str
    kind: str
    severity: str
    status: str
    title: str
    cause: str
    site: str
    district: str
    device: str
    started_ns: int
    last_active_ns: int
    resolved_ns: int | None
    acknowledged_by: str | None
    evidence: dict
    members: tuple[tuple[str, str], ...] = ()
    assignee: str | None = None
    resolved_by: str | None = None  # who resolved it by hand; None when the detector saw it clear


@dataclass(frozen=True)
class Comment:
    id: int
    incident_id: int
    ts_ns: int
    author: str
    body: str


class IncidentStateError(ValueError):
    """An operator action that the incident's current status does not allow (resolving a resolved one...)."""


_COLS = ("id, key, kind, severity, status, title, cause, site, district, device, started_ns, last_active_ns, "
         "resolved_ns, acknowledged_by, evidence, assignee, resolved_by")


class IncidentStore:
    def __init__(self, path: str | Path, clear_hold_s: float = 60.0, reopen_s: float = 300.0):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.clear_hold_ns = int(clear_hold_s * 1e9)
        self.reopen_ns = int(reopen_s * 1e9)
        # Re-entrant: reconcile() reads while it holds the lock. Reads take it too, because the API shares
        # this one connection between request threads and must not read inside another thread's transaction.
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        add_columns(self._db, "incidents", ADDED_COLUMNS)  # another process (API, detector) may add them first

    def close(self) -> None:
        self._db.close()

    # --- reading --------------------------------------------------------------------------------

    def _rows(self, where: str, args: tuple, tail: str = "", order: str = "started_ns, id") -> list[Incident]:
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLS} FROM incidents WHERE {where} ORDER BY {order}{tail}",
                                    args).fetchall()
            out = []
            for r in rows:
                members = tuple(self._db.execute(
                    "SELECT device, role FROM incident_devices WHERE incident_id = ? ORDER BY device", (r[0],)).fetchall())
                out.append(Incident(*r[:14], json.loads(r[14]), members, assignee=r[15], resolved_by=r[16]))
        return out

    def open_incidents(self) -> list[Incident]:
        return self._rows("status <> 'resolved'", ())

    def all(self) -> list[Incident]:
        return self._rows("1 = 1", ())

    def get(self, incident_id: int) -> Incident | None:
        rows = self._rows("id = ?", (incident_id,))
        return rows[0] if rows else None

    def events(self, incident_id: int | None = None) -> list[tuple[int, int, str, str]]:
        """(incident id, ts_ns, event, detail), oldest first."""
        q = "SELECT incident_id, ts_ns, event, detail FROM incident_events"
        args: tuple = ()
        if incident_id is not None:
            q, args = q + " WHERE incident_id = ?", (incident_id,)
        with self._lock:
            return self._db.execute(q + " ORDER BY id", args).fetchall()

    def find(self, *, status: str | None = None, kind: str | None = None, severity: str | None = None,
             site: str | None = None, district: str | None = None, since_ns: int | None = None,
             limit: int = 100, offset: int = 0) -> tuple[list[Incident], int]:
        """Incidents matching every filter given, newest first, and how many match in all.

        ``status`` is one of STATUSES or ``active`` (open or acknowledged); ``since_ns``
        keeps the incidents active at any time since then (still active, or resolved after it).
        """
        where, args = ["1 = 1"], []
        if status == "active":
            where.append("status <> 'resolved'")
        elif status is not None:
            where.append("status = ?")
            args.append(status)
        for col, value in (("kind", kind), ("severity", severity), ("site", site), ("district", district)):
            if value is not None:
                where.append(f"{col} = ?")
                args.append(value)
        if since_ns is not None:
            where.append("(resolved_ns IS NULL OR resolved_ns >= ?)")
            args.append(since_ns)
        cond = " AND ".join(where)
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM incidents WHERE {cond}", tuple(args)).fetchone()[0]
            return self._rows(cond, (*args, limit, offset), " LIMIT ? OFFSET ?", "started_ns DESC, id DESC"), total

    def comments(self, incident_id: int) -> list[Comment]:
        with self._lock:
            rows = self._db.execute("SELECT id, incident_id, ts_ns, author, body FROM incident_comments "
                                    "WHERE incident_id = ? ORDER BY id", (incident_id,)).fetchall()
        return [Comment(*r) for r in rows]

    def last_heartbeat(self, name: str = "detector") -> tuple[int, int] | None:
        """(wall time ns of the last beat, beats so far) of ``name``, or None if it never beat."""
        with self._lock:
            row = self._db.execute("SELECT ts_ns, beats FROM detector_heartbeat WHERE name = ?", (name,)).fetchone()
        return (row[0], row[1]) if row else None

    # --- operator actions -----------------------------------------------------------------------

    def acknowledge(self, incident_id: int, who: str, now_ns: int, comment: str = "") -> None:
        with self._lock, self._tx():
            cur = self._db.execute("UPDATE incidents SET status = 'acknowledged', acknowledged_by = ? "
                                   "WHERE id = ? AND status = 'open'", (who, incident_id))
            if cur.rowcount != 1:
                raise IncidentStateError(
                    f"incident {incident_id} is not open (already acknowledged, resolved, or unknown)")
            self._event(incident_id, now_ns, "acknowledged", f"{who}: {comment}".strip(": "))

    def assign(self, incident_id: int, assignee: str, who: str, now_ns: int) -> None:
        """Hand an open or acknowledged incident to ``assignee`` (reassigning is allowed)."""
        with self._lock, self._tx():
            cur = self._db.execute("UPDATE incidents SET assignee = ? WHERE id = ? AND status <> 'resolved'",
                                   (assignee, incident_id))
            if cur.rowcount != 1:
                raise IncidentStateError(f"incident {incident_id} is resolved or unknown: nothing to assign")
            self._event(incident_id, now_ns, "assigned", f"{who}: assigned to {assignee}")

    def resolve(self, incident_id: int, who: str, now_ns: int, comment: str = "") -> None:
        """Resolve by hand. If the condition persists, the detector reopens it (see the module docstring)."""
        with self._lock, self._tx():
            cur = self._db.execute("UPDATE incidents SET status = 'resolved', resolved_ns = ?, resolved_by = ? "
                                   "WHERE id = ? AND status <> 'resolved'", (now_ns, who, incident_id))
            if cur.rowcount != 1:
                raise IncidentStateError(f"incident {incident_id} is already resolved, or unknown")
            self._event(incident_id, now_ns, "resolved", f"by {who}: {comment}".rstrip(": "))

    def comment(self, incident_id: int, author: str, body: str, now_ns: int) -> Comment:
        with self._lock, self._tx():
            if self._db.execute("SELECT 1 FROM incidents WHERE id = ?", (incident_id,)).fetchone() is None:
                raise IncidentStateError(f"incident {incident_id} does not exist")
            cur = self._db.execute("INSERT INTO incident_comments (incident_id, ts_ns, author, body) VALUES (?, ?, ?, ?)",
                                   (incident_id, now_ns, author, body))
            comment_id = cur.lastrowid
        return Comment(comment_id, incident_id, now_ns, author, body)

    def heartbeat(self, name: str = "detector", now_ns: int | None = None) -> None:
        """Record that ``name`` finished a cycle, by the wall clock (even when it detects on simulated
        time), so the API's detector-lag metric measures real staleness."""
        ts = time.time_ns() if now_ns is None else now_ns
        with self._lock, self._tx():
            self._db.execute("INSERT INTO detector_heartbeat (name, ts_ns, beats) VALUES (?, ?, 1) "
                             "ON CONFLICT (name) DO UPDATE SET ts_ns = excluded.ts_ns, "
                             "beats = detector_heartbeat.beats + 1", (name, ts))

    # --- the detector's side --------------------------------------------------------------------

    def reconcile(self, conditions: Iterable[Condition], now_ns: int) -> list[tuple[str, Incident]]:
        """Apply this cycle's conditions; return the changes as (event, incident) pairs.

        Events: opened, reopened, escalated, updated (members changed), resolved.
        """
        conds = {}
        for c in conditions:
            if c.severity not in SEVERITIES:
                raise ValueError(f"condition {c.key}: severity {c.severity!r} is not one of {SEVERITIES}")
            prev = conds.get(c.key)
            if prev is None or SEVERITIES.index(c.severity) > SEVERITIES.index(prev.severity):
                conds[c.key] = c
        changes: list[tuple[str, int]] = []
        with self._lock, self._tx():
            open_by_key = {i.key: i for i in self.open_incidents()}
            for key, c in conds.items():
                inc = open_by_key.get(key)
                if inc is None:
                    changes.append(self._open_or_reopen(c, now_ns))
                    continue
                self._db.execute("UPDATE incidents SET last_active_ns = ?, evidence = ?, title = ?, cause = ?, kind = ? "
                                 "WHERE id = ?", (now_ns, json.dumps(c.evidence, default=str), c.title, c.cause, c.kind, inc.id))
                if SEVERITIES.index(c.severity) > SEVERITIES.index(inc.severity):
                    self._db.execute("UPDATE incidents SET severity = ? WHERE id = ?", (c.severity, inc.id))
                    self._event(inc.id, now_ns, "escalated", f"{inc.severity} -> {c.severity}: {c.title}")
                    changes.append(("escalated", inc.id))
                if set(c.members) != set(inc.members):
                    self._set_members(inc.id, c.members)
                    changes.append(("updated", inc.id))
            for key, inc in open_by_key.items():
                if key not in conds and now_ns - inc.last_active_ns >= self.clear_hold_ns:
                    self._db.execute("UPDATE incidents SET status = 'resolved', resolved_ns = ? WHERE id = ?",
                                     (inc.last_active_ns, inc.id))
                    self._event(inc.id, now_ns, "resolved", f"condition clear since {inc.last_active_ns}")
                    changes.append(("resolved", inc.id))
        return [(ev, self.get(i)) for ev, i in changes]

    def amend_resolution(self, incident_id: int, resolved_ns: int, evidence: dict, now_ns: int, event: str,
                         detail: str) -> Incident | None:
        """Correct when a resolved incident really ended, from data that arrived late (analytics/backfill.py).

        Merges ``evidence`` into the incident's and records ``event``; pages nobody and opens nothing.
        Returns the amended incident, or None if it is not resolved (any more).
        """
        with self._lock, self._tx():
            row = self._db.execute("SELECT evidence FROM incidents WHERE id = ? AND status = 'resolved'",
                                   (incident_id,)).fetchone()
            if row is None:
                return None
            merged = {**json.loads(row[0]), **evidence}
            self._db.execute("UPDATE incidents SET resolved_ns = ?, evidence = ? WHERE id = ?",
                             (resolved_ns, json.dumps(merged, default=str), incident_id))
            self._event(incident_id, now_ns, event, detail)
        return self.get(incident_id)

    def _open_or_reopen(self, c: Condition, now_ns: int) -> tuple[str, int]:
        recent = self._db.execute(
            "SELECT id FROM incidents WHERE key = ? AND status = 'resolved' AND resolved_ns >= ? ORDER BY resolved_ns DESC LIMIT 1",
            (c.key, now_ns - self.reopen_ns)).fetchone()
        if recent is not None:  # flapping: the same incident comes back, nobody is paged twice
            self._db.execute("UPDATE incidents SET status = 'open', resolved_ns = NULL, last_active_ns = ?, severity = ? "
                             "WHERE id = ?", (now_ns, c.severity, recent[0]))
            self._set_members(recent[0], c.members)
            self._event(recent[0], now_ns, "reopened", c.title)
            return "reopened", recent[0]
        cur = self._db.execute(
            "INSERT INTO incidents (key, kind, severity, status, title, cause, site, district, device, started_ns, "
            "last_active_ns, evidence) VALUES (?, ?, ?, 'open', ?, ?, ?, ?, ?, ?, ?, ?)",
            (c.key, c.kind, c.severity, c.title, c.cause, c.site, c.district, c.device, c.started_ns, now_ns,
             json.dumps(c.evidence, default=str)))
        self._set_members(cur.lastrowid, c.members)
        self._event(cur.lastrowid, now_ns, "opened", c.title)
        return "opened", cur.lastrowid

    def _set_members(self, incident_id: int, members) -> None:
        self._db.execute("DELETE FROM incident_devices WHERE incident_id = ?", (incident_id,))
        self._db.executemany("INSERT INTO incident_devices (incident_id, device, role) VALUES (?, ?, ?)",
                             [(incident_id, d, role) for d, role in members])

    def _event(self, incident_id: int, ts_ns: int, event: str, detail: str) -> None:
        self._db.execute("INSERT INTO incident_events (incident_id, ts_ns, event, detail) VALUES (?, ?, ?, ?)",
                         (incident_id, ts_ns, event, detail))

    def _tx(self):
        db = self._db

        class _Tx:
            def __enter__(self):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type, exc, tb):
                db.execute("ROLLBACK" if exc_type else "COMMIT")
                return False

        return _Tx()
