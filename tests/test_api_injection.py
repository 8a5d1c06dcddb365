"""Hostile requests: injection in every parameter, malformed bodies, oversized answers.

Every attempt gets a 4xx in the one error shape, never a 5xx, and afterwards the
stores hold exactly what they held before (no measurement dropped, no row
changed): names reach InfluxQL and SQL only after the registry has vouched for
them, and values only as bound parameters or quoted literals.
"""

from __future__ import annotations

from urllib.parse import quote

import pytest

from test_api import BACKENDS, world  # noqa: F401  (the seeded world fixture, shared with test_api.py)

INJECTIONS = [
    "dc-srv-01' OR '1'='1",
    "dc-srv-01'; DROP MEASUREMENT \"server\"; --",
    '" OR 1=1 --',
    "x\nDROP DATABASE fansipan",
    "yty-router') OR ('a'='a",
    "1; DELETE FROM incidents; --",
    "../../etc/passwd",
    "%00",
    "‮yty-router",
    "a" * 5000,
]

# (method, path template, where the value goes)
TARGETS = [
    ("GET", "/api/v1/telemetry/{v}/latency_ms", "path"),
    ("GET", "/api/v1/telemetry/yty-router/{v}", "path"),
    ("GET", "/api/v1/telemetry/yty-router/latency_ms?agg={v}&window=1m", "query"),
    ("GET", "/api/v1/telemetry/yty-router/latency_ms?window={v}&agg=mean", "query"),
    ("GET", "/api/v1/telemetry/yty-router/latency_ms?start={v}", "query"),
    ("GET", "/api/v1/telemetry/latest?kind={v}", "query"),
    ("GET", "/api/v1/telemetry/latest?site={v}", "query"),
    ("GET", "/api/v1/devices/{v}", "path"),
    ("GET", "/api/v1/devices?kind={v}", "query"),
    ("GET", "/api/v1/devices?district={v}", "query"),
    ("GET", "/api/v1/sites/{v}", "path"),
    ("GET", "/api/v1/incidents?site={v}", "query"),
    ("GET", "/api/v1/incidents?kind={v}", "query"),
    ("GET", "/api/v1/incidents?status={v}", "query"),
    ("GET", "/api/v1/incidents/{v}", "path"),
    ("GET", "/api/v1/quarantine?reason={v}", "query"),
]


def _fingerprint(w, backend: str) -> tuple:
    """What the stores hold: rows per kind and incidents, to compare before and after the attack."""
    store = w.store(backend)
    rows = tuple(len(store.frame(kind, w.start_ns, w.end_ns + 1).ts_ns) for kind in sorted(store.registry.kinds))
    return rows, len(w.client(backend, role="admin").get("/api/v1/incidents?limit=500").json()["items"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_injection_in_every_parameter_is_refused_cleanly(world, backend):  # noqa: F811
    c = world.client(backend, role="admin")
    before = _fingerprint(world, backend)
    for method, template, where in TARGETS:
        for attack in INJECTIONS:
            if where == "path":
                r = c.request(method, template.replace("{v}", quote(attack, safe="")))
            else:
                r = c.request(method, template.split("?")[0], params=_params(template, attack))
            assert r.status_code < 500, (template, attack, r.status_code, r.text[:300])
            if r.status_code >= 400:
                body = r.json()
                assert set(body) == {"error"} and body["error"]["message"], (template, attack, body)
    assert _fingerprint(world, backend) == before, "an injection attempt changed what the stores hold"


def _params(template: str, attack: str) -> dict:
    query = template.split("?", 1)[1]
    out = {}
    for pair in query.split("&"):
        k, v = pair.split("=", 1)
        out[k] = attack if v == "{v}" else v
    return out


@pytest.mark.parametrize("body", [b"{", b"[]", b"null", b'{"comment": ' + b"[" * 5000 + b"]" * 5000 + b"}",
                                  b'{"comment": 42}', b"\xff\xfe", b'{"assignee": "' + b"x" * 100_000 + b'"}'])
@pytest.mark.parametrize("action", ["acknowledge", "assign", "resolve", "comments"])
def test_malformed_bodies_get_a_clear_4xx(world, body, action):  # noqa: F811
    c = world.client("sqlite", role="admin")
    incident = c.get("/api/v1/incidents?limit=1").json()["items"][0]["id"]
    r = c.post(f"/api/v1/incidents/{incident}/{action}", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (action, body[:40], r.status_code, r.text[:300])
    assert set(r.json()) == {"error"}


@pytest.mark.parametrize("body", [b"{", b"[]", b'{"targets": "all"}', b'{"targets": [{"target": "telemetry", "payload": {"kind": "server\\"; DROP"}}]}',
                                  b'{"range": {"from": "yesterday", "to": 5}, "targets": [{"target": "telemetry"}]}'])
def test_grafana_query_refuses_malformed_bodies(world, body):  # noqa: F811
    c = world.client("sqlite", role="viewer")
    r = c.post("/api/v1/grafana/query", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, (body[:60], r.status_code, r.text[:300])
    assert set(r.json()) == {"error"}


def test_a_year_of_raw_points_is_refused_with_the_window_to_use(world):  # noqa: F811
    c = world.client("sqlite", role="viewer")
    r = c.get("/api/v1/telemetry/yty-router/latency_ms", params={"start": "2000-01-01T00:00:00Z", "end": "2030-01-01T00:00:00Z"})
    assert r.status_code in (400, 413), r.text
    assert "window" in r.json()["error"]["message"]
