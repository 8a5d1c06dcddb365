"""A batch of readings as columns: what the bulk ingest path hands the stores.

The per-reading path builds one :class:`~storage.base.Point` per reading; the
bulk path keeps a batch as numpy columns per device kind instead, so that
validating and encoding cost numpy passes, not Python objects.

Layout (:class:`KindColumns`, one per kind in the batch), row ``i`` = one
reading: device ``table.ids[device_idx[i]]``, measured at ``ts_ns[i]``,
received at ``arrived_ns[i]``, and for field ``fields[j]`` the value
``values[i, j]`` where ``present[i, j]``.  Values are float64: float fields as
they are, int fields and bools (0/1) as exact integers, which is why the bulk
path only takes kinds whose int ranges stay within +-2**53 (:data:`EXACT_INT`).
``order[i]`` is the row's place in the batch, so :meth:`ColumnBatch.points`
gives the points in the order the per-reading path would.

Readings that the bulk path leaves to the per-reading path (an RFC 3339 time,
a format without a bulk decoder) travel as Points in ``ColumnBatch.extra``,
each with its own place in ``extra_order``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from .base import Point

EXACT_INT = 2**53  # float64 holds every integer up to this exactly


class DeviceTable:
    """Device identity by index: id, kind, site, district (from the registry, or ad hoc)."""

    def __init__(self, rows: Iterable[tuple[str, str, str, str]]):
        self.ids: list[str] = []
        self.kinds: list[str] = []
        self.sites: list[str] = []
        self.districts: list[str] = []
        self.index: dict[str, int] = {}
        for device, kind, site, district in rows:
            self.add(device, kind, site, district)

    def add(self, device: str, kind: str, site: str, district: str) -> int:
        i = self.index.get(device)
        if i is not None and (self.kinds[i], self.sites[i], self.districts[i]) == (kind, site, district):
            return i
        self.index[device] = i = len(self.ids)  # a device seen again with other tags gets a new row
        self.ids.append(device)
        self.kinds.append(kind)
        self.sites.append(site)
        self.districts.append(district)
        return i

    @classmethod
    def from_registry(cls, registry) -> DeviceTable:
        return cls((d.id, d.kind, d.site, d.district) for d in registry.devices.values())

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class KindColumns:
    """Readings of one kind (see the module docstring for the layout)."""

    kind: str
    fields: tuple[str, ...]
    types: tuple[str, ...]  # per field: "float", or "int" (ints and bools, written with the i suffix)
    device_idx: np.ndarray  # int32 [n]
    ts_ns: np.ndarray  # int64 [n]
    arrived_ns: np.ndarray  # int64 [n]
    values: np.ndarray  # float64 [n, len(fields)]
    present: np.ndarray  # bool [n, len(fields)]
    order: np.ndarray  # int64 [n]
    # object [n] or None: each row's fields as the device sent them in line protocol (``a=1.50,b=2i``, every field,
    # in any order) when a store reads from that text the same types and numbers as from what
    # storage.line_protocol.Encoder writes (ingest.bulk_lp decides); the encoder splices it in as sent
    body: np.ndarray | None = None
    # object [n] or None: with body, each row's time as the device wrote it, where that is also how the Encoder
    # writes ts_ns (``%d``): the encoder joins the line from text it already has (ingest.bulk_lp.lp_texts)
    ts_text: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.ts_ns)


@dataclass
class ColumnBatch:
    """A batch of accepted readings: columns per kind, plus readings kept as Points."""

    table: DeviceTable
    kinds: list[KindColumns] = field(default_factory=list)
    extra: list[Point] = field(default_factory=list)
    extra_order: list[int] = field(default_factory=list)
    encoded: object = None  # the batch and its rejects encoded ahead for one store (ingest.delivery.prepare): lines, or SQLite rows

    def __len__(self) -> int:
        return sum(len(k) for k in self.kinds) + len(self.extra)

    def count_by_kind(self) -> Counter:
        c = Counter({k.kind: len(k) for k in self.kinds if len(k)})
        c.update(p.kind for p in self.extra)
        return c

    def device_ids(self) -> set[str]:
        ids = self.table.ids
        out = {ids[i] for k in self.kinds for i in np.unique(k.device_idx).tolist()}
        out.update(p.device for p in self.extra)
        return out

    def arrays(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Every reading as (device ids, ts_ns int64, arrived_ns int64), columns first, then extra."""
        ids = self.table.ids
        dev = [ids[i] for k in self.kinds for i in k.device_idx.tolist()] + [p.device for p in self.extra]
        ts = np.concatenate([k.ts_ns for k in self.kinds] + [np.array([p.ts_ns for p in self.extra], np.int64)])
        arr = np.concatenate([k.arrived_ns for k in self.kinds] + [np.array([p.arrived_ns for p in self.extra], np.int64)])
        return dev, ts, arr

    def points(self) -> list[Point]:
        """The batch as Points, in batch order: for stores without a bulk write, the spool, and tests."""
        keyed = list(zip(self.extra_order, self.extra))
        for kc in self.kinds:
            keyed.extend(keyed_points(self.table, kc))
        keyed.sort(key=lambda kp: kp[0])
        return [p for _o, p in keyed]


