"""Scoped API keys: keys of several scopes x every route that returns data, over the seeded world
(test_api.py: the real SQLite store and, for telemetry and Grafana, a real influxd too).

What must hold, for every scope: a key sees exactly the devices its scope owns plus the shared ones,
their telemetry, the incidents that concern them, nothing else; a device, site or incident out of
scope answers 404 exactly like one that does not exist.  The expected sets are computed here from the
registry, independently of api/scope.py: the rule is the one docs/shared-data.md states.
"""

from __future__ import annotations

import re
import sqlite3

import pytest
import yaml
from test_api import BACKENDS, REGISTRY, TestClient, error_of, iso, shared_world

from analytics.incidents import Condition, IncidentStore
from api.keys import KeyStore, digest
from api.keys import main as keys_main
from device_profiles import ProfileError, load_registry
from fansipan.config import Settings

G = "/api/v1/grafana"
PROVINCE = "province"
SCOPES = [PROVINCE, "agency:so_tnmt", "agency:ubnd_y_ty", "agency:evn_laocai", "agency:so_tttt",
          "district:bat_xat", "commune:y_ty", "commune:sa_pa_ward"]
SHARED = {d.id for d in REGISTRY.devices.values() if d.shared}


def own_and_seen(scope: str) -> tuple[set[str], set[str]]:
    """The rule, from the registry: (devices in the scope, devices it sees = those + the shared ones)."""
    devs = REGISTRY.devices.values()
    if scope == PROVINCE:
        return {d.id for d in devs}, {d.id for d in devs}
    kind, ident = scope.split(":")
    own = {d.id for d in devs if (kind == "agency" and d.owner == ident) or (kind == "district" and d.district == ident)
           or (kind == "commune" and d.site == ident)}
    return own, own | SHARED


def scope_sites(scope: str) -> set[str]:
    if not scope.startswith(("district:", "commune:")):
        return set()
    ident = scope.split(":")[1]
    return {s.id for s in REGISTRY.sites.values() if s.id == ident or s.district == ident}


def sees(scope: str, inc) -> bool:
    """An incident is visible when its device at fault is, a member device is in scope, or it sits in scope."""
    own, seen = own_and_seen(scope)
    return (scope == PROVINCE or inc.device in seen or inc.site in scope_sites(scope)
            or any(dev in own for dev, _ in inc.members))


@pytest.fixture(scope="module")
def world(tmp_path_factory, request):
    return shared_world(tmp_path_factory, request)


@pytest.fixture(scope="module")
def scoped(world, tmp_path_factory):
    """A private copy of the incidents database with a viewer and an operator key per scope."""
    path = world.private_incidents(tmp_path_factory.mktemp("scopes"))
    keys = KeyStore(path)
    tokens = {}
    for scope in SCOPES:
        for role in ("viewer", "operator"):
            tokens[scope, role] = keys.create(f"{scope}-{role}", role, scope=None if scope == PROVINCE else scope)[1]
    keys.close()
    incidents = IncidentStore(path)
    every = incidents.all()
    incidents.close()
    return path, tokens, every


class Caller:
    def __init__(self, world, scoped, scope: str, backend: str = "sqlite", role: str = "viewer", path=None):
        self.client = TestClient(world.app(backend, incidents_path=path or scoped[0]), raise_server_exceptions=False)
        self.headers = {"Authorization": f"Bearer {scoped[1][scope, role]}"}

    def get(self, url, **kw):
        return self.client.get(url, headers=self.headers, **kw)

    def post(self, url, body):
        return self.client.post(url, json=body, headers=self.headers)


_CALLERS: dict = {}


def caller(world, scoped, scope, backend="sqlite") -> Caller:
    if (scope, backend) not in _CALLERS:
        world.store(backend)  # skips or fails with the reason when influxd is missing
        _CALLERS[scope, backend] = Caller(world, scoped, scope, backend)
    return _CALLERS[scope, backend]


def ok(resp, status=200):
    assert resp.status_code == status, resp.text[:400]
    return resp.json()


def outside(scope: str) -> str:
    """A device this scope must not see (None for the province)."""
    _, seen = own_and_seen(scope)
    return min(set(REGISTRY.devices) - seen) if scope != PROVINCE else ""


# --- the registry's owners -------------------------------------------------------------------------------


