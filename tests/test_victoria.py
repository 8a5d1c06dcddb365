"""VictoriaMetricsStore beyond the storage contract: settings and factory, cluster-style URLs, errors,
and detection and the API running unchanged on it (same answers as on the embedded store).

The storage contract itself runs on it in tests/test_storage_contract.py (backend "victoria").
"""

from __future__ import annotations

import warnings
from datetime import datetime, timezone

import httpx
import pytest
import servers

from analytics.incidents import IncidentStore
from analytics.service import DetectionService
from api.keys import KeyStore
from api.main import create_app
from device_profiles import load_registry
from fansipan.config import ConfigError, Settings
from ingest.validate import Validator
from simulator.core import Simulation
from storage import Point, StoreError, VictoriaMetricsStore
from storage.factory import open_store
from storage.sqlite import SQLiteStore

with warnings.catch_warnings():  # Starlette nags about httpx vs httpx2 on import; TestClient works either way
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

pytestmark = pytest.mark.servers

REGISTRY = load_registry()
MIN = 60 * 10**9
START = datetime(2026, 7, 15, 4, 0, tzinfo=timezone.utc)  # 11:00 local: the loudspeakers' broadcast window
MINUTES = 40
CUT_S = 900


# ---------------------------------------------------------------- settings, factory, URLs, errors

def test_factory_opens_victoria_from_the_settings(victoria):
    s = Settings.from_env({"FANSIPAN_STORE": "victoria", "FANSIPAN_VICTORIA_URL": victoria.url}, mqtt=False)
    store = open_store(s, REGISTRY)
    try:
        assert isinstance(store, VictoriaMetricsStore) and store.reader.flush_before_read
        assert repr(store) == f"VictoriaMetricsStore({victoria.url!r})"
    finally:
        store.close()


@pytest.mark.parametrize("env, named", [
    ({"FANSIPAN_VICTORIA_URL": "127.0.0.1:8428"}, "FANSIPAN_VICTORIA_URL"),
    ({"FANSIPAN_VICTORIA_READ_URL": "vmselect:8481"}, "FANSIPAN_VICTORIA_READ_URL"),
])
def test_bad_victoria_urls_are_refused_naming_the_variable(env, named):
    with pytest.raises(ConfigError, match=named):
        Settings.from_env({"FANSIPAN_STORE": "victoria", **env}, mqtt=False)


def test_cluster_style_urls(victoria):
    """Writes to <base>/influx/write and reads from <base>/prometheus/api/v1/..., the paths a cluster's
    vminsert (/insert/0/influx) and vmselect (/select/0/prometheus) serve; the single node serves them too."""
    store = VictoriaMetricsStore(victoria.url + "/influx", REGISTRY, read_url=victoria.url + "/prometheus")
    try:
        assert not store.reader.flush_before_read  # a vmselect has no /internal/force_flush
        d = REGISTRY.devices["dc-srv-01"]
        t = 1_600_000_000 * 10**9
        store.write([Point(d.kind, d.id, d.site, d.district, t, {"cpu_pct": 42.5}, t + 10**6)])
        httpx.get(victoria.url + "/internal/force_flush").raise_for_status()
        assert store.query("dc-srv-01", "cpu_pct", t, t + 1) == [(t, 42.5)]
        assert store.frame("server", t, t + 1).values["cpu_pct"].tolist() == [42.5]
    finally:
        store.close()


def test_errors_are_sorted_by_meaning(victoria):
    d = REGISTRY.devices["dc-srv-01"]
    point = Point(d.kind, d.id, d.site, d.district, 10**18, {"cpu_pct": 1.0}, 10**18)
    dead = VictoriaMetricsStore(f"http://127.0.0.1:{servers.free_port()}", REGISTRY, timeout_s=2)
    with pytest.raises(StoreError, match="is the server running") as exc:
        dead.write([point])
    assert exc.value.retryable
    wrong = VictoriaMetricsStore(victoria.url + "/no/such/path", REGISTRY)
    with pytest.raises(StoreError, match="HTTP 4") as exc:
        wrong.write([point])
    assert not exc.value.retryable and exc.value.status // 100 == 4
    with pytest.raises(StoreError, match="NaN|finite") as exc:
        VictoriaMetricsStore(victoria.url, REGISTRY).write([point._replace(fields={"cpu_pct": float("nan")})])
    assert not exc.value.retryable
    with pytest.raises(ValueError, match="http"):
        VictoriaMetricsStore("vm:8428", REGISTRY)


# ---------------------------------------------------------------- detection and API, unchanged

