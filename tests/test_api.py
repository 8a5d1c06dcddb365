"""The API against the real stores: SQLite and a real influxd, seeded with the simulator.

One seeded world per session (see :func:`world`): 70 simulated minutes of the
whole province, up to "now", through the validator into both stores, with an
uplink cut at Y Tý after 30 minutes, a flood at Bản Vược and 1% malformed
payloads; the real DetectionService runs a cycle every simulated minute, so
the incidents are the detector's own.  No broker: the MQTT path is covered by
test_end_to_end.py.  The API's clock is pinned to the end of the seeded data.
"""

from __future__ import annotations

import sqlite3
import uuid
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pytest

with warnings.catch_warnings():  # Starlette nags about httpx vs httpx2 on import; TestClient works either way
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

import servers  # tests/servers.py (on the path through conftest.py)
from analytics.incidents import IncidentStore
from analytics.service import DetectionService
from api.keys import KeyStore
from api.main import create_app
from api.settings import ApiSettings
from device_profiles import load_registry
from fansipan.config import Settings
from ingest.validate import REASONS, Validator
from simulator.core import Simulation
from storage.influx_v1 import InfluxV1Store
from storage.sqlite import SQLiteStore


REGISTRY = load_registry()
MIN = 60 * 10**9
# Pinned, not "now": the loudspeakers report only in broadcast windows (11:00-12:00 local is one),
# so the incident's members depend on the time of day. 70 minutes up to 11:55 local, the cut at 11:15.
END = datetime(2026, 7, 15, 4, 55, tzinfo=timezone.utc)
MINUTES = 70
CUT_S = 1800
YTY_DEVICES = sorted(d.id for d in REGISTRY.devices.values() if d.site == "y_ty")


@dataclass
class World:
    base: Path
    start_ns: int
    end_ns: int
    sqlite: SQLiteStore
    influx: InfluxV1Store | None
    influx_missing: str = ""  # why there is no influxd, when there is none
    tokens: dict[str, str] = field(default_factory=dict)  # role (and "revoked") -> key
    _apps: dict = field(default_factory=dict)

    def store(self, backend: str):
        if backend == "influx1" and self.influx is None:
            if self.influx_missing.startswith("skip"):
                pytest.skip(self.influx_missing)
            pytest.fail(self.influx_missing)  # like every test that needs a server: an error, naming the package
        return self.sqlite if backend == "sqlite" else self.influx

    def app(self, backend: str = "sqlite", incidents_path: Path | None = None, status_public: bool = False,
            store=None):
        """An app over the seeded stores; ``incidents_path`` for a private copy an action test may change."""
        path = incidents_path or self.base / "incidents.sqlite"
        app = create_app(Settings(incidents_path=str(path)), REGISTRY, store or self.store(backend),
                         IncidentStore(path), keys=KeyStore(path), api_settings=ApiSettings(status_public=status_public),
                         clock=lambda: self.end_ns)
        return app

    def client(self, backend: str = "sqlite", role: str | None = "viewer", **kw) -> TestClient:
        key = (backend, role, tuple(sorted(kw.items())))
        if key not in self._apps:
            c = TestClient(self.app(backend, **kw), raise_server_exceptions=False)
            if role:
                c.headers["Authorization"] = f"Bearer {self.tokens[role]}"
            self._apps[key] = c
        return self._apps[key]

    def private_incidents(self, tmp_path: Path) -> Path:
        """A copy of the incidents database (with the keys), for tests that change incidents."""
        dst = tmp_path / "incidents.sqlite"
        with sqlite3.connect(self.base / "incidents.sqlite") as src, sqlite3.connect(dst) as out:
            src.backup(out)
        return dst


_WORLD: dict[str, World] = {}