def test_shipped_devices_have_owners_and_shared_data():
    for d in REGISTRY.devices.values():  # a kind without an owner is seen by province-wide keys only: decide
        assert d.owner in REGISTRY.agencies, f"{d.id} ({d.kind}) has no owner: add owner: to its kind's profile"
        if d.kind == "ip_loudspeaker":
            assert d.owner == f"ubnd_{d.site}" and REGISTRY.agencies[d.owner].commune == d.site
    assert {d.kind for d in REGISTRY.devices.values() if d.shared} >= {"water_level", "air_quality"}
    assert not {d.kind for d in REGISTRY.devices.values() if d.shared} & {"commune_router", "ip_loudspeaker", "camera"}
    assert REGISTRY.agencies["so_tnmt"].name_vi == "Sở Tài nguyên và Môi trường"
    assert len([a for a in REGISTRY.agencies.values() if a.type == "people_committee"]) == 58


def _registry(tmp_path, kind_extra=None, site_extra=None, device_extra=None, agencies=None):
    (tmp_path / "kinds").mkdir()
    kind = {"kind": "x", "family": "commune", "title": {"vi": "X", "en": "X"}, "topic": "t/{site}/x/{device}",
            "format": "json", "reporting": {"interval_s": 60, "jitter_s": 5},
            "fields": {"v": {"type": "float", "unit": "1", "min": 0, "max": 1}}, **(kind_extra or {})}
    (tmp_path / "kinds" / "x.yaml").write_text(yaml.safe_dump(kind), encoding="utf-8")
    sites = {"sites": [{"id": "p", "type": "province", "name": "P"},
                       {"id": "c", "type": "commune", "name": "Xã C", "parent": "p", **(site_extra or {}),
                        "devices": [{"id": "x-1", "kind": "x", **(device_extra or {})}, {"id": "x-2", "kind": "x"}]},
                       {"id": "dc", "type": "data_center", "name": "DC", "parent": "p",
                        "devices": [{"id": "x-3", "kind": "x", "owner": "ubnd_c"}, {"id": "x-4", "kind": "x"}]}]}
    (tmp_path / "sites.yaml").write_text(yaml.safe_dump(sites, allow_unicode=True), encoding="utf-8")
    agencies = agencies or {"agencies": [{"id": "a1", "type": "department", "name": {"vi": "A", "en": "A"}},
                                         {"id": "a2", "type": "enterprise", "name": {"vi": "B", "en": "B"}}]}
    (tmp_path / "agencies.yaml").write_text(yaml.safe_dump(agencies, allow_unicode=True), encoding="utf-8")
    return tmp_path


def test_owner_precedence_device_then_site_then_kind(tmp_path):
    reg = load_registry(_registry(tmp_path, {"owner": "a1"}, {"owner": "a2", "shared": True},
                                  {"owner": "a1", "shared": False}))
    assert (reg.devices["x-1"].owner, reg.devices["x-1"].shared) == ("a1", False)  # the device's own
    assert (reg.devices["x-2"].owner, reg.devices["x-2"].shared) == ("a2", True)  # the site's
    assert reg.devices["x-3"].owner == "ubnd_c" and reg.agencies["ubnd_c"].name_vi == "UBND Xã C"


@pytest.mark.parametrize("kind_extra, device_extra, agencies, expected", [
    ({"owner": "nobody"}, None, None, "kind 'x': owner: agency 'nobody' does not exist"),
    (None, {"owner": "a9"}, None, "sites.yaml: sites.1.devices.0.owner: agency 'a9' does not exist"),
    ({"owner": "ubnd_{commune}"}, None, None, "sites.yaml: sites.2.devices.1.owner: kind 'x' belongs to a commune"),
    (None, {"ownr": "a1"}, None, "sites.yaml: sites.1.devices.0.ownr: unknown key"),
    (None, None, {"agencies": [{"id": "ubnd_c", "type": "other", "name": {"vi": "U", "en": "U"}}]},
     "agencies.yaml: agencies.0.id: 'ubnd_c': ids ubnd_<commune> are made for every commune"),
    (None, None, {"agencies": [{"id": "a1", "type": "ministry", "name": {"vi": "U", "en": "U"}}]},
     "agencies.yaml: agencies.0.type: Input should be"),
], ids=["unknown-kind-owner", "unknown-device-owner", "committee-outside-commune", "typo", "declared-ubnd",
        "bad-type"])
