"""The embedded store's rows: one a reading, in the table of its kind (storage/sqlite_schema.py).

From a :class:`~storage.columns.ColumnBatch` (the bulk path: straight from the
columns, no Point per reading, encoded on the collector's validating thread,
see ingest.delivery.prepare) and from Points (``SQLiteStore.write``).  Both
give the same rows for the same readings: float fields as REAL, int and bool
fields as INTEGER, a field the reading did not carry as NULL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .base import Point
from .columns import ColumnBatch
from .line_protocol import to_number

Group = tuple[str, tuple[str, ...]]  # (kind, fields): the rows' table and the field columns they fill


@dataclass
class SQLiteRows:
    """What one transaction inserts: reading rows by table and columns, last-seen times, quarantine rows."""

    readings: dict[Group, list[tuple]]
    seen: dict[str, int]
    quarantine: list[tuple]


def _saw(seen: dict[str, int], devices: list[str], ts: list[int]) -> None:
    for d, t in zip(devices, ts):
        if seen.get(d, -1 << 63) < t:
            seen[d] = t


def column_rows(batch: ColumnBatch, out: dict[Group, list[tuple]], seen: dict[str, int]) -> None:
    """(device, ts_ns, arrived_ms, *values) rows of the batch's columns into ``out``; device -> newest ts_ns."""
    ids = np.array(batch.table.ids, dtype=object)
    for kc in batch.kinds:
        if not len(kc):
            continue
        columns = []
        for j, ty in enumerate(kc.types):
            col = (kc.values[:, j] if ty == "float" else kc.values[:, j].astype(np.int64)).astype(object)
            col[~kc.present[:, j]] = None
            columns.append(col.tolist())
        out.setdefault((kc.kind, tuple(kc.fields)), []).extend(
            zip(ids[kc.device_idx].tolist(), kc.ts_ns.tolist(), (kc.arrived_ns // 1_000_000).tolist(), *columns))
        order = np.lexsort((kc.ts_ns, kc.device_idx))  # per device, its newest time last: one entry a device
        newest = order[np.r_[kc.device_idx[order][1:] != kc.device_idx[order][:-1], True]]
        _saw(seen, ids[kc.device_idx[newest]].tolist(), kc.ts_ns[newest].tolist())


def point_rows(points: Sequence[Point], floats: dict[str, frozenset[str]], out: dict[Group, list[tuple]],
               seen: dict[str, int]) -> None:
    """The same rows from Points; ValueError for a value no store can keep (NaN, infinity, not a number)."""
    for p in points:
        values = []
        kind_floats = floats.get(p.kind, ())
        for name, v in p.fields.items():
            t = type(v)
            if t is float:
                if v - v != 0.0:
                    raise ValueError(f"{p.kind} {p.device} field {name!r} is {v!r}: not a finite number")
            elif t is int:
                v = float(v) if name in kind_floats else v
            elif t is bool:
                v = int(v)
            else:
                v = to_number(v, name in kind_floats, f"{p.kind} {p.device} field {name!r}")
            values.append(v)
        ts = int(p.ts_ns)
        out.setdefault((p.kind, tuple(p.fields)), []).append((p.device, ts, int(p.arrived_ns) // 1_000_000, *values))
        if seen.get(p.device, -1 << 63) < ts:
            seen[p.device] = ts
