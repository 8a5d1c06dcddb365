"""Windows computed in numpy (storage/window.py) mean what InfluxDB's GROUP BY time() means.

* against a plain-Python reference, on random rows (hypothesis);
* against the real influxd 1.6.7: the same query answered with the raw rows
  windowed here and with the server's own ``GROUP BY time()`` (RAW_BUDGET
  forced to 0) gives the same rows, for every aggregate and for windows that do
  not divide the range; and ``query_many`` gives what ``query`` gives, device
  by device, in one request.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import storage.influxql
from device_profiles.loader import load_registry
from storage import InfluxV1Store, Point, QueryError
from storage.base import AGGREGATES
from storage.window import windowed

S = 1_000_000_000
T0 = 1_704_067_200 * S  # 2024-01-01T00:00:00Z


def reference(rows: list[tuple[int, float]], window_s: int, agg: str) -> list[tuple[int, float]]:
    buckets: dict[int, list[float]] = {}
    for t, v in sorted(rows):
        buckets.setdefault(t - t % (window_s * S), []).append(v)
    fn = {"mean": lambda v: sum(v) / len(v), "min": min, "max": max, "last": lambda v: v[-1],
          "count": lambda v: float(len(v))}[agg]
    return [(b, fn(v)) for b, v in sorted(buckets.items())]


@settings(max_examples=200, deadline=None)
@given(offsets=st.lists(st.integers(0, 10_000), min_size=0, max_size=60, unique=True),
       values=st.lists(st.floats(-1e6, 1e6), min_size=60, max_size=60),
       window_s=st.integers(1, 900), agg=st.sampled_from(AGGREGATES))
def test_windowed_matches_reference(offsets, values, window_s, agg):
    rows = sorted((T0 + o * S, values[i]) for i, o in enumerate(offsets))
    ts = np.array([t for t, _ in rows], dtype=np.int64)
    vals = np.array([v for _, v in rows], dtype=np.float64)
    got_t, got_v = windowed(ts, vals, window_s, agg)
    want = reference(rows, window_s, agg)
    assert got_t.tolist() == [t for t, _ in want]
    assert got_v.tolist() == pytest.approx([v for _, v in want], rel=1e-12, abs=1e-9)


def test_unknown_aggregate_is_refused():
    with pytest.raises(ValueError, match="median"):
        windowed(np.array([T0]), np.array([1.0]), 60, "median")


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    d = tmp_path_factory.mktemp("registry")
    (d / "kinds").mkdir()
    (d / "kinds" / "probe.yaml").write_text(
        'kind: probe\nfamily: smart_city\ntitle: {vi: "Thử", en: "Test"}\ntopic: "t/{site}/probe/{device}"\n'
        "format: json\nreporting: {interval_s: 10, jitter_s: 2}\nfields:\n"
        '  level: {type: float, unit: "m", min: -100, max: 100}\n'
        '  count: {type: int, unit: "1", min: 0, max: 1000}\n'
        '  pump: {type: bool, unit: "1"}\n')
    devs = "\n".join(f"      - {{id: p{i}, kind: probe}}" for i in range(4))
    (d / "sites.yaml").write_text(
        'sites:\n  - id: prov\n    type: province\n    name: "Tỉnh"\n    lat: 22.3\n    lon: 104.0\n'
        '  - id: c1\n    type: commune\n    name: "Xã"\n    parent: prov\n    lat: 22.3\n    lon: 104.0\n'
        f"    devices:\n{devs}\n")
    return load_registry(d)


@pytest.fixture(scope="module")
def influx(influxd, registry):
    store = InfluxV1Store(influxd.url, f"w_{uuid.uuid4().hex[:12]}", registry)
    rng = np.random.default_rng(3)
    points = []
    for i in range(4):  # 2 hours every 10 s, with gaps, at each device's own phase
        for k in range(720):
            if rng.random() < 0.15:
                continue
            t = T0 + (k * 10 + i) * S
            points.append(Point("probe", f"p{i}", "c1", "", t, {"level": round(float(rng.normal(i, 3)), 3),
                                                     "count": int(rng.integers(0, 1000)), "pump": bool(rng.random() < .5)},
                                t + S))
    store.write(points)
    yield store
    store.close()


@pytest.mark.parametrize("field", ["level", "count", "pump"])
@pytest.mark.parametrize("window_s", [60, 7, 3600])
def test_local_windows_equal_the_servers(influx, monkeypatch, field, window_s):
    start, end = T0 + 13 * S, T0 + 7000 * S
    for agg in AGGREGATES:
        if field == "pump" and agg in ("min", "max"):
            continue  # InfluxDB has no min/max of booleans
        local = influx.query("p1", field, start, end, window_s, agg)
        monkeypatch.setattr(storage.influxql, "RAW_BUDGET", 0)
        server = influx.query("p1", field, start, end, window_s, agg)
        monkeypatch.undo()
        assert local and [t for t, _ in local] == [t for t, _ in server], (field, window_s, agg)
        assert [v for _, v in local] == pytest.approx([v for _, v in server], rel=1e-9), (field, window_s, agg)
        assert [type(v) for _, v in local] == [type(v) for _, v in server], (field, window_s, agg)


@pytest.mark.parametrize("budget", [0, None])
def test_query_many_is_query_per_device(influx, monkeypatch, budget):
    if budget is not None:
        monkeypatch.setattr(storage.influxql, "RAW_BUDGET", budget)
    devices = ["p3", "p0", "p2"]
    for window_s, agg in ((None, None), (60, "mean"), (300, "max")):
        many = influx.query_many(devices, "level", T0, T0 + 3600 * S, window_s, agg)
        assert sorted(many) == sorted(devices)
        for d in devices:
            assert many[d] == influx.query(d, "level", T0, T0 + 3600 * S, window_s, agg)
            assert many[d], d


def test_query_many_refuses_what_query_refuses(influx):
    with pytest.raises(QueryError, match="nope"):
        influx.query_many(["p1", "nope"], "level", T0, T0 + S)
    with pytest.raises(QueryError, match="window"):
        influx.query_many(["p1"], "level", T0, T0 + S, None, "mean")
    assert influx.query_many([], "level", T0, T0 + S) == {}
