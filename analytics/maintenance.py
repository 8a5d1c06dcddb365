"""Planned maintenance windows: declared by operators, excluded from availability.

A window covers either one site (and every site under it: a district's window
covers its communes) or one device, from ``start_ns`` to ``end_ns`` (epoch ns,
end exclusive), with a reason.  Windows live in their own table of the incidents
database (the relational state, see DESIGN.md), so the API, the detector and the
report read the same file.  Cancelling a window deletes it: a window that was
never worked in should not excuse downtime after the fact.

SQL is plain (parameters, no SQLite-only functions), as in analytics/incidents.py.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from device_profiles import Registry

SCHEMA = """
CREATE TABLE IF NOT EXISTS maintenance_windows (
    id INTEGER PRIMARY KEY,
    site TEXT,
    device TEXT,
    start_ns BIGINT NOT NULL,
    end_ns BIGINT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_ns BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS maintenance_by_time ON maintenance_windows (start_ns, end_ns);
"""

MAX_WINDOW_NS = 31 * 86_400 * 10**9  # a longer "maintenance" is a decommissioning, not planned work


class MaintenanceError(ValueError):
    """A window that cannot be stored; the message names the field at fault and what to do."""


@dataclass(frozen=True)
class Window:
    id: int
    site: str | None
    device: str | None
    start_ns: int
    end_ns: int
    reason: str
    created_by: str
    created_ns: int


def check_window(registry: Registry, site: str | None, device: str | None, start_ns: int, end_ns: int,
                 reason: str) -> None:
    """Raise MaintenanceError naming the field at fault; return None when the window is valid."""
    if (site is None) == (device is None):
        raise MaintenanceError("site/device: give exactly one: a site id (the window covers every device there "
                               "and in the sites under it) or a device id")
    if site is not None and site not in registry.sites:
        raise MaintenanceError(f"site: unknown site {site!r}; GET /api/v1/sites lists the ids")
    if device is not None and device not in registry.devices:
        raise MaintenanceError(f"device: unknown device {device!r}; GET /api/v1/devices lists the ids")
    if end_ns <= start_ns:
        raise MaintenanceError("end: the window must end after it starts")
    if end_ns - start_ns > MAX_WINDOW_NS:
        raise MaintenanceError("end: a window may last at most 31 days; declare longer work month by month, "
                               "or remove the device from the registry if it is decommissioned")
    if not reason.strip():
        raise MaintenanceError("reason: say what the planned work is (it is printed in the monthly report)")


class MaintenanceStore:
    """The maintenance windows table, in the incidents database at ``path``."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # the API shares this connection between request threads
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def add(self, registry: Registry, *, site: str | None, device: str | None, start_ns: int, end_ns: int,
            reason: str, created_by: str, now_ns: int) -> Window:
        check_window(registry, site, device, start_ns, end_ns, reason)
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO maintenance_windows (site, device, start_ns, end_ns, reason, created_by, created_ns) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (site, device, start_ns, end_ns, reason.strip(), created_by, now_ns))
            return Window(cur.lastrowid, site, device, start_ns, end_ns, reason.strip(), created_by, now_ns)

    def get(self, window_id: int) -> Window | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_COLS} FROM maintenance_windows WHERE id = ?", (window_id,)).fetchone()
        return Window(*row) if row else None

    def overlapping(self, start_ns: int, end_ns: int) -> list[Window]:
        """Windows with any part inside [start_ns, end_ns), oldest first."""
        with self._lock:
            rows = self._db.execute(f"SELECT {_COLS} FROM maintenance_windows WHERE start_ns < ? AND end_ns > ? "
                                    "ORDER BY start_ns, id", (end_ns, start_ns)).fetchall()
        return [Window(*r) for r in rows]

    def delete(self, window_id: int) -> bool:
        """Cancel a window; False if there was none with that id."""
        with self._lock:
            return self._db.execute("DELETE FROM maintenance_windows WHERE id = ?", (window_id,)).rowcount == 1


_COLS = "id, site, device, start_ns, end_ns, reason, created_by, created_ns"