def _seed(base: Path, influx_url: str | None) -> World:
    end = int(END.timestamp()) * 10**9
    start = end - MINUTES * MIN
    sqlite = SQLiteStore(base / "telemetry.sqlite", REGISTRY)
    influx = InfluxV1Store(influx_url, f"api_{uuid.uuid4().hex[:10]}", REGISTRY) if influx_url else None
    incidents = IncidentStore(base / "incidents.sqlite", clear_hold_s=120, reopen_s=600)
    sim = Simulation(REGISTRY, faults=[f"uplink_cut:y_ty:{CUT_S}", "flood:banvuoc-wl-1:0", "malformed:0.01"],
                     seed=5, speed=0, start=datetime.fromtimestamp(start / 1e9, timezone.utc))
    validator = Validator(REGISTRY)
    now = [start]
    service = DetectionService(REGISTRY, sqlite, incidents, clock=lambda: now[0], history_s=0, lag_s=0)
    for minute in range(MINUTES):
        now[0] = start + (minute + 1) * MIN
        points, rejected = [], []
        for topic, payload, _ in sim.messages(1, step_s=60):
            p, r = validator.message(topic, payload, now[0])
            points += p
            rejected += r
        for store in (sqlite, influx):
            if store is not None:
                store.write(points, rejected)
        service.cycle()
    incidents.heartbeat()  # as the detector does after each cycle (wall clock)
    incidents.close()
    world = World(base, start, end, sqlite, influx)
    keys = KeyStore(base / "incidents.sqlite")
    for role in ("viewer", "operator", "admin", "revoked"):
        k, token = keys.create(f"test-{role}", "admin" if role == "revoked" else role)
        world.tokens[role] = token
        if role == "revoked":
            keys.revoke(k.id)
    keys.close()
    return world


def shared_world(tmp_path_factory, request) -> World:
    """The seeded world, built once per session for every API test module (each wraps it in a fixture)."""
    if "w" not in _WORLD:
        influx_url, missing = None, ""
        try:
            influx_url = request.getfixturevalue("influxd").url
        except pytest.skip.Exception as exc:  # FANSIPAN_SKIP_SERVERS=1
            missing = f"skipped: {exc}"
        except servers.ServerUnavailable as exc:  # the SQLite half still runs; the influx1 half fails with this
            missing = str(exc)
        _WORLD["w"] = _seed(tmp_path_factory.mktemp("api_world"), influx_url)
        _WORLD["w"].influx_missing = missing
    return _WORLD["w"]


@pytest.fixture(scope="session")
def world(tmp_path_factory, request) -> World:
    return shared_world(tmp_path_factory, request)


BACKENDS = ["sqlite", pytest.param("influx1", marks=pytest.mark.servers)]


def iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, timezone.utc).isoformat().replace("+00:00", "Z")


