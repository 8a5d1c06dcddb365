"""Who may do what: every route x every caller (no key, a bad key, a revoked key, viewer, operator,
admin); API keys (hashed at rest, shown once, revocable, the bootstrap command); and a
schemathesis run over the OpenAPI document with an admin key (no 5xx, answers as documented).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from api.keys import KeyStore
from api.keys import main as keys_main
from api.settings import ApiSettings
from fansipan.config import ConfigError, Settings
from test_api import TestClient, error_of, shared_world

ROOT = Path(__file__).resolve().parent.parent
CALLERS = ("none", "bad", "revoked", "viewer", "operator", "admin")
RANK = {"viewer": 0, "operator": 1, "admin": 2}
Q = {"range": {"from": "now-1h", "to": "now"}, "targets": [{"target": "site_status"}]}

# (method, path, json body, role needed (None: public), status when allowed, needs a private incidents copy)
ROUTES = [
    ("GET", "/health", None, None, 200, False),
    ("GET", "/status", None, "viewer", 200, False),
    ("GET", "/metrics", None, "viewer", 200, False),
    ("GET", "/api/v1/telemetry/latest", None, "viewer", 200, False),
    ("GET", "/api/v1/telemetry/dc-srv-01/cpu_pct", None, "viewer", 200, False),
    ("GET", "/api/v1/devices", None, "viewer", 200, False),
    ("GET", "/api/v1/devices/yty-router", None, "viewer", 200, False),
    ("GET", "/api/v1/sites", None, "viewer", 200, False),
    ("GET", "/api/v1/sites/y_ty", None, "viewer", 200, False),
    ("GET", "/api/v1/incidents", None, "viewer", 200, False),
    ("GET", "/api/v1/incidents/1", None, "viewer", 200, False),
    ("POST", "/api/v1/incidents/1/acknowledge", {"comment": "ok"}, "operator", 200, True),
    ("POST", "/api/v1/incidents/1/assign", {"assignee": "an"}, "operator", 200, True),
    ("POST", "/api/v1/incidents/1/resolve", {"comment": "done"}, "operator", 200, True),
    ("POST", "/api/v1/incidents/1/comments", {"text": "ghi chú"}, "operator", 201, True),
    ("GET", "/api/v1/quarantine", None, "viewer", 200, False),
    ("GET", "/api/v1/grafana", None, "viewer", 200, False),
    ("POST", "/api/v1/grafana/metrics", {}, "viewer", 200, False),
    ("POST", "/api/v1/grafana/metric-payload-options", {"metric": "telemetry", "name": "kind"}, "viewer", 200, False),
    ("POST", "/api/v1/grafana/query", Q, "viewer", 200, False),
    ("POST", "/api/v1/grafana/variable", {"payload": {"target": "districts"}}, "viewer", 200, False),
    ("POST", "/api/v1/grafana/tag-keys", {}, "viewer", 200, False),
    ("POST", "/api/v1/grafana/tag-values", {"key": "district"}, "viewer", 200, False),
    ("POST", "/api/v1/grafana/search", {}, "viewer", 200, False),
    ("POST", "/api/v1/grafana/annotations", {"range": Q["range"]}, "viewer", 200, False),
    ("POST", "/api/v1/keys", {"name": "someone", "role": "viewer"}, "admin", 201, False),
    ("GET", "/api/v1/keys", None, "admin", 200, False),
    ("DELETE", "/api/v1/keys/{fresh}", None, "admin", 200, False),
    ("GET", "/api/v1/availability", None, "viewer", 200, False),
    ("GET", "/api/v1/availability/outages", None, "viewer", 200, False),
    ("GET", "/api/v1/availability/report", None, "viewer", 200, False),
    ("GET", "/api/v1/maintenance", None, "viewer", 200, False),
    ("POST", "/api/v1/maintenance", {"site": "y_ty", "start": "2026-07-15T10:00:00+07:00",
                                     "end": "2026-07-15T11:00:00+07:00", "reason": "thay cáp"}, "operator", 201, True),
    ("DELETE", "/api/v1/maintenance/999", None, "operator", 404, False),  # the role is checked before the id
]


@pytest.fixture(scope="session")
def world(tmp_path_factory, request):
    return shared_world(tmp_path_factory, request)


def expected(role_needed: str | None, caller: str, ok: int) -> int:
    if role_needed is None:
        return ok
    if caller in ("none", "bad", "revoked"):
        return 401
    return ok if RANK[caller] >= RANK[role_needed] else 403


@pytest.fixture(scope="module")
def shared(world):
    return TestClient(world.app(), raise_server_exceptions=False)


def test_the_matrix_covers_every_route(shared):
    documented = {(m.upper(), p) for p, ops in shared.get("/openapi.json").json()["paths"].items() for m in ops}
    listed = {(m, p.replace("{fresh}", "{key_id}").replace("/1/", "/{incident_id}/").replace("incidents/1",
              "incidents/{incident_id}").replace("dc-srv-01/cpu_pct", "{device}/{field}")
              .replace("devices/yty-router", "devices/{device_id}").replace("sites/y_ty", "sites/{site_id}")
              .replace("maintenance/999", "maintenance/{window_id}"))
              for m, p, *_ in ROUTES}
    assert documented == listed


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("method, path, body, needed, ok, private", ROUTES, ids=[f"{r[0]} {r[1]}" for r in ROUTES])
def test_auth_matrix(world, shared, tmp_path, caller, method, path, body, needed, ok, private):
    client = shared
    if private:  # this action changes the incident: a private copy, so every case starts from "open"
        client = TestClient(world.app(incidents_path=world.private_incidents(tmp_path)), raise_server_exceptions=False)
    if "{fresh}" in path:
        keys = KeyStore(world.base / "incidents.sqlite")
        path = path.replace("{fresh}", str(keys.create("to-revoke", "viewer")[0].id))
        keys.close()
    headers = {"none": {}, "bad": {"Authorization": "Bearer fsp_not-a-key"},
               "revoked": {"X-API-Key": world.tokens["revoked"]}}.get(caller)
    if headers is None:
        headers = {"Authorization": f"Bearer {world.tokens[caller]}"}
    r = client.request(method, path, json=body, headers=headers)
    want = expected(needed, caller, ok)
    assert r.status_code == want, r.text[:300]
    if want in (401, 403):
        err = error_of(r, want, "unauthorized" if want == 401 else "forbidden")
        reason = {"none": "missing_key", "bad": "invalid_key", "revoked": "revoked_key"}.get(caller)
        assert want == 403 or err["details"]["reason"] == reason
        assert want == 401 or needed in err["message"]


def test_status_page_public_only_when_configured(world):
    public = TestClient(world.app(status_public=True), raise_server_exceptions=False)
    assert public.get("/status").status_code == 200
    assert public.get("/api/v1/devices").status_code == 401  # only the page
    env = {"FANSIPAN_STATUS_PUBLIC": "1", "FANSIPAN_API_PORT": "9000"}
    assert ApiSettings.from_env(env) == ApiSettings(port=9000, status_public=True)
    assert ApiSettings.from_env({}) == ApiSettings(host="127.0.0.1", port=8080, status_public=False)
    for var, value in (("FANSIPAN_STATUS_PUBLIC", "maybe"), ("FANSIPAN_API_PORT", "http"),
                       ("FANSIPAN_API_PORT", "70000")):
        with pytest.raises(ConfigError, match=var):
            ApiSettings.from_env({var: value})


def test_key_headers(world, shared):
    viewer = world.tokens["viewer"]
    assert shared.get("/api/v1/sites", headers={"X-API-Key": viewer}).status_code == 200
    assert shared.get("/api/v1/sites", headers={"Authorization": f"bearer {viewer}"}).status_code == 200
    err = error_of(shared.get("/api/v1/sites", headers={"Authorization": f"Basic {viewer}"}), 401, "unauthorized")
    assert err["details"]["reason"] == "malformed_header" and "Bearer" in err["message"]
    r = shared.get("/api/v1/sites", params={"key": viewer, "api_key": viewer})  # never from the URL
    assert error_of(r, 401, "unauthorized")["details"]["reason"] == "missing_key"
    assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_keys_are_hashed_shown_once_and_revocable(world, tmp_path):
    path = world.private_incidents(tmp_path)
    admin = TestClient(world.app(incidents_path=path), raise_server_exceptions=False,
                       headers={"X-API-Key": world.tokens["admin"]})
    created = admin.post("/api/v1/keys", json={"name": "grafana", "role": "viewer"}).json()
    token = created["key"]
    assert token.startswith("fsp_") and len(token) >= 40 and created["prefix"] == token[:12]
    listed = admin.get("/api/v1/keys").json()
    assert all(set(k) == {"id", "name", "role", "prefix", "created", "last_used", "revoked"} for k in listed)
    assert token not in admin.get("/api/v1/keys").text
    raw = path.read_bytes() + (path.parent / "incidents.sqlite-wal").read_bytes()
    assert token.encode() not in raw and hashlib.sha256(token.encode()).hexdigest().encode() in raw
    me = TestClient(admin.app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {token}"})
    assert me.get("/api/v1/devices").status_code == 200
    assert me.post("/api/v1/keys", json={"name": "x", "role": "admin"}).status_code == 403  # no escalation
    assert admin.delete(f"/api/v1/keys/{created['id']}").json()["revoked"]
    assert error_of(me.get("/api/v1/devices"), 401, "unauthorized")["details"]["reason"] == "revoked_key"
    error_of(admin.delete(f"/api/v1/keys/{created['id']}"), 409, "conflict")
    error_of(admin.delete("/api/v1/keys/99999"), 404, "not_found")
    error_of(admin.post("/api/v1/keys", json={"name": "x", "role": "root"}), 422, "validation_error")


def test_bootstrap_command(tmp_path, capsys):
    s = Settings(incidents_path=str(tmp_path / "i.sqlite"))
    assert keys_main(["create", "--role", "admin", "--name", "ops"], s) == 0
    token = capsys.readouterr().out.strip()
    keys = KeyStore(s.incidents_path)
    assert keys.verify(token).role == "admin"
    assert keys_main(["list"], s) == 0
    out = capsys.readouterr().out
    assert "admin" in out and "ops" in out and token not in out
    assert keys_main(["revoke", "1"], s) == 0 and keys.verify(token).revoked
    assert keys_main(["revoke", "1"], s) == 1 and "already revoked" in capsys.readouterr().err
    env = {**os.environ, "FANSIPAN_INCIDENTS_PATH": str(tmp_path / "j.sqlite")}
    run = subprocess.run([sys.executable, "-m", "api", "keys", "create", "--role", "viewer", "--name", "grafana"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert KeyStore(tmp_path / "j.sqlite").verify(run.stdout.strip()).name == "grafana"


# --- schemathesis ---------------------------------------------------------------------------------


def test_openapi_conformance(world, tmp_path):
    """Generated requests (valid and invalid) for every operation, with an admin key: never a 5xx,
    answers as documented (status codes, content types, response schemas).

    Driven through schemathesis' Python API (its pytest plugin does not run under pytest 9 here).
    DELETE /api/v1/keys/{id} is left out: it could revoke the admin key the run uses (the key tests
    cover it). ``positive_data_acceptance`` is left out: a well-typed kind or device that is not in
    the registry is rightly refused with 400/404.
    """
    from schemathesis.checks import positive_data_acceptance

    app = world.app(incidents_path=world.private_incidents(tmp_path))
    api = schemathesis.openapi.from_asgi("/openapi.json", app)
    headers = {"Authorization": f"Bearer {world.tokens['admin']}"}
    failures, ran = [], 0
    modes = ((schemathesis.GenerationMode.POSITIVE, 8), (schemathesis.GenerationMode.NEGATIVE, 5))
    for result in api.get_all_operations():
        op = result.ok()
        if op.method.upper() == "DELETE":
            continue
        for mode, examples in modes:
            @given(case=op.as_strategy(generation_mode=mode))
            @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck),
                      derandomize=True, database=None)
            def run(case):
                case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

            try:
                run()
                ran += 1
            except Unsatisfiable:  # nothing to make invalid (GET /health takes no input)
                continue
            except Exception as exc:  # collect every operation's failure, then report them all
                failures.append(f"{mode.name} {op.method.upper()} {op.path}: {str(exc)[:800]}")
    assert ran >= 50 and not failures, "\n\n".join(failures)