def test_owner_errors_name_file_and_key(tmp_path, kind_extra, device_extra, agencies, expected):
    with pytest.raises(ProfileError) as exc:
        load_registry(_registry(tmp_path, kind_extra, None, device_extra, agencies))
    text = "\n".join(exc.value.problems)
    assert expected in text, text


# --- keys with a scope ---------------------------------------------------------------------------------


def test_keys_command_and_api_take_a_scope(world, tmp_path, capsys):
    s = Settings(incidents_path=str(tmp_path / "i.sqlite"))
    assert keys_main(["create", "--role", "viewer", "--name", "tnmt", "--scope", "agency:so_tnmt"], s) == 0
    token = capsys.readouterr().out.strip()
    assert KeyStore(s.incidents_path).verify(token).scope == "agency:so_tnmt"
    assert keys_main(["create", "--role", "viewer", "--name", "x", "--scope", "agency:so_xyz"], s) == 1
    assert "no agency 'so_xyz'" in capsys.readouterr().err
    assert keys_main(["create", "--role", "admin", "--name", "x", "--scope", "commune:y_ty"], s) == 1
    assert "province-wide" in capsys.readouterr().err
    assert keys_main(["list"], s) == 0 and "agency:so_tnmt" in capsys.readouterr().out
    admin = TestClient(world.app(incidents_path=world.private_incidents(tmp_path)), raise_server_exceptions=False,
                       headers={"X-API-Key": world.tokens["admin"]})
    made = ok(admin.post("/api/v1/keys", json={"name": "yty", "role": "operator", "scope": "commune:y_ty"}), 201)
    assert made["scope"] == "commune:y_ty"
    listed = {k["name"]: k for k in ok(admin.get("/api/v1/keys"))}
    assert listed["yty"]["scope"] == "commune:y_ty" and "scope" not in listed["test-viewer"]  # province-wide
    for scope, needle in (("district:y_ty", "no district 'y_ty'"), ("ward:y_ty", "expected agency:<id>"),
                          ("commune:", "expected agency:<id>")):
        err = error_of(admin.post("/api/v1/keys", json={"name": "x", "role": "viewer", "scope": scope}),
                       400, "bad_parameter")
        assert err["details"]["parameter"] == "scope" and needle in err["message"], err
    err = error_of(admin.post("/api/v1/keys", json={"name": "x", "role": "admin", "scope": "agency:so_tttt"}),
                   400, "bad_parameter")
    assert "province-wide" in err["message"]