def error_of(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    return body["error"]


# --- health, errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_health(world, backend):
    r = world.client(backend, role=None).get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text


def test_health_and_reads_report_an_unreachable_store(world, tmp_path):
    dead = InfluxV1Store("http://127.0.0.1:9", "nowhere", REGISTRY, timeout_s=0.5)
    c = TestClient(world.app(store=dead), raise_server_exceptions=False)
    err = error_of(c.get("/health"), 503, "unhealthy")
    assert err["details"]["checks"]["store"]["ok"] is False and "127.0.0.1" not in err["message"]
    err = error_of(c.get("/api/v1/devices", headers={"X-API-Key": world.tokens["viewer"]}), 503, "store_unavailable")
    assert "retry" in err["message"]


def test_errors_have_one_shape(world):
    c = world.client()
    assert "no route" in error_of(c.get("/api/v1/nothing"), 404, "not_found")["message"]
    error_of(c.post("/api/v1/devices"), 405, "method_not_allowed")
    err = error_of(c.get("/api/v1/incidents", params={"limit": 0}), 422, "validation_error")
    assert "'limit'" in err["message"] and err["details"]["errors"][0]["parameter"] == "limit"
    err = error_of(c.get("/api/v1/devices", params={"kind": "camra"}), 400, "bad_parameter")
    assert err["details"]["parameter"] == "kind" and "camera" in err["message"]



def test_big_bodies_are_refused_before_they_are_read(world):
    c = world.client()
    big = b'{"targets": [' + b'{"target": "x"},' * 80_000 + b'{"target": "x"}]}'  # 1.3 MB
    err = error_of(c.post("/api/v1/grafana/query", content=big, headers={"Content-Type": "application/json"}),
                   413, "payload_too_large")
    assert err["details"]["limit_bytes"] == 1 << 20 and "body" in err["message"]

    def chunks():  # no Content-Length: counted as it streams in
        for _ in range(20):
            yield b" " * 100_000

    error_of(c.post("/api/v1/grafana/query", content=chunks(), headers={"Content-Type": "application/json"}),
             413, "payload_too_large")


# --- telemetry --------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_telemetry_raw_and_downsampled_match_the_store(world, backend):
    c, store = world.client(backend), world.store(backend)
    cut = world.start_ns + CUT_S * 10**9
    params = {"start": iso(world.start_ns), "end": iso(world.end_ns)}
    raw = c.get("/api/v1/telemetry/yty-router/latency_ms", params=params).json()
    assert raw["unit"] == "ms" and raw["window_s"] is None and raw["count"] == len(raw["points"]) > 30
    assert all(datetime.fromisoformat(p["time"]).timestamp() * 1e9 < cut + 60e9 for p in raw["points"])  # cut
    w = c.get("/api/v1/telemetry/yty-router/latency_ms", params={**params, "window": "5m", "agg": "max"}).json()
    expected = store.query("yty-router", "latency_ms", world.start_ns, world.end_ns, 300, "max")
    assert [p["value"] for p in w["points"]] == pytest.approx([v for _, v in expected])
    link = c.get("/api/v1/telemetry/sapa-router/link_up", params={**params, "window": "10m"}).json()
    assert link["agg"] == "mean" and all(0 <= p["value"] <= 1 for p in link["points"]) and link["points"]


def test_telemetry_csv_by_format_or_accept(world):
    c = world.client()
    url, params = "/api/v1/telemetry/dc-srv-01/inlet_temp_c", {"start": "now-30m"}
    as_json = c.get(url, params=params).json()
    for r in (c.get(url, params={**params, "format": "csv"}), c.get(url, params=params, headers={"Accept": "text/csv"})):
        assert r.headers["content-type"].startswith("text/csv")
        lines = r.text.strip().split("\n")
        assert lines[0] == "time,device,field,value" and len(lines) == as_json["count"] + 1
        assert lines[1].split(",")[1:3] == ["dc-srv-01", "inlet_temp_c"]


def test_telemetry_point_bound_names_the_window(world):
    c = world.client()
    err = error_of(c.get("/api/v1/telemetry/dc-srv-01/cpu_pct", params={"start": "now-30d"}), 413, "too_many_points")
    need = err["details"]["min_window_s"]
    assert f"at least {need} seconds" in err["message"] and need == -(-30 * 86400 // 10_000)
    ok = c.get("/api/v1/telemetry/dc-srv-01/cpu_pct", params={"start": "now-30d", "window": f"{need}s"})
    assert ok.status_code == 200 and ok.json()["agg"] == "mean"


@pytest.mark.parametrize("path, params, status, param", [
    ("/api/v1/telemetry/no-such/latency_ms", {}, 404, None),
    ("/api/v1/telemetry/yty-router/temperature", {}, 404, None),
    ("/api/v1/telemetry/yty-router/latency_ms", {"start": "yesterday"}, 400, "start"),
    ("/api/v1/telemetry/yty-router/latency_ms", {"start": "2026-11-27T10:00:00"}, 400, "start"),
    ("/api/v1/telemetry/yty-router/latency_ms", {"start": "now", "end": "now-1h"}, 400, "start"),
    ("/api/v1/telemetry/yty-router/latency_ms", {"agg": "max"}, 400, "agg"),
    ("/api/v1/telemetry/yty-router/latency_ms", {"window": "5 parsecs"}, 400, "window"),
])
def test_telemetry_refusals_name_the_parameter(world, path, params, status, param):
    err = error_of(world.client().get(path, params=params), status, "not_found" if status == 404 else "bad_parameter")
    if param:
        assert err["details"]["parameter"] == param and err["message"].startswith(param)
    if "temperature" in path:
        assert "latency_ms" in err["message"]  # says which fields it has


@pytest.mark.parametrize("backend", BACKENDS)
def test_latest_values_per_device(world, backend):
    got = world.client(backend).get("/api/v1/telemetry/latest", params={"kind": "commune_router",
                                                                         "district": "bat_xat"}).json()
    devices = {i["device"] for i in got["items"]}
    assert "yty-router" not in devices and "alu-router" in devices  # Y Tý's router is silent
    item = next(i for i in got["items"] if i["device"] == "alu-router")
    assert set(item["values"]) == {"link_up", "latency_ms", "packet_loss_pct", "rx_mbps", "tx_mbps"}
    assert isinstance(item["values"]["link_up"], int)


# --- devices and sites ------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_device_status_follows_the_incident(world, backend):
    c = world.client(backend)
    yty = {d["id"]: d for d in c.get("/api/v1/devices", params={"site": "y_ty"}).json()}
    assert sorted(yty) == YTY_DEVICES and yty["yty-router"]["status"] == "silent"
    assert {d["status"] for i, d in yty.items() if i != "yty-router"} == {"unreachable (inferred)"}
    assert all(d["open_incidents"] for d in yty.values())
    unreachable = c.get("/api/v1/devices", params={"status": "unreachable (inferred)"}).json()
    assert sorted(d["id"] for d in unreachable) == [d for d in YTY_DEVICES if d != "yty-router"]
    detail = c.get("/api/v1/devices/yty-spk-1").json()
    assert detail["depends_on"][:1] == ["yty-router"] and detail["reporting"]["duty_cycle"]
    assert {f["name"]: f["unit"] for f in detail["fields"]}["volume_pct"] == "%"
    ok = c.get("/api/v1/devices/dc-srv-01").json()
    assert ok["status"] == "ok" and ok["last_seen"] and ok["site_name"] == "Trung tâm dữ liệu tỉnh Lào Cai"


def test_site_tree_and_detail(world):
    c = world.client()
    (root,) = c.get("/api/v1/sites").json()
    assert root["id"] == "lao_cai" and root["devices"] == len(REGISTRY.devices)
    bat_xat = next(n for n in root["children"] if n["id"] == "bat_xat")
    y_ty = next(n for n in bat_xat["children"] if n["id"] == "y_ty")
    assert y_ty["status"] == "down" and bat_xat["status"] == "degraded" and y_ty["name"] == "Xã Y Tý"
    assert next(n for n in bat_xat["children"] if n["id"] == "a_lu")["status"] == "ok"
    detail = c.get("/api/v1/sites/y_ty").json()
    assert detail["district_name"] == "Huyện Bát Xát" and len(detail["devices"]) == len(YTY_DEVICES)
    assert [i["kind"] for i in detail["open_incidents"]] == ["uplink_down"]
    error_of(c.get("/api/v1/sites/atlantis"), 404, "not_found")


# --- incidents --------------------------------------------------------------------------------------


def test_incident_list_filters_and_detail(world):
    c = world.client()
    found = c.get("/api/v1/incidents", params={"status": "active", "kind": "uplink_down"}).json()
    assert found["total"] == 1
    inc = found["items"][0]
    assert "Y Tý" in inc["title"] and inc["severity"] == "critical" and inc["unreachable"] == len(YTY_DEVICES) - 1
    assert inc["site_name"] == "Xã Y Tý" and "key" not in inc
    assert c.get("/api/v1/incidents", params={"district": "sa_pa", "kind": "uplink_down"}).json()["total"] == 0
    flood = c.get("/api/v1/incidents", params={"site": "ban_vuoc", "kind": "limit"}).json()["items"]
    assert flood and flood[0]["device"] == "banvuoc-wl-1"
    assert c.get("/api/v1/incidents", params={"since": "now-1m", "status": "resolved"}).json()["total"] == 0
    detail = c.get(f"/api/v1/incidents/{inc['id']}").json()
    assert {m["device"] for m in detail["members"]} == set(YTY_DEVICES) - {"yty-router"}
    assert detail["events"][0]["event"] == "opened" and detail["comments"] == []
    error_of(c.get("/api/v1/incidents/999999"), 404, "not_found")


def test_operator_lifecycle_and_conflicts(world, tmp_path):
    path = world.private_incidents(tmp_path)
    c = TestClient(world.app(incidents_path=path), raise_server_exceptions=False,
                   headers={"X-API-Key": world.tokens["operator"]})
    (inc,) = c.get("/api/v1/incidents", params={"kind": "uplink_down"}).json()["items"]
    url = f"/api/v1/incidents/{inc['id']}"
    r = c.post(f"{url}/acknowledge", json={"comment": "Đang kiểm tra / checking"})
    assert r.status_code == 200 and r.json()["status"] == "acknowledged" and r.json()["acknowledged_by"] == "test-operator"
    assert "already acknowledged" in error_of(c.post(f"{url}/acknowledge", json={}), 409, "conflict")["message"]
    assert c.post(f"{url}/assign", json={"assignee": "kythuat-batxat"}).json()["assignee"] == "kythuat-batxat"
    r = c.post(f"{url}/comments", json={"text": "Đã gọi VNPT / called the carrier"})
    assert r.status_code == 201 and r.json()["author"] == "test-operator"
    error_of(c.post(f"{url}/comments", json={"text": "x", "extra": 1}), 422, "validation_error")
    done = c.post(f"{url}/resolve", json={"comment": "fixed"}).json()
    assert done["status"] == "resolved" and done["resolved_by"] == "test-operator"
    assert [e["event"] for e in done["events"]][-3:] == ["acknowledged", "assigned", "resolved"]
    assert len(done["comments"]) == 1
    error_of(c.post(f"{url}/resolve", json={}), 409, "conflict")
    error_of(c.post(f"{url}/assign", json={"assignee": "x"}), 409, "conflict")
    error_of(c.post("/api/v1/incidents/424242/acknowledge", json={}), 404, "not_found")
    # the uplink is still cut: the detector's next cycle reopens the incident instead of paging anew
    incidents = IncidentStore(path, reopen_s=600)
    DetectionService(REGISTRY, world.sqlite, incidents, clock=lambda: world.end_ns, history_s=0, lag_s=0,
                     statistics=False).cycle()
    assert incidents.get(inc["id"]).status == "open" and incidents.events(inc["id"])[-1][2] == "reopened"


def test_incident_store_upgrades_a_file_from_before_assign_and_resolve(tmp_path):
    old = sqlite3.connect(tmp_path / "old.sqlite")
    old.executescript("""CREATE TABLE incidents (id INTEGER PRIMARY KEY, key TEXT NOT NULL, kind TEXT NOT NULL,
        severity TEXT NOT NULL, status TEXT NOT NULL, title TEXT NOT NULL, cause TEXT NOT NULL, site TEXT NOT NULL,
        district TEXT NOT NULL, device TEXT NOT NULL, started_ns BIGINT NOT NULL, last_active_ns BIGINT NOT NULL,
        resolved_ns BIGINT, acknowledged_by TEXT, evidence TEXT NOT NULL);
        INSERT INTO incidents VALUES (1, 'silence:x', 'silence', 'warning', 'open', 't', 'c', 'y_ty', 'bat_xat',
        'yty-ups', 1, 2, NULL, NULL, '{}');""")
    old.close()
    store = IncidentStore(tmp_path / "old.sqlite")
    assert store.get(1).assignee is None
    store.assign(1, "an", "ops", 3)
    store.resolve(1, "ops", 4, "fixed")
    assert (store.get(1).assignee, store.get(1).resolved_by, store.get(1).status) == ("an", "ops", "resolved")
    assert IncidentStore(tmp_path / "old.sqlite").get(1).assignee == "an"  # a second opener finds the columns


# --- quarantine, metrics, OpenAPI -----------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_quarantine_says_what_was_refused_and_why(world, backend):
    c = world.client(backend)
    q = c.get("/api/v1/quarantine", params={"since": iso(world.start_ns), "limit": 1000}).json()
    assert q["count"] > 0 and {i["reason"] for i in q["items"]} <= set(REASONS)
    reason = q["items"][0]["reason"]
    only = c.get("/api/v1/quarantine", params={"since": iso(world.start_ns), "reason": reason, "limit": 5}).json()
    assert 0 < only["count"] <= 5 and {i["reason"] for i in only["items"]} == {reason}
    assert all(i["detail"] and i["topic"] for i in only["items"])


def test_prometheus_metrics(world):
    c = world.client()
    c.get("/api/v1/devices/yty-router")
    text = c.get("/metrics").text
    assert 'fansipan_incidents_open{severity="critical"} 2.0' in text  # Y Tý's uplink, Bản Vược's flood
    assert "fansipan_quarantined_last_hour{reason=" in text and "fansipan_detector_lag_seconds " in text
    line = next(x for x in text.splitlines() if x.startswith('fansipan_readings_stored_last_minute{kind="server"}'))
    assert float(line.split()[-1]) >= 12 * 5  # 12 servers every 10 s
    assert 'fansipan_api_requests_total{method="GET",route="/api/v1/devices/{device_id}",status="200"}' in text
    assert "yty-router" not in text  # counted per route template, never per raw path
    assert 'fansipan_devices{status="unreachable (inferred)"}' in text


def test_openapi_is_complete(world):
    doc = world.client().get("/openapi.json").json()
    assert doc["info"]["title"] == "Fansipan API"
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            assert op.get("tags") and op.get("summary") and op.get("description"), where
            ok = op["responses"].get("200") or op["responses"].get("201")
            content = ok.get("content", {})
            has_example = any("example" in c or "examples" in c or _schema_has_example(doc, c.get("schema", {}))
                              for c in content.values())
            assert has_example, f"{where}: no example for its answer"
            for c in op.get("requestBody", {}).get("content", {}).values():
                assert "example" in c or _schema_has_example(doc, c.get("schema", {})), f"{where}: body example"
            if path != "/health":
                assert "401" in op["responses"], where
            for status, resp in op["responses"].items():
                if status[0] in "45":
                    assert resp["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse"), where


def _schema_has_example(doc, schema) -> bool:
    if "examples" in schema or "example" in schema:
        return True
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return "examples" in doc["components"]["schemas"][name] or "example" in doc["components"]["schemas"][name]
    for key in ("items", "anyOf", "oneOf"):
        sub = schema.get(key)
        subs = sub if isinstance(sub, list) else [sub] if sub else []
        if any(_schema_has_example(doc, s) for s in subs):
            return True
    return False
