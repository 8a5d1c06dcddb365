"""What every store's :meth:`frame` shares: the checks, the row bound and the numpy assembly.

* :func:`check_frame` refuses a bulk read before any SQL, InfluxQL or
  selector is built: the kind must be in the registry, every device asked for
  registered and of that kind, the range non-empty.  It returns the devices
  to read (sorted) and the kind's fields (profile order).
* :func:`assemble` turns wide rows (one per reading, any order: SQLite, InfluxDB)
  into a :class:`~storage.base.Frame`; :func:`pivot` does the same for long rows
  (one per reading and field, as VictoriaMetrics keeps them).
* :func:`too_many` is the QueryError for a frame over the ``max_rows`` bound.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .base import Frame, QueryError
from .common import check_range

if TYPE_CHECKING:  # pragma: no cover
    from device_profiles.loader import Registry

MAX_ROWS = 5_000_000  # default bound on the readings one frame() returns (about 100 MB with 10 fields)


def check_max_rows(max_rows: int) -> int:
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise ValueError(f"max_rows must be a positive integer, got {max_rows!r}")
    return max_rows


def check_frame(registry: Registry, kind: str, start_ns: int, end_ns: int,
                devices: Sequence[str] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Validate a frame() call; return (devices to read, sorted and distinct; the kind's fields)."""
    profile = registry.kinds.get(kind) if isinstance(kind, str) else None
    if profile is None:
        raise QueryError(f"unknown kind {kind!r}: the registry ({registry.source}) has "
                         f"{', '.join(sorted(registry.kinds)) or 'no kinds'}")
    if devices is None:
        chosen = {d.id for d in registry.devices_of(kind)}
    else:
        if isinstance(devices, (str, bytes)):
            raise QueryError(f"devices must be a sequence of device ids, not the single string {devices!r}")
        chosen = set()
        for device in devices:
            dev = registry.devices.get(device) if isinstance(device, str) else None
            if dev is None:
                raise QueryError(f"unknown device {device!r}: it is not in the site registry ({registry.source})")
            if dev.kind != kind:
                raise QueryError(f"device {device!r} is of kind {dev.kind!r}, not {kind!r}")
            chosen.add(device)
    check_range(start_ns, end_ns)
    return tuple(sorted(chosen)), tuple(profile.fields)


def too_many(kind: str, start_ns: int, end_ns: int, max_rows: int) -> QueryError:
    return QueryError(f"frame({kind!r}, {start_ns}, {end_ns}) would return more than max_rows={max_rows} readings: "
                      "narrow the time range (or ask for fewer devices) and read it in parts")


def empty(fields: Sequence[str]) -> Frame:
    return Frame((), np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.int64),
                 {f: np.empty(0, np.float64) for f in fields})


def _finish(devices: Sequence[str], dev: np.ndarray, ts: np.ndarray, arrived: np.ndarray,
            values: dict[str, np.ndarray]) -> Frame:
    """Rows already sorted by (dev, ts), dev indexing the sorted ``devices``: keep only the devices present."""
    present, idx = np.unique(dev, return_inverse=True)
    return Frame(tuple(devices[i] for i in present.tolist()), idx.astype(np.int32).reshape(-1),
                 ts.astype(np.int64, copy=False), arrived.astype(np.int64, copy=False), values)


def assemble(devices: Sequence[str], dev: np.ndarray, ts: np.ndarray, arrived: np.ndarray,
             values: dict[str, np.ndarray]) -> Frame:
    """A Frame from wide rows in any order: ``dev`` indexes the sorted ``devices``, one row per reading."""
    if dev.size == 0:
        return empty(values)
    order = np.lexsort((ts, dev))
    return _finish(devices, dev[order], ts[order], arrived[order], {f: v[order] for f, v in values.items()})


def pivot(devices: Sequence[str], fields: Sequence[str], dev: np.ndarray, ts: np.ndarray, field: np.ndarray,
          value: np.ndarray) -> Frame:
    """A Frame from long rows (one per reading and field, any order): ``field`` indexes ``fields``.

    A reading is a distinct (dev, ts); its arrival is the value of a
    pseudo-field ``arrived_ms`` if ``fields`` holds one, else -1.  Two rows for
    one (dev, ts, field): the later in the input wins.
    """
    if dev.size == 0:
        return empty([f for f in fields if f != "arrived_ms"])  # a reserved name, never a profile's field
    order = np.lexsort((field, ts, dev))  # stable: equal keys keep their input order
    dev, ts, field, value = dev[order], ts[order], field[order], value[order]
    same_reading = (dev[1:] == dev[:-1]) & (ts[1:] == ts[:-1])
    last = np.r_[~same_reading | (field[1:] != field[:-1]), True]  # drop all but the last of duplicates
    if not last.all():
        dev, ts, field, value = dev[last], ts[last], field[last], value[last]
        same_reading = (dev[1:] == dev[:-1]) & (ts[1:] == ts[:-1])
    starts = np.flatnonzero(np.r_[True, ~same_reading])
    row = np.cumsum(np.r_[True, ~same_reading]) - 1
    n = starts.size
    values = {}
    for j, name in enumerate(fields):
        column = np.full(n, np.nan)
        mine = field == j
        column[row[mine]] = value[mine]
        values[name] = column
    if "arrived_ms" in values:
        column = values.pop("arrived_ms")
        arr = np.where(np.isnan(column), -1, column).astype(np.int64)
    else:
        arr = np.full(n, -1, np.int64)
    return _finish(devices, dev[starts], ts[starts], arr, values)
