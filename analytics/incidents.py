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

SQL is plain (parameters, a partial unique index, no SQLite-only functions), so
PostgreSQL can take over; the connection factory is the one place to change.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

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
"""


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


_COLS = ("id, key, kind, severity, status, title, cause, site, district, device, started_ns, last_active_ns, "
         "resolved_ns, acknowledged_by, evidence")


class IncidentStore:
    def __init__(self, path: str | Path, clear_hold_s: float = 60.0, reopen_s: float = 300.0):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.clear_hold_ns = int(clear_hold_s * 1e9)
        self.reopen_ns = int(reopen_s * 1e9)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # --- reading --------------------------------------------------------------------------------

    def _rows(self, where: str, args: tuple) -> list[Incident]:
        rows = self._db.execute(f"SELECT {_COLS} FROM incidents WHERE {where} ORDER BY started_ns, id", args).fetchall()
        out = []
        for r in rows:
            members = tuple(self._db.execute("SELECT device, role FROM incident_devices WHERE incident_id = ? ORDER BY device",
                                             (r[0],)).fetchall())
            out.append(Incident(*r[:14], json.loads(r[14]), members))
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
        return self._db.execute(q + " ORDER BY id", args).fetchall()

    # --- operator actions -----------------------------------------------------------------------

    def acknowledge(self, incident_id: int, who: str, now_ns: int, comment: str = "") -> None:
        with self._lock, self._tx():
            cur = self._db.execute("UPDATE incidents SET status = 'acknowledged', acknowledged_by = ? "
                                   "WHERE id = ? AND status = 'open'", (who, incident_id))
            if cur.rowcount != 1:
                raise ValueError(f"incident {incident_id} is not open (already acknowledged, resolved, or unknown)")
            self._event(incident_id, now_ns, "acknowledged", f"{who}: {comment}".strip(": "))

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
