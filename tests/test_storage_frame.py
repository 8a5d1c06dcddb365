"""Store.frame on every store: every reading of one kind at once, its filters, bounds and refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
from storage_backends import (  # noqa: F401 (fixtures)
    T0,
    UPS_DEVICES,
    VICTORIA,
    WEATHER_DEVICES,
    H,
    S,
    backend,
    names_in,
    open_store,
    pt,
    registry,
    skip_on_victoria,
    store,
    victoria2,
)

import storage.influxql
from storage import (
    QueryError,
)
from storage.base import Frame

# ---------------------------------------------------------------- frame: every reading of one kind at once

WEATHER = ("temperature", "rain_count", "pump_on")
NAN = math.nan


def frame_rows(f: Frame) -> list[tuple]:
    """(device, ts, arrived_ms, *values in WEATHER order) per row, NaN as None, for exact comparisons."""
    assert isinstance(f, Frame) and set(f.values) == set(WEATHER)
    assert f.device_idx.dtype == np.int32 and f.ts_ns.dtype == np.int64 and f.arrived_ms.dtype == np.int64
    assert all(v.dtype == np.float64 and v.shape == f.ts_ns.shape for v in f.values.values())
    assert f.device_idx.shape == f.ts_ns.shape == f.arrived_ms.shape
    assert list(f.devices) == sorted(set(f.devices)) and set(f.device_idx.tolist()) == set(range(len(f.devices)))
    cols = [f.values[k].tolist() for k in WEATHER]
    return [(f.devices[d], t, a, *(None if math.isnan(c[i]) else c[i] for c in cols))
            for i, (d, t, a) in enumerate(zip(f.device_idx.tolist(), f.ts_ns.tolist(), f.arrived_ms.tolist()))]


def frame_data(registry, base):
    ms = 1_000_000
    return [
        pt(registry, "w-fb", base + 1 * S, base + 1 * S + 5 * ms, temperature=1.5, rain_count=2, pump_on=True),
        pt(registry, "w-fa", base + 2 * S, temperature=-3.0, pump_on=False),  # no rain_count
        pt(registry, "w-fa", base, temperature=0.25, rain_count=7, pump_on=True),
        pt(registry, "w-fb", base + 3 * S, rain_count=9),  # neither temperature nor pump_on
        pt(registry, "w-fa", base - 1 * S, temperature=99.0),  # before the start: left out
        pt(registry, "w-fb", base + 10 * S, temperature=99.0),  # at the end: left out
        pt(registry, "u-other", base + 1 * S, load=12.0, on_battery=True),  # another kind
    ]


def test_fields_of_one_reading_written_apart_make_one_reading(store, registry):
    """A reading's fields in two writes (a gateway splitting it, a replay of part of it): one reading with all
    of them, as InfluxDB merges the fields of a point written twice; the later arrival is kept."""
    t = T0 + 14 * H
    ms = t // 1_000_000
    store.write([pt(registry, "w-mrg", t, t + 1_000_000, temperature=4.5, rain_count=2)])
    store.write([pt(registry, "w-mrg", t, t + 3_000_000, pump_on=True)])
    assert frame_rows(store.frame("weather", t, t + S)) == [("w-mrg", t, ms + 3, 4.5, 2.0, 1.0)]
    assert store.query("w-mrg", "rain_count", t, t + S) == [(t, 2)]
    assert store.query("w-mrg", "pump_on", t, t + S, 60, "count") == [(t, 1)]


def test_a_reading_twice_in_one_large_write_keeps_the_later(store, registry, backend):
    """Hundreds of readings in one write (SQLite: several INSERT statements of many rows each): a reading
    written again later in the same write keeps the later values, within a statement and across them."""
    skip_on_victoria(backend, "it keeps every sample and does not record which of two with one timestamp came last")
    t = T0 + 15 * H
    ms = 1_000_000
    points = [pt(registry, "w-mrg", t + i * ms, t + i * ms, temperature=float(i), rain_count=i) for i in range(400)]
    points.insert(5, pt(registry, "w-mrg", t + 1 * ms, t + 2 * ms, temperature=-1.0, rain_count=101))
    points.append(pt(registry, "w-mrg", t, t + 9 * ms, temperature=-2.0, rain_count=100))
    store.write(points)
    got = store.frame("weather", t, t + S)
    assert len(got.ts_ns) == 400
    assert frame_rows(got)[:3] == [("w-mrg", t, t // ms + 9, -2.0, 100.0, None),
                                   ("w-mrg", t + ms, t // ms + 2, -1.0, 101.0, None),
                                   ("w-mrg", t + 2 * ms, t // ms + 2, 2.0, 2.0, None)]


def test_frame_reads_every_device_and_field_at_once(store, registry, monkeypatch):
    monkeypatch.setattr(storage.influxql, "CHUNK_ROWS", 2)  # InfluxDB: several chunks to merge
    base = T0 + 10 * H
    store.write(frame_data(registry, base))
    f = store.frame("weather", base, base + 10 * S)
    ms = base // 1_000_000
    assert frame_rows(f) == [  # sorted by (device, ts); bools as 0.0/1.0, ints as floats
        ("w-fa", base, ms, 0.25, 7.0, 1.0),
        ("w-fa", base + 2 * S, ms + 2000, -3.0, None, 0.0),
        ("w-fb", base + 1 * S, ms + 1005, 1.5, 2.0, 1.0),
        ("w-fb", base + 3 * S, ms + 3000, None, 9.0, None),
    ]
    assert f.devices == ("w-fa", "w-fb")  # only the devices present; w-fc has no readings
    for i, device in enumerate(f.devices):  # the same readings as one query per device and field
        mine = f.device_idx == i
        for field in WEATHER:
            got = [(t, v) for t, v in zip(f.ts_ns[mine].tolist(), f.values[field][mine].tolist()) if v == v]
            assert got == store.query(device, field, base, base + 10 * S), (device, field)
    ups = store.frame("ups", base, base + 10 * S)
    assert ups.devices == ("u-other",) and ups.values["load"].tolist() == [12.0]
    assert ups.values["on_battery"].tolist() == [1.0]


def test_frame_range_and_device_filter(store, registry):
    base = T0 + 11 * H
    store.write(frame_data(registry, base))
    assert [r[:2] for r in frame_rows(store.frame("weather", base + 1 * S, base + 3 * S))] == [
        ("w-fa", base + 2 * S), ("w-fb", base + 1 * S)]  # [start, end)
    assert [r[:2] for r in frame_rows(store.frame("weather", base - 5 * S, base + 11 * S))] == [
        ("w-fa", base - 1 * S), ("w-fa", base), ("w-fa", base + 2 * S),
        ("w-fb", base + 1 * S), ("w-fb", base + 3 * S), ("w-fb", base + 10 * S)]
    only_b = store.frame("weather", base, base + 10 * S, devices=["w-fb", "w-fc", "w-fb"])
    assert [r[:2] for r in frame_rows(only_b)] == [("w-fb", base + 1 * S), ("w-fb", base + 3 * S)]
    assert only_b.devices == ("w-fb",) and only_b.device_idx.tolist() == [0, 0]
    assert [r[0] for r in frame_rows(store.frame("weather", base, base + 10 * S, ("w-fa",)))] == ["w-fa", "w-fa"]


def test_frame_empty(store, registry):
    base = T0 + 12 * H
    store.write(frame_data(registry, base))
    for f in (store.frame("weather", base + 20 * S, base + 30 * S),  # nothing in range
              store.frame("weather", base, base + 10 * S, devices=["w-fc"]),  # a device without readings
              store.frame("weather", base, base + 10 * S, devices=[])):
        assert frame_rows(f) == [] and f.devices == () and f.ts_ns.size == 0


BAD_FRAMES = [  # (kind, start, end, devices, text the message must name)
    ("nope", 0, 10, None, "'nope'"),
    ('weather" --', 0, 10, None, "weather\" --"),
    ("ups", 0, 10, ["w-fa"], "'w-fa'"),  # a device of another kind
    ("weather", 0, 10, ["w-fa", "w-nope"], "'w-nope'"),
    ("weather", 0, 10, ["w-fa' OR 1=1 --"], "OR 1=1"),
    ("weather", 0, 10, "w-fa", "'w-fa'"),  # one string, not a list of devices
    ("weather", 10, 10, None, "10"),
    ("weather", 20, 10, ["w-fa"], "20"),
    ("weather", 0.5, 10, None, "0.5"),
]


@pytest.mark.parametrize("kind,start,end,devices,named", BAD_FRAMES)
def test_bad_frames_are_refused(store, kind, start, end, devices, named):
    with pytest.raises(QueryError) as exc:
        store.frame(kind, start, end, devices)
    assert named in str(exc.value)


def test_frame_row_bound(backend, registry, tmp_path, request):
    base = T0 + 13 * H
    s = open_store(backend, registry, tmp_path, request, max_rows=3)
    try:
        s.write(frame_data(registry, base))
        with pytest.raises(QueryError, match=r"max_rows=3.*narrow the time range"):
            s.frame("weather", base, base + 10 * S)  # 4 readings
        assert len(s.frame("weather", base, base + 3 * S).ts_ns) == 3  # exactly max_rows is fine
        assert len(s.frame("weather", base - 5 * S, base + 11 * S, devices=["w-fb"]).ts_ns) == 3
    finally:
        s.close()
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="max_rows"):
            open_store(backend, registry, tmp_path, request, max_rows=bad)


