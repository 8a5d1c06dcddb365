"""The availability, outage, report and maintenance routes, through the real app and a real incidents file.

The history is the hand-computed one of test_availability.py: Y Tý's uplink down
09:00-11:00 local on 5 October 2026 with a maintenance window from 10:00 to 12:00
declared through the API, so 60 of 1,320 scheduled minutes are down that day.
"""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient
from test_availability import outage, t

from analytics.incidents import IncidentStore
from api.keys import KeyStore
from api.main import create_app
from api.settings import ApiSettings
from device_profiles import load_registry
from fansipan.config import Settings
from storage.sqlite import SQLiteStore

REG = load_registry()
NOW = t("2026-11-02 00:00")


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    base = tmp_path_factory.mktemp("availability_api")
    path = base / "incidents.sqlite"
    incidents = IncidentStore(path, clear_hold_s=0, reopen_s=0)
    outage(incidents, REG, "yty-router", "2026-10-05 09:00", "2026-10-05 11:00", kind="uplink_down",
           members=("yty-spk-1", "yty-spk-2"))
    outage(incidents, REG, "dc-core-sw-1", "2026-10-31 23:00", "2026-11-01 01:00")
    keys = KeyStore(path)
    tokens = {role: keys.create(role, role)[1] for role in ("viewer", "operator")}
    tokens["scoped"] = keys.create("bat_xat office", "viewer", scope="district:bat_xat")[1]
    tokens["scoped_operator"] = keys.create("bat_xat operator", "operator", scope="district:bat_xat")[1]
    store = SQLiteStore(base / "telemetry.sqlite", REG)
    app = create_app(Settings(incidents_path=str(path)), REG, store, incidents, keys=keys,
                     api_settings=ApiSettings(), clock=lambda: NOW)
    with TestClient(app, raise_server_exceptions=False) as client:
        def as_(role):
            client.headers["Authorization"] = f"Bearer {tokens[role]}"
            return client
        # The window is declared through the API, as an operator would.
        r = as_("operator").post("/api/v1/maintenance", json={
            "site": "y_ty", "start": "2026-10-05T10:00:00+07:00", "end": "2026-10-05T12:00:00+07:00",
            "reason": "Thay cáp quang / Fibre splice"})
        assert r.status_code == 201, r.text
        yield as_
    store.close()