@pytest.fixture(scope="module")
def seeded(victoria, tmp_path_factory):
    """40 simulated minutes of the whole registry (Y Tý's uplink cut at 15 min, a flood at Bản Vược),
    written to SQLite and VictoriaMetrics alike, each with its own detector cycling every 5 minutes."""
    base = tmp_path_factory.mktemp("victoria_world")
    start = int(START.timestamp()) * 10**9
    stores = {"sqlite": SQLiteStore(base / "t.sqlite", REGISTRY), "victoria": VictoriaMetricsStore(victoria.url, REGISTRY)}
    now = [start]
    services = {name: DetectionService(REGISTRY, s, IncidentStore(base / f"incidents-{name}.sqlite"),
                                       clock=lambda: now[0], history_s=0, lag_s=0)
                for name, s in stores.items()}
    sim = Simulation(REGISTRY, faults=[f"uplink_cut:y_ty:{CUT_S}", "flood:banvuoc-wl-1:0"], seed=5, speed=0,
                     start=START)
    validator = Validator(REGISTRY)
    for minute in range(MINUTES):
        now[0] = start + (minute + 1) * MIN
        points = []
        for topic, payload, _ in sim.messages(1, step_s=60):
            points += validator.message(topic, payload, now[0])[0]
        for s in stores.values():
            s.write(points)
        if minute % 5 == 4:
            for svc in services.values():
                svc.cycle()
    yield stores, services, start, now[0], base
    for name, s in stores.items():
        services[name].incidents.close()
        s.close()


def _incidents(svc) -> set:
    return {(i.key, i.kind, i.severity, i.status, tuple(sorted(i.members))) for i in svc.incidents.all()}


def test_detection_finds_the_same_incidents_on_victoria(seeded):
    stores, services, start, end, _ = seeded
    on_sqlite, on_victoria = _incidents(services["sqlite"]), _incidents(services["victoria"])
    assert on_victoria == on_sqlite
    kinds = {(key, kind) for key, kind, *_ in on_victoria}
    assert ("silence:yty-router", "uplink_down") in kinds  # topology: one incident at the cut uplink
    assert any(kind == "limit" and "water_level" in key for key, kind in kinds)  # limits from the profile
    yty = next(i for i in on_victoria if i[0] == "silence:yty-router")
    assert len(yty[4]) >= 3  # the devices behind it, marked unreachable
    assert stores["victoria"].last_seen().keys() == stores["sqlite"].last_seen().keys()


def _client(seeded, backend: str) -> TestClient:
    stores, services, start, end, base = seeded
    path = base / f"incidents-{backend}.sqlite"
    keys = KeyStore(path)
    _, token = keys.create(f"test-{backend}", "viewer")
    keys.close()
    app = create_app(Settings(incidents_path=str(path)), REGISTRY, stores[backend], IncidentStore(path),
                     keys=KeyStore(path), clock=lambda: end)
    c = TestClient(app, raise_server_exceptions=False)
    c.headers["Authorization"] = f"Bearer {token}"
    return c


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).isoformat().replace("+00:00", "Z")


def test_api_answers_the_same_on_victoria(seeded):
    _, _, start, end, _ = seeded
    clients = {b: _client(seeded, b) for b in ("sqlite", "victoria")}
    params = {"start": _iso(start), "end": _iso(end)}
    answers = {}
    for b, c in clients.items():
        raw = c.get("/api/v1/telemetry/yty-router/latency_ms", params=params)
        win = c.get("/api/v1/telemetry/alu-router/latency_ms", params={**params, "window": "5m", "agg": "max"})
        body = {"range": {"from": _iso(start), "to": _iso(end)}, "intervalMs": 60_000, "maxDataPoints": 1000,
                "targets": [{"refId": "A", "target": "telemetry",
                             "payload": {"kind": "commune_router", "field": "latency_ms", "district": "bat_xat"}}]}
        graf = c.post("/api/v1/grafana/query", json=body)
        for r in (raw, win, graf):
            assert r.status_code == 200, (b, r.text)
        answers[b] = (raw.json(), win.json(), graf.json())
    (raw_s, win_s, graf_s), (raw_v, win_v, graf_v) = answers["sqlite"], answers["victoria"]
    refused = clients["victoria"].get("/api/v1/quarantine")  # VictoriaMetrics keeps no text: said, not faked
    assert refused.status_code == 501 and "numbers only" in refused.json()["error"]["message"]
    assert raw_v["count"] == raw_s["count"] > 5
    assert [p["value"] for p in raw_v["points"]] == pytest.approx([p["value"] for p in raw_s["points"]])
    assert all(datetime.fromisoformat(p["time"]).timestamp() * 1e9 < start + (CUT_S + 60) * 10**9
               for p in raw_v["points"])  # Y Tý's router fell silent at the cut
    assert win_v["points"] == win_s["points"] and len(win_v["points"]) == MINUTES // 5
    assert {s["target"] for s in graf_v} == {s["target"] for s in graf_s} and len(graf_v) > 3
    for a, b in zip(sorted(graf_v, key=lambda s: s["target"]), sorted(graf_s, key=lambda s: s["target"])):
        assert [round(t / 1000) for _, t in a["datapoints"]] == [round(t / 1000) for _, t in b["datapoints"]]
        assert [v for v, _ in a["datapoints"]] == pytest.approx([v for v, _ in b["datapoints"]])

