"""The backends of the storage tests: a small registry and a fresh store of each kind, on real servers.

Used by test_storage_contract.py and test_storage_frame.py (fixtures are imported there by name).
"""

from __future__ import annotations

import os
import textwrap
import uuid

import httpx
import pytest
import servers

from device_profiles.loader import load_registry
from storage.sqlite_schema import quote
from storage import (
    InfluxV1Store,
    InfluxV2Store,
    Point,
    SQLiteStore,
    VictoriaMetricsReader,
    VictoriaMetricsStore,
)

S = 1_000_000_000
T0 = 1_704_067_200 * S  # 2024-01-01T00:00:00Z, a multiple of every window used here
H = 3600 * S  # each test writes in its own hour

KIND_YAML = """\
kind: {kind}
family: {family}
title: {{vi: "Thử {kind}", en: "Test {kind}"}}
topic: "test/{{site}}/{kind}/{{device}}"
format: json
reporting: {{interval_s: 60, jitter_s: 10}}
fields:
{fields}
"""
WEATHER_FIELDS = """\
  temperature: {type: float, unit: "°C", min: -50, max: 150}
  rain_count: {type: int, unit: "1", min: 0, max: 100000}
  pump_on: {type: bool, unit: "1"}
"""
UPS_FIELDS = """\
  load: {type: float, unit: "%", min: 0, max: 200}
  on_battery: {type: bool, unit: "1"}
"""
WEATHER_DEVICES = ["w-rt", "w-ns", "w-dup", "w-lww", "w-win", "w-range", "w-seen", "w-inj", "w-fb", "w-fa", "w-fc",
                   "w-mrg"]
UPS_DEVICES = ["u-seen", "u-other"]


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    d = tmp_path_factory.mktemp("registry")
    (d / "kinds").mkdir()
    (d / "kinds" / "weather.yaml").write_text(KIND_YAML.format(kind="weather", family="smart_city",
                                                              fields=WEATHER_FIELDS))
    (d / "kinds" / "ups.yaml").write_text(KIND_YAML.format(kind="ups", family="data_center", fields=UPS_FIELDS))
    devs = lambda ids, kind: "\n".join(f"      - {{id: {i}, kind: {kind}}}" for i in ids)  # noqa: E731
    (d / "sites.yaml").write_text(textwrap.dedent("""\
        sites:
          - {id: province, type: province, name: "Tỉnh"}
          - {id: sa-pa, type: district, name: "Sa Pa", parent: province}
          - id: ta-van
            type: commune
            name: "Tả Van"
            parent: sa-pa
            devices:
        %s
          - id: dc-1
            type: data_center
            name: "DC"
            parent: province
            devices:
        %s
        """) % (devs(WEATHER_DEVICES, "weather"), devs(UPS_DEVICES, "ups")))
    return load_registry(d)


VICTORIA = ("influx2-victoria", "victoria")  # the backends that are VictoriaMetrics underneath


@pytest.fixture(scope="module")
def victoria2(tmp_path_factory):
    """A second VictoriaMetrics for VictoriaMetricsStore: it keeps duplicates, so the two backends
    writing the same test hours into one server would see each other's samples."""
    if os.environ.get("FANSIPAN_SKIP_SERVERS") == "1":
        pytest.skip("FANSIPAN_SKIP_SERVERS=1: not starting victoria-metrics")
    server = servers.start_victoria(tmp_path_factory.mktemp("victoria2"))
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "influx1", "influx2-victoria", "victoria"])
def backend(request):
    return request.param


def open_store(backend, registry, tmp_path, request, **kw):
    """A fresh store of ``backend`` (``kw``: reader options such as max_rows)."""
    if backend == "sqlite":
        return SQLiteStore(tmp_path / f"{uuid.uuid4().hex[:12]}.sqlite", registry, **kw)
    if backend == "influx1":
        return InfluxV1Store(request.getfixturevalue("influxd").url, f"t_{uuid.uuid4().hex[:12]}", registry, **kw)
    if backend == "victoria":
        return VictoriaMetricsStore(request.getfixturevalue("victoria2").url, registry, **kw)
    url = request.getfixturevalue("victoria").url
    return InfluxV2Store(url, "test-token", "fansipan", "telemetry", registry,
                         reader=VictoriaMetricsReader(url, registry, **kw))


@pytest.fixture
def store(backend, registry, tmp_path, request):
    s = open_store(backend, registry, tmp_path, request)
    yield s
    s.close()


def pt(registry, device, ts_ns, arrived_ns=None, **fields):
    d = registry.devices[device]
    return Point(d.kind, d.id, d.site, d.district, ts_ns, fields, arrived_ns if arrived_ns else ts_ns + 1)


def names_in(backend, store, request) -> set[str]:
    """Every measurement/metric, device and field name the backend holds (for the injection test)."""
    if backend == "sqlite":
        conn = store._conn()
        out = set()
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
            out.add(name)
            out |= {r[1] for r in conn.execute(f"PRAGMA table_info({quote(name)})")}
            if name.startswith("readings_"):
                out |= {r[0] for r in conn.execute(f"SELECT DISTINCT device FROM {quote(name)}")}
        return out
    if backend == "influx1":
        out = set()
        for q in ("SHOW MEASUREMENTS", 'SHOW TAG VALUES WITH KEY = "device"', "SHOW FIELD KEYS"):
            for s in store.reader.run(q):
                out |= {v for row in s.get("values", []) for v in row}
        return out
    url = request.getfixturevalue("victoria2" if backend == "victoria" else "victoria").url
    return {v for label in ("__name__", "device")
            for v in httpx.get(f"{url}/api/v1/label/{label}/values").json()["data"]}


def skip_on_victoria(backend, why):
    if backend in VICTORIA:
        pytest.skip(f"VictoriaMetrics: {why}")