def test_a_day_per_commune_with_maintenance_and_the_parent_rule(api):
    r = api("viewer").get("/api/v1/availability", params={"period": "day", "at": "2026-10-05", "order": "worst"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["period"] == {"kind": "day", "label": "2026-10-05", "start": "2026-10-04T17:00:00Z",
                              "end": "2026-10-05T17:00:00Z", "until": "2026-10-05T17:00:00Z",
                              "timezone": "Asia/Ho_Chi_Minh"}
    first = body["rows"][0]
    assert (first["id"], first["downtime_min"], first["outages"], first["maintenance_min"]) == ("y_ty", 60, 1, 120)
    assert first["uptime_pct"] == round(100 * 1260 / 1320, 4) and first["mtbf_h"] == 21
    assert {r["type"] for r in body["rows"]} == {"commune", "data_center"}
    devices = api("viewer").get("/api/v1/availability", params={"period": "day", "at": "2026-10-05",
                                                                "level": "device", "site": "y_ty"}).json()["rows"]
    by_id = {d["id"]: d for d in devices}
    assert by_id["yty-router"]["downtime_min"] == 60
    assert (by_id["yty-spk-1"]["downtime_min"], by_id["yty-spk-1"]["unreachable_min"]) == (0, 60)


def test_month_levels_and_outages(api):
    q = {"period": "month", "at": "2026-10"}
    prov = api("viewer").get("/api/v1/availability", params={**q, "level": "province"}).json()["rows"]
    units = len({d.site for d in REG.devices.values()})
    assert len(prov) == 1 and prov[0]["units"] == units
    assert (prov[0]["downtime_min"], prov[0]["outages"]) == (120, 2)  # 60 at Y Tý + 60 of the 31st at the DC
    districts = api("viewer").get("/api/v1/availability", params={**q, "level": "district"}).json()["rows"]
    assert {d["id"] for d in districts} == {s.id for s in REG.sites.values() if s.type == "district"}
    out = api("viewer").get("/api/v1/availability/outages", params=q).json()
    assert out["total"] == 2
    assert [(o["device"], o["downtime_min"], o["maintenance_min"]) for o in out["items"]] == [
        ("yty-router", 60, 60), ("dc-core-sw-1", 60, 0)]
    assert out["items"][0]["unreachable_devices"] == 2 and out["items"][0]["site_name"] == "Xã Y Tý"
    only = api("viewer").get("/api/v1/availability/outages", params={**q, "district": "bat_xat"}).json()
    assert [o["device"] for o in only["items"]] == ["yty-router"]


def test_report_csv_through_the_api(api):
    r = api("viewer").get("/api/v1/availability/report", params={"month": "2026-10", "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert 'filename="fansipan-availability-2026-10.csv"' in r.headers["content-disposition"]
    assert r.content.startswith("\ufeff".encode())  # Excel needs the BOM for the diacritics
    table = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    yty = next(row for row in table if row[1] == "y_ty")
    assert yty[0] == "commune" and yty[2] == "Xã Y Tý" and yty[5] == "60.00" and yty[9] == "120.00"
    html = api("viewer").get("/api/v1/availability/report", params={"month": "2026-10"})
    assert html.status_code == 200 and "Báo cáo khả dụng" in html.text and "Longest outages" in html.text


@pytest.mark.parametrize("path, params, status, needle", [
    ("/api/v1/availability", {"period": "month", "at": "2026-13"}, 400, "at: '2026-13' is not a month"),
    ("/api/v1/availability", {"period": "day", "at": "2026-11-03"}, 400, "has not started"),
    ("/api/v1/availability", {"period": "week", "at": "October"}, 400, "YYYY-MM-DD or YYYY-Www"),
    ("/api/v1/availability", {"district": "hanoi"}, 400, "hanoi"),
    ("/api/v1/availability", {"level": "galaxy"}, 422, "level"),
    ("/api/v1/availability/report", {"month": "2027-01"}, 400, "this month or an earlier one"),
    ("/api/v1/availability/report", {"month": "2026-10", "format": "docx"}, 422, "format"),
])
def test_bad_requests_name_the_parameter(api, path, params, status, needle):
    r = api("viewer").get(path, params=params)
    assert r.status_code == status, r.text
    assert needle in r.json()["error"]["message"]


def test_maintenance_needs_an_operator_and_a_valid_window(api):
    body = {"device": "yty-ups", "start": "2026-11-03T08:00:00+07:00", "end": "2026-11-03T09:00:00+07:00",
            "reason": "battery swap"}
    assert api("viewer").post("/api/v1/maintenance", json=body).status_code == 403
    bad = api("operator").post("/api/v1/maintenance", json={**body, "site": "y_ty"})
    assert bad.status_code == 400 and bad.json()["error"]["details"]["parameter"] == "site/device"
    late = api("operator").post("/api/v1/maintenance", json={**body, "end": "2026-11-03T07:00:00+07:00"})
    assert late.status_code == 400 and "end must be after it starts" not in late.text
    assert "must end after it starts" in late.json()["error"]["message"]
    typo = api("operator").post("/api/v1/maintenance", json={**body, "resaon": "x"})
    assert typo.status_code == 422 and "resaon" in typo.json()["error"]["message"]
    made = api("operator").post("/api/v1/maintenance", json=body)
    assert made.status_code == 201 and made.json()["created_by"] == "operator"
    listed = api("viewer").get("/api/v1/maintenance", params={"start": "2026-10-01T00:00:00Z"}).json()["items"]
    assert [w["reason"] for w in listed] == ["Thay cáp quang / Fibre splice", "battery swap"]
    wid = made.json()["id"]
    assert api("viewer").delete(f"/api/v1/maintenance/{wid}").status_code == 403
    gone_now = api("operator").delete(f"/api/v1/maintenance/{wid}")
    assert gone_now.status_code == 200 and gone_now.json()["reason"] == "battery swap"
    gone = api("operator").delete(f"/api/v1/maintenance/{wid}")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/api/v1/availability", None), ("GET", "/api/v1/availability/outages", None),
    ("GET", "/api/v1/availability/report?month=2026-10&format=csv", None), ("GET", "/api/v1/maintenance", None),
    ("POST", "/api/v1/maintenance", {"site": "y_ty", "start": "1790000000", "end": "1790003600", "reason": "x"}),
    ("DELETE", "/api/v1/maintenance/1", None),
    ("POST", "/api/v1/grafana/query", {"range": {"from": "2026-10-01T00:00:00Z", "to": "2026-10-02T00:00:00Z"},
                                       "targets": [{"target": "availability_sites", "payload": {}}]}),
])
def test_a_scoped_key_is_refused_rather_than_shown_the_province(api, method, path, body):
    """Figures summed over the province would tell a district's office about every other district."""
    r = api("scoped_operator" if method != "GET" and "grafana" not in path else "scoped").request(
        method, path, json=body)
    assert r.status_code == 403 and "province-wide" in r.json()["error"]["message"], r.text


def _grafana(api, target: str, payload: dict, start: str, end: str):
    body = {"range": {"from": start, "to": end}, "intervalMs": 86_400_000, "maxDataPoints": 100,
            "targets": [{"refId": "A", "target": target, "payload": payload}]}
    r = api("viewer").post("/api/v1/grafana/query", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_the_boards_metrics_over_a_grafana_range(api):
    day = ("2026-10-04T17:00:00Z", "2026-10-05T17:00:00Z")  # 5 October, local
    total = _grafana(api, "availability_total", {"site": "y_ty"}, *day)
    assert total == [{"target": "Xã Y Tý", "datapoints": [[100 * 1260 / 1320, t("2026-10-06 00:00") // 10**6]]}]
    default = _grafana(api, "availability_total", {}, *day)
    assert [s["target"] for s in default] == ["Tỉnh Lào Cai", "Trung tâm dữ liệu tỉnh Lào Cai"]
    daily = _grafana(api, "availability_daily", {"site": "(bat_xat|sa_pa)"}, "2026-10-03T17:00:00Z", day[1])
    bat_xat = next(s for s in daily if s["target"] == "Huyện Bát Xát")
    n = len({d.site for d in REG.devices.values() if d.district == "bat_xat"})
    assert [p[0] for p in bat_xat["datapoints"]] == [100.0, pytest.approx(100 * (1 - 60 / (1320 + 1440 * (n - 1))))]
    assert [p[1] for p in bat_xat["datapoints"]] == [t("2026-10-04 00:00") // 10**6, t("2026-10-05 00:00") // 10**6]
    sites = _grafana(api, "availability_sites", {"district": "bat_xat"}, *day)[0]
    assert sites["rows"][0][:2] == ["y_ty", "Xã Y Tý"] and len(sites["rows"]) == n
    outages = _grafana(api, "availability_outages", {}, *day)[0]
    assert [(r[2], r[7], r[8]) for r in outages["rows"]] == [(60, "yty-router", 2)]
    bad = api("viewer").post("/api/v1/grafana/query", json={
        "range": {"from": day[0], "to": day[1]}, "targets": [{"target": "availability_sites",
                                                            "payload": {"district": "hanoi"}}]})
    assert bad.status_code == 400 and "payload.district" in bad.json()["error"]["message"]


def test_pdf_without_a_browser_is_501_naming_what_to_install(api, monkeypatch):
    monkeypatch.setenv("FANSIPAN_CHROMIUM", "/nonexistent/chromium")
    r = api("viewer").get("/api/v1/availability/report", params={"month": "2026-10", "format": "pdf"})
    assert r.status_code == 501 and r.json()["error"]["code"] == "not_supported"
    assert "FANSIPAN_CHROMIUM=/nonexistent/chromium is not an executable file" in r.json()["error"]["message"]
