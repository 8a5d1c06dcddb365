"""The Grafana JSON data source against the seeded stores, and docs/grafana-datasource.md as its contract.

The boards are built from that document, so the document is checked against the
API: every table's columns as documented, every metric answering in the
documented shape, the variables chaining district -> commune -> device.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from test_api import BACKENDS, CUT_S, REGISTRY, YTY_DEVICES, error_of, iso, shared_world

DOC = Path(__file__).resolve().parent.parent / "docs" / "grafana-datasource.md"
G = "/api/v1/grafana"


@pytest.fixture(scope="session")
def world(tmp_path_factory, request):
    return shared_world(tmp_path_factory, request)


def query(c, w, *targets, interval_ms=60_000, adhoc=None):
    body = {"range": {"from": iso(w.start_ns), "to": iso(w.end_ns)}, "intervalMs": interval_ms,
            "maxDataPoints": 1000, "targets": [{"refId": chr(65 + i), "target": t, "payload": p}
                                               for i, (t, p) in enumerate(targets)]}
    if adhoc:
        body["adhocFilters"] = adhoc
    r = c.post(f"{G}/query", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def table(answer) -> tuple[list[str], list[dict]]:
    (t,) = answer
    assert t["type"] == "table"
    names = [c["text"] for c in t["columns"]]
    return names, [dict(zip(names, row)) for row in t["rows"]]


def test_connection_metrics_and_payload_options(world):
    c = world.client()
    assert c.get(G).json() == {"status": "ok"} and c.get(f"{G}/").status_code == 200
    metrics = {m["value"]: m for m in c.post(f"{G}/metrics", json={}).json()}
    assert set(metrics) == {"telemetry", "incidents_open", "incidents_timeline", "site_status", "device_status",
                            "quarantine_rate", "incidents_annotations", "availability_total", "availability_daily",
                            "availability_sites", "availability_outages"}
    assert next(p for p in metrics["telemetry"]["payloads"] if p["name"] == "kind")["reloadMetric"] is True
    opts = c.post(f"{G}/metric-payload-options", json={"metric": "telemetry", "payload": {"kind": "water_level"},
                                                       "name": "field"}).json()
    assert [o["value"] for o in opts] == list(REGISTRY.kinds["water_level"].fields)
    assert c.post(f"{G}/search", json={}).json() == list(metrics)


def test_variables_chain_district_commune_device(world):
    c = world.client()
    var = lambda **p: c.post(f"{G}/variable", json={"payload": p}).json()  # noqa: E731
    districts = {v["__value"]: v["__text"] for v in var(target="districts")}
    assert districts["bat_xat"] == "Huyện Bát Xát" and len(districts) == 9
    communes = {v["__value"]: v["__text"] for v in var(target="communes", district="bat_xat")}
    assert communes["y_ty"] == "Xã Y Tý" and all(REGISTRY.sites[s].district == "bat_xat" for s in communes)
    devices = [v["__value"] for v in var(target="devices", site="y_ty")]
    assert devices == YTY_DEVICES
    assert [v["__value"] for v in var(target="devices", site=["y_ty", "a_lu"], kind="commune_router")] \
        == ["alu-router", "yty-router"]
    assert len(var(target="communes", district="$__all")) == len(var(target="communes"))
    assert var(target="communes", district="(bat_xat|sa_pa)") == var(target="communes", district=["bat_xat", "sa_pa"])
    err = error_of(c.post(f"{G}/variable", json={"payload": {"target": "communes", "district": "hanoi"}}),
                   400, "bad_parameter")
    assert err["details"]["parameter"] == "payload.district" and "bat_xat" in err["message"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_telemetry_series_per_device(world, backend):
    c = world.client(backend)
    got = query(c, world, ("telemetry", {"kind": "commune_router", "field": "latency_ms", "district": "bat_xat"}))
    targets = {s["target"]: s["datapoints"] for s in got}
    assert len(targets) == sum(1 for d in REGISTRY.devices_of("commune_router") if d.district == "bat_xat")
    cut_ms = (world.start_ns + CUT_S * 10**9) // 10**6
    assert targets["yty-router latency_ms"] and max(t for _, t in targets["yty-router latency_ms"]) <= cut_ms
    alu = targets["alu-router latency_ms"]
    assert len(alu) == 70 and all(isinstance(v, float) for v, _ in alu)  # one-minute windows from intervalMs
    coarse = query(c, world, ("telemetry", {"kind": "commune_router", "field": "latency_ms", "device": "alu-router",
                                            "agg": "max"}), interval_ms=600_000)
    # 10-minute windows aligned on the epoch: 03:40 (holding 03:45-03:50) ... 04:50
    assert len(coarse[0]["datapoints"]) == 8 and all(t % 600_000 == 0 for _, t in coarse[0]["datapoints"])


def test_telemetry_refusals(world):
    c = world.client()
    body = {"range": {"from": iso(world.start_ns), "to": iso(world.end_ns)}, "targets": [
        {"target": "telemetry", "payload": {"kind": "ip_loudspeaker", "field": "volume_pct"}}]}
    err = error_of(c.post(f"{G}/query", json=body), 400, "bad_parameter")
    assert "more than 50 series" in err["message"] and err["details"]["parameter"] == "payload.device"
    body["targets"] = [{"target": "telemetri"}]
    err = error_of(c.post(f"{G}/query", json=body), 400, "bad_parameter")
    assert err["details"]["parameter"] == "targets[0].target" and "telemetry" in err["message"]
    body["targets"] = [{"target": "telemetry", "payload": {"kind": "commune_router", "field": "nope"}}]
    assert "latency_ms" in error_of(c.post(f"{G}/query", json=body), 400, "bad_parameter")["message"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_tables_show_the_outage(world, backend):
    c = world.client(backend)
    _, incidents = table(query(c, world, ("incidents_open", {"severity": "critical"})))
    yty = next(r for r in incidents if r["site"] == "y_ty")
    assert yty["kind"] == "uplink_down" and yty["commune"] == "Xã Y Tý" and yty["unreachable"] == len(YTY_DEVICES) - 1
    _, sites = table(query(c, world, ("site_status", {"district": "bat_xat"})))
    by_site = {r["site"]: r for r in sites}
    assert by_site["y_ty"]["status"] == "down" and by_site["y_ty"]["status_code"] == 2
    assert by_site["a_lu"]["status"] == "ok" and isinstance(by_site["a_lu"]["lat"], float)
    _, devices = table(query(c, world, ("device_status", {"site": "y_ty"})))
    assert {r["device"]: r["status"] for r in devices}["yty-spk-1"] == "unreachable (inferred)"
    _, down = table(query(c, world, ("site_status", {"status": "down"})))
    assert [r["site"] for r in down] == ["y_ty"]
    _, adhoc = table(query(c, world, ("incidents_open", {}), adhoc=[{"key": "district", "operator": "=",
                                                                       "value": "sa_pa"}]))
    assert adhoc == []


def test_timeline_quarantine_and_annotations(world):
    c = world.client()
    series = {s["target"]: s["datapoints"] for s in query(c, world, ("incidents_timeline", {}))}
    assert list(series) == ["critical", "warning", "info"]
    assert series["critical"][0][0] == 0 and series["critical"][-1][0] == 2  # Y Tý's uplink, then the flood
    rates = query(c, world, ("quarantine_rate", {}), interval_ms=300_000)
    assert rates and all(len(s["datapoints"]) == 14 for s in rates) and sum(v for s in rates for v, _ in s["datapoints"])
    _, notes = table(query(c, world, ("incidents_annotations", {"site": "y_ty"})))
    assert len(notes) == 1 and "Y Tý" in notes[0]["title"] and "uplink_down" in notes[0]["tags"].split(",")
    assert notes[0]["timeEnd"] == world.end_ns // 10**6  # still open: the region runs to now
    old = c.post(f"{G}/annotations", json={"range": {"from": iso(world.start_ns), "to": iso(world.end_ns)},
                                            "annotation": {"name": "x", "query": '{"district": "bat_xat"}'}}).json()
    assert {a["tags"][3] for a in old} == {"y_ty", "ban_vuoc"} and all(a["isRegion"] for a in old)


def test_tag_keys_and_values(world):
    c = world.client()
    assert [k["text"] for k in c.post(f"{G}/tag-keys", json={}).json()] == ["district", "site", "kind", "severity"]
    assert {"text": "bat_xat"} in c.post(f"{G}/tag-values", json={"key": "district"}).json()
    error_of(c.post(f"{G}/tag-values", json={"key": "colour"}), 400, "bad_parameter")


def _doc_sections() -> dict[str, str]:
    parts = re.split(r"^### `([a-z_]+)`.*$", DOC.read_text(encoding="utf-8"), flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def _doc_columns(section: str) -> list[str] | None:
    for block in re.findall(r"```json\n(.*?)```", section, flags=re.S):
        data = json.loads(block)
        if isinstance(data, list) and data and data[0].get("type") == "table":
            return [c["text"] for c in data[0]["columns"]]
    m = re.search(r"^Columns: (.*?)(?:\n\n|\Z)", section, flags=re.M | re.S)
    return re.findall(r"`([A-Za-z_]+)`", m.group(1)) if m else None


def test_the_document_matches_the_api(world):
    """docs/grafana-datasource.md is what the boards are built from: its columns and shapes must be the API's."""
    c = world.client()
    sections = _doc_sections()
    assert set(sections) == {m["value"] for m in c.post(f"{G}/metrics", json={}).json()}
    payloads = {"telemetry": {"kind": "commune_router", "field": "latency_ms", "site": "y_ty"}}
    for metric, text in sections.items():
        answer = query(c, world, (metric, payloads.get(metric, {})))
        documented = _doc_columns(text)
        if documented is not None:
            assert table(answer)[0] == documented, metric
        else:
            assert answer and all(set(s) == {"target", "datapoints"} for s in answer), metric
            for block in re.findall(r"```json\n(.*?)```", text, flags=re.S):
                example = json.loads(block)
                if isinstance(example, list) and "datapoints" in example[0] and metric == "incidents_timeline":
                    assert [s["target"] for s in example] == [s["target"] for s in answer]