def keyed_points(t: DeviceTable, kc: KindColumns) -> list[tuple[int, Point]]:
    """(order, Point) for every row of ``kc``."""
    as_int = [ty != "float" for ty in kc.types]
    vals, pres = kc.values.tolist(), kc.present.tolist()
    out = []
    for i, (d, ts, arr, o) in enumerate(zip(kc.device_idx.tolist(), kc.ts_ns.tolist(), kc.arrived_ns.tolist(),
                                            kc.order.tolist())):
        fields = {f: (int(v) if it else v) for f, v, p, it in zip(kc.fields, vals[i], pres[i], as_int) if p}
        out.append((o, Point(kc.kind, t.ids[d], t.sites[d], t.districts[d], ts, fields, arr)))
    return out


def take(kc: KindColumns, rows: np.ndarray) -> KindColumns:
    """The rows ``rows`` (a bool mask or indices) of ``kc``."""
    return KindColumns(kc.kind, kc.fields, kc.types, kc.device_idx[rows], kc.ts_ns[rows], kc.arrived_ns[rows],
                       kc.values[rows], kc.present[rows], kc.order[rows], None if kc.body is None else kc.body[rows],
                       None if kc.ts_text is None else kc.ts_text[rows])


def _number(v: object, what: str) -> float:
    """A field value as float64 (bools 0/1); ValueError for what no store can hold exactly."""
    from .line_protocol import to_number

    n = to_number(v, False, what)
    if type(n) is int and not -EXACT_INT <= n <= EXACT_INT:
        raise ValueError(f"{what} is {n}: beyond +-2**53, not held exactly by the bulk path")
    return float(n)


def from_points(points: Iterable[Point], float_fields: Mapping[str, frozenset[str]] | None = None) -> ColumnBatch:
    """Points as columns; a field is "float" if ``float_fields`` says so or its first value is a float.

    Raises ValueError for a value that is not a finite number (as the line-protocol Encoder does).
    """
    floats = dict(float_fields or {})
    points = list(points)
    table = DeviceTable(())
    by_kind: dict[str, list[tuple[int, Point]]] = {}
    for o, p in enumerate(points):
        by_kind.setdefault(p.kind, []).append((o, p))
    batch = ColumnBatch(table)
    for kind, rows in by_kind.items():
        names: dict[str, str] = {}
        for _o, p in rows:
            for f, v in p.fields.items():
                if f not in names:
                    is_float = f in floats.get(kind, ()) or isinstance(v, (float, np.floating))
                    names[f] = "float" if is_float else "int"
        fields = tuple(names)
        n, nf = len(rows), len(fields)
        values, present = np.zeros((n, nf)), np.zeros((n, nf), bool)
        col = {f: j for j, f in enumerate(fields)}
        for i, (_o, p) in enumerate(rows):
            for f, v in p.fields.items():
                j = col[f]
                x = _number(v, f"{p.kind} {p.device} field {f!r}")
                if names[f] == "int" and not x.is_integer():
                    raise ValueError(f"{p.kind} {p.device} field {f!r} is {v!r} where other readings send integers")
                values[i, j], present[i, j] = x, True
        batch.kinds.append(KindColumns(
            kind, fields, tuple(names[f] for f in fields),
            np.array([table.add(p.device, p.kind, p.site, p.district) for _o, p in rows], np.int32),
            np.array([int(p.ts_ns) for _o, p in rows], np.int64),
            np.array([int(p.arrived_ns) for _o, p in rows], np.int64), values, present,
            np.array([o for o, _p in rows], np.int64)))
    return batch
