"""The embedded store's bulk write: rows for SQLite straight from a ColumnBatch, no Point per reading.

:class:`SQLiteStore` takes a :class:`~storage.columns.ColumnBatch` through
``encode_columns`` (on the collector's validating thread, see
ingest.delivery.prepare) and ``write_columns`` (one transaction, as ``write``).
The rows are those ``write`` would insert for the same readings: one row a
field, float fields as REAL, int and bool fields as INTEGER, ``arrived_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat

import numpy as np

from .base import Rejected
from .columns import ColumnBatch


@dataclass
class SQLiteRows:
    """What one transaction inserts: readings, last-seen times, quarantine rows."""

    readings: list[tuple]
    seen: dict[str, int]
    quarantine: list[tuple]


def reading_rows(batch: ColumnBatch) -> tuple[list[tuple], dict[str, int]]:
    """(device, field, ts_ns, value, arrived_ms) rows of the batch's columns, and device -> newest ts_ns."""
    ids = np.array(batch.table.ids, dtype=object)
    rows: list[tuple] = []
    seen: dict[str, int] = {}
    for kc in batch.kinds:
        if not len(kc):
            continue
        devs = ids[kc.device_idx]
        arrived_ms = kc.arrived_ns // 1_000_000
        for j, (name, ty) in enumerate(zip(kc.fields, kc.types)):
            m = kc.present[:, j]
            if not m.any():
                continue
            vals = kc.values[m, j]
            vals = vals.astype(np.int64).tolist() if ty != "float" else vals.tolist()
            rows.extend(zip(devs[m].tolist(), repeat(name), kc.ts_ns[m].tolist(), vals, arrived_ms[m].tolist()))
        order = np.lexsort((kc.ts_ns, kc.device_idx))  # per device, its newest time last
        last = np.r_[kc.device_idx[order][1:] != kc.device_idx[order][:-1], True]
        for d, ts in zip(devs[order][last].tolist(), kc.ts_ns[order][last].tolist()):
            if seen.get(d, -1 << 63) < ts:
                seen[d] = ts
    return rows, seen


def encode(store, batch: ColumnBatch, rejected: list[Rejected]) -> SQLiteRows:
    """The batch (columns and the readings it carries as Points) and ``rejected`` as rows for ``store``."""
    readings, seen = reading_rows(batch)
    readings += store._reading_rows(batch.extra)
    for p in batch.extra:
        if seen.get(p.device, -1 << 63) < p.ts_ns:
            seen[p.device] = int(p.ts_ns)
    return SQLiteRows(readings, seen, store._quarantine_rows(rejected))