def test_an_older_keys_table_gains_the_scope_column(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE api_keys (id INTEGER PRIMARY KEY, name TEXT NOT NULL, role TEXT NOT NULL, "
                   "prefix TEXT NOT NULL, key_sha256 TEXT NOT NULL UNIQUE, created_ns BIGINT NOT NULL, "
                   "last_used_ns BIGINT, revoked_ns BIGINT)")
        db.execute("INSERT INTO api_keys (name, role, prefix, key_sha256, created_ns) VALUES "
                   "('ops', 'admin', 'fsp_old', ?, 1)", (digest("fsp_old-key"),))
    keys = KeyStore(path)
    assert keys.verify("fsp_old-key").scope is None  # an old key stays province-wide
    assert keys.create("tnmt", "viewer", scope="agency:so_tnmt")[0].scope == "agency:so_tnmt"
    KeyStore(path).close()  # opening again finds the column there


# --- the matrix: scope x route ---------------------------------------------------------------------------


@pytest.mark.parametrize("scope", SCOPES)
def test_devices(world, scoped, scope):
    c = caller(world, scoped, scope)
    _, seen = own_and_seen(scope)
    assert {d["id"] for d in ok(c.get("/api/v1/devices"))} == seen
    assert SHARED <= seen  # shared data is seen by every scope
    one = ok(c.get(f"/api/v1/devices/{min(seen - SHARED or seen)}"))
    assert set(one["depends_on"]) | set(one["dependants"]) <= seen
    if scope != PROVINCE:
        hidden, unknown = c.get(f"/api/v1/devices/{outside(scope)}"), c.get("/api/v1/devices/no-such-device")
        assert error_of(hidden, 404, "not_found")["message"].replace(outside(scope), "X") \
            == error_of(unknown, 404, "not_found")["message"].replace("no-such-device", "X")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scope", SCOPES)
def test_telemetry(world, scoped, scope, backend):
    c = caller(world, scoped, scope, backend)
    own, seen = own_and_seen(scope)
    latest = ok(c.get("/api/v1/telemetry/latest"))["items"]
    assert latest and {r["device"] for r in latest} <= seen  # at least the shared ones reported
    steady = sorted(d for d in (own or seen) if REGISTRY.devices[d].kind != "ip_loudspeaker")
    dev = (steady or sorted(own))[0]  # loudspeakers report only in broadcast windows (one is in the range)
    field = next(iter(REGISTRY.kinds[REGISTRY.devices[dev].kind].fields))
    rng = {"start": iso(world.start_ns), "end": iso(world.end_ns), "window": "5m"}
    assert ok(c.get(f"/api/v1/telemetry/{dev}/{field}", params=rng))["count"] > 0
    if scope != PROVINCE:
        hidden = outside(scope)
        hfield = next(iter(REGISTRY.kinds[REGISTRY.devices[hidden].kind].fields))
        r = c.get(f"/api/v1/telemetry/{hidden}/{hfield}", params=rng)
        unknown = c.get(f"/api/v1/telemetry/no-such-device/{hfield}", params=rng)
        assert error_of(r, 404, "not_found")["message"].replace(hidden, "X") \
            == error_of(unknown, 404, "not_found")["message"].replace("no-such-device", "X")
        assert error_of(r, 404, "not_found")["details"] == {"device": hidden}


def _tree_sites(nodes) -> dict[str, dict]:
    out = {}
    for n in nodes:
        out[n["id"]] = n
        out.update(_tree_sites(n["children"]))
    return out


@pytest.mark.parametrize("scope", SCOPES)
def test_sites(world, scoped, scope):
    c = caller(world, scoped, scope)
    _, seen = own_and_seen(scope)
    tree = ok(c.get("/api/v1/sites"))
    assert sum(n["devices"] for n in tree) == len(seen)
    sites = _tree_sites(tree)
    assert {REGISTRY.devices[d].site for d in seen} <= set(sites)
    detail = ok(c.get("/api/v1/sites/lao_cai"))
    assert {d["id"] for d in detail["devices"]} == seen
    assert {i["id"] for i in detail["open_incidents"]} == {i.id for i in scoped[2] if i.status != "resolved"
                                                           and sees(scope, i)}
    hidden = sorted(s for s in REGISTRY.sites if s not in sites)
    assert scope != PROVINCE or not hidden
    if hidden:  # (so_tttt has a router in every commune: it sees every site)
        error_of(c.get(f"/api/v1/sites/{hidden[0]}"), 404, "not_found")


@pytest.mark.parametrize("scope", SCOPES)
def test_incidents(world, scoped, scope):
    c = caller(world, scoped, scope)
    _, seen = own_and_seen(scope)
    every = scoped[2]
    by_id = {i.id: i for i in every}
    newest_first = [i["id"] for i in ok(caller(world, scoped, PROVINCE).get("/api/v1/incidents",
                                                                            params={"limit": 1000}))["items"]]
    assert sorted(newest_first) == sorted(by_id)
    want = [i for i in newest_first if sees(scope, by_id[i])]
    got = ok(c.get("/api/v1/incidents", params={"limit": 1000}))
    assert got["total"] == len(want) and [i["id"] for i in got["items"]] == want
    page = ok(c.get("/api/v1/incidents", params={"limit": 2, "offset": 1}))
    assert [i["id"] for i in page["items"]] == want[1:3] and page["total"] == len(want)
    for inc_id in want[:5]:
        assert {m["device"] for m in ok(c.get(f"/api/v1/incidents/{inc_id}"))["members"]} <= seen
    hidden = sorted({i.id for i in every} - set(want))
    for inc_id in hidden[:5]:
        assert "your key can see" in error_of(c.get(f"/api/v1/incidents/{inc_id}"), 404, "not_found")["message"]
    outage = next(i for i in every if i.kind == "uplink_down" and i.site == "y_ty")
    assert (outage.id in want) == (scope in (PROVINCE, "agency:ubnd_y_ty", "agency:so_tttt", "district:bat_xat",
                                             "commune:y_ty"))
    if outage.id in want:  # counts tell only of what the key sees
        item = next(i for i in got["items"] if i["id"] == outage.id)
        assert item["unreachable"] == sum(1 for d, r in outage.members if r == "unreachable (inferred)" and d in seen)
    flood = next(i for i in every if i.device == "banvuoc-wl-1" and i.kind == "limit")
    assert flood.id in want  # an incident of shared data is shared too


@pytest.mark.parametrize("scope", [s for s in SCOPES if s != PROVINCE])
def test_operator_actions_only_in_scope(world, scoped, scope, tmp_path):
    path = tmp_path / "incidents.sqlite"
    with sqlite3.connect(scoped[0]) as src, sqlite3.connect(path) as dst:
        src.backup(dst)
    store = IncidentStore(path)  # an open incident of the power company in Sa Pa: out of every scope tested here
    light = REGISTRY.devices["sapa-light-1"]
    store.reconcile([Condition(key="limit:test-light", kind="limit", severity="warning", title="test light",
                               cause="test", site=light.site, district=light.district, device=light.id,
                               started_ns=world.end_ns - 60 * 10**9)], world.end_ns)
    active = [i for i in store.all() if i.status == "open"]
    store.close()
    c = Caller(world, scoped, scope, role="operator", path=path)
    hidden = next(i for i in active if not sees(scope, i))
    for action, body in (("acknowledge", {"comment": "x"}), ("assign", {"assignee": "an"}),
                         ("resolve", {"comment": "x"}), ("comments", {"text": "x"})):
        error_of(c.post(f"/api/v1/incidents/{hidden.id}/{action}", body), 404, "not_found")
    store = IncidentStore(path)
    assert store.get(hidden.id).status == "open" and not store.comments(hidden.id)
    store.close()
    mine = next(i for i in active if sees(scope, i))
    assert ok(c.post(f"/api/v1/incidents/{mine.id}/acknowledge", {"comment": "đang xử lý"}))["status"] == "acknowledged"


@pytest.mark.parametrize("scope", SCOPES)
def test_quarantine(world, scoped, scope):
    c = caller(world, scoped, scope)
    _, seen = own_and_seen(scope)
    rows = ok(c.get("/api/v1/quarantine", params={"since": iso(world.start_ns), "until": iso(world.end_ns),
                                                  "limit": 1000}))["items"]
    devices = {r["device"] for r in rows}
    if scope == PROVINCE:  # a refusal naming no known device (an unknown topic, say) is for province-wide keys
        assert rows and devices - set(REGISTRY.devices)
    else:
        assert devices <= seen


def gquery(c, world, *targets):
    body = {"range": {"from": iso(world.start_ns), "to": iso(world.end_ns)}, "intervalMs": 60_000,
            "maxDataPoints": 500, "targets": [{"refId": "A", "target": t, "payload": p} for t, p in targets]}
    return ok(c.post(f"{G}/query", body))


def rows_of(answer) -> list[dict]:
    (t,) = answer
    names = [col["text"] for col in t["columns"]]
    return [dict(zip(names, r)) for r in t["rows"]]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scope", SCOPES)
def test_grafana(world, scoped, scope, backend):
    c = caller(world, scoped, scope, backend)
    own, seen = own_and_seen(scope)
    var = lambda **p: {v["__value"] for v in ok(c.post(f"{G}/variable", {"payload": p}))}
    assert var(target="devices") == seen
    sites = {REGISTRY.devices[d].site for d in seen}
    assert {s for s in var(target="communes", include_dc=True)} <= sites | scope_sites(scope)
    assert {v["text"] for v in ok(c.post(f"{G}/tag-values", {"key": "site"}))} <= sites | scope_sites(scope)
    opts = ok(c.post(f"{G}/metric-payload-options", {"metric": "telemetry", "name": "device", "payload": {}}))
    assert {o["value"] for o in opts} == seen
    kind = REGISTRY.devices[min(own or seen)].kind
    field = next(iter(REGISTRY.kinds[kind].fields))
    per_kind = [d for d in sorted(seen) if REGISTRY.devices[d].kind == kind][:20]
    series = gquery(c, world, ("telemetry", {"kind": kind, "field": field, "device": per_kind}))
    assert {s["target"].split()[0] for s in series} == set(per_kind)
    assert any(s["datapoints"] for s in series)
    if scope != PROVINCE:
        hidden = outside(scope)
        hkind = REGISTRY.devices[hidden].kind
        body = {"range": {"from": iso(world.start_ns), "to": iso(world.end_ns)}, "targets": [
            {"target": "telemetry", "payload": {"kind": hkind, "field": next(iter(REGISTRY.kinds[hkind].fields)),
                                                "device": hidden}}]}
        err = error_of(c.post(f"{G}/query", body), 400, "bad_parameter")
        named = set(re.findall(r"'([a-z0-9_-]+)'", err["message"])) & set(REGISTRY.devices)
        assert "unknown value" in err["message"] and named - {hidden} <= seen  # the choices listed are its own
    visible = {i.id for i in scoped[2] if sees(scope, i)}
    assert {r["id"] for r in rows_of(gquery(c, world, ("incidents_open", {})))} == \
        {i.id for i in scoped[2] if i.status != "resolved" and i.id in visible}
    assert {r["device"] for r in rows_of(gquery(c, world, ("device_status", {})))} == seen
    assert {r["site"] for r in rows_of(gquery(c, world, ("site_status", {})))} == sites
    notes = rows_of(gquery(c, world, ("incidents_annotations", {})))
    assert notes and {int(re.search(r"#(\d+)", n["text"]).group(1)) for n in notes} <= visible
    old = ok(c.post(f"{G}/annotations", {"range": {"from": iso(world.start_ns), "to": iso(world.end_ns)},
                                         "annotation": {"name": "x"}}))
    assert {int(re.search(r"#(\d+)", a["text"]).group(1)) for a in old} <= visible


@pytest.mark.parametrize("scope", SCOPES)
def test_status_page_and_prometheus(world, scoped, scope):
    c = caller(world, scoped, scope)
    page = c.get("/status")
    assert page.status_code == 200
    visible = [i for i in scoped[2] if i.status != "resolved" and sees(scope, i)]
    hidden = {i.title for i in scoped[2] if i.status != "resolved"} - {i.title for i in visible}
    for inc in visible:
        assert inc.title in page.text
    for title in hidden:
        assert title not in page.text
    metrics = c.get("/metrics")
    if scope == PROVINCE:
        assert metrics.status_code == 200 and "fansipan_" in metrics.text
    else:
        assert "province-wide" in error_of(metrics, 403, "forbidden")["message"]


# Routes that return no device, site, telemetry or incident data (or are admin-only).
NO_DATA = {"/health", "/api/v1/grafana", "/api/v1/grafana/metrics", "/api/v1/grafana/tag-keys",
           "/api/v1/grafana/search", "/api/v1/keys", "/api/v1/keys/{key_id}"}
COVERED = {"/status", "/metrics", "/api/v1/telemetry/latest", "/api/v1/telemetry/{device}/{field}",
           "/api/v1/devices", "/api/v1/devices/{device_id}", "/api/v1/sites", "/api/v1/sites/{site_id}",
           "/api/v1/incidents", "/api/v1/incidents/{incident_id}", "/api/v1/incidents/{incident_id}/acknowledge",
           "/api/v1/incidents/{incident_id}/assign", "/api/v1/incidents/{incident_id}/resolve",
           "/api/v1/incidents/{incident_id}/comments", "/api/v1/quarantine", "/api/v1/grafana/query",
           "/api/v1/grafana/variable", "/api/v1/grafana/tag-values", "/api/v1/grafana/metric-payload-options",
           "/api/v1/grafana/annotations"}
# Province-wide only: a scoped key gets 403 (tests/test_availability_api.py covers every one).
COVERED |= {"/api/v1/availability", "/api/v1/availability/outages", "/api/v1/availability/report",
            "/api/v1/maintenance", "/api/v1/maintenance/{window_id}"}


# Added by other parts of issue 9 / other issues while scopes were built; the lead applies api.scope to
# them at integration. Until then they answer a scoped key like a province-wide one. Remove them from
# here as they get their scope cases.
PENDING = {"/api/v1/availability", "/api/v1/availability/outages", "/api/v1/availability/report",
           "/api/v1/maintenance", "/api/v1/maintenance/{window_id}"}


def test_every_data_route_has_scope_cases(world, scoped):
    paths = set(caller(world, scoped, PROVINCE).client.get("/openapi.json").json()["paths"])
    missing = paths - NO_DATA - COVERED - PENDING
    assert not missing, f"routes without scope cases in tests/test_api_scopes.py: {sorted(missing)}: apply " \
                        "api.scope to them and add their cases"
