"""The Grafana boards, proven without a Grafana server.

1. The committed JSON is exactly what dashboards/build.py renders now.
2. Every board decodes with grafana-foundation-sdk (typed panels, options, field
   configs, our two query types) and encodes back to the same JSON.
3. Every variable, panel target and annotation runs the way Grafana would run it
   (dashboards.macros: $timeFilter, $__interval, variables formatted as Grafana
   formats them) against a real influxd and the real API, both holding an hour
   and a quarter of simulated telemetry with faults and the incidents the
   detector raised from it; each answer must have the panel's shape and data.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import yaml
from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import Dashboard

from dashboards import macros
from dashboards.build import JSON_DIR, stale
from dashboards.dryrun import Runner, annotation_panel
from dashboards.panels import registry
from dashboards.queries import API_TYPE, API_UID, INFLUX_TYPE, INFLUX_UID, ApiQuery, register_variants

PROVISIONING = JSON_DIR.parent / "provisioning"
START = datetime(2026, 7, 15, 3, 30, tzinfo=timezone.utc)  # 10:30 local: the 11:00-12:00 broadcast window is inside
MINUTES = 75
FAULTS = ["uplink_cut:y_ty:1200", "uplink_cut:duyen_hai:1800", "power_loss:pha_long:600", "flood:cocleu-wl-1:0",
          "crac_failure:dc-crac-1:600", "malformed:0.005"]
# Variable choices: one district (Lào Cai city, whose Cốc Lếu ward has every kind of device), and
# All, which Grafana sends as the list of every option (Cốc Lếu where a board offers no All).
SCENARIOS = {
    "one district": {"district": "lao_cai_city", "commune": "coc_leu", "device": "cocleu-wl-1", "server": "dc-srv-01"},
    "all": {"district": "$__all", "commune": ["$__all", "coc_leu"], "device": "cocleu-router", "server": "$__all"},
}


@pytest.fixture(scope="module")
def boards() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(JSON_DIR.glob("*.json"))}


def panels(board: dict) -> list[dict]:
    return [p for p in board["panels"] if p["type"] != "row"]


# ---------------------------------------------------------------- the JSON itself

def test_committed_json_is_a_fresh_render():
    assert stale() == [], "run: python -m dashboards.build"


def test_boards_are_the_four_expected(boards):
    assert set(boards) == {"fansipan-province", "fansipan-commune", "fansipan-sensors", "fansipan-datacenter",
                           "fansipan-availability"}


def test_every_board_round_trips_through_the_sdk(boards):
    plugins.register_default_plugins()  # typed options and field configs for every panel type
    register_variants()
    for uid, board in copy.deepcopy(boards).items():
        again = json.loads(json.dumps(Dashboard.from_json(board), cls=JSONEncoder))
        # The SDK's AnnotationTarget knows only the built-in Grafana source's keys: compare the
        # annotation targets on their own (below), everything else must survive unchanged.
        targets = [a.pop("target") for a in board["annotations"]["list"]]
        for a in again["annotations"]["list"]:
            a.pop("target")
        assert again == board, uid
        influx, api = targets
        assert {"query", "rawQuery", "fromAnnotations", "textColumn", "tagsColumn", "titleColumn"} <= set(influx)
        ApiQuery.from_json(dict(api, datasource={"type": API_TYPE, "uid": API_UID}))


def test_titles_are_vietnamese_with_english_alongside(boards):
    def bilingual(text: str) -> bool:
        vi, sep, en = text.partition(" / ")
        return bool(sep and vi.strip() and en.strip()) and vi.strip().lower() != en.strip().lower()
    for uid, board in boards.items():
        texts = [board["title"]] + [p["title"] for p in board["panels"]]
        texts += [v["label"] for v in board["templating"]["list"]] + [a["name"] for a in board["annotations"]["list"]]
        assert [t for t in texts if not bilingual(t)] == [], uid
        # Vietnamese first: most of the Vietnamese halves carry diacritics ("Pin UPS" need not).
        assert sum(not t.partition(" / ")[0].isascii() for t in texts) > 0.8 * len(texts), uid


def test_layout_and_data_sources(boards):
    provisioned = yaml.safe_load((PROVISIONING / "datasources" / "fansipan.yaml").read_text(encoding="utf-8"))
    by_uid = {d["uid"]: d for d in provisioned["datasources"]}
    assert by_uid[INFLUX_UID]["name"] == "Fansipan InfluxDB" and by_uid[INFLUX_UID]["type"] == INFLUX_TYPE
    assert by_uid[INFLUX_UID]["jsonData"]["version"] == "InfluxQL"
    assert by_uid[API_UID]["name"] == "Fansipan API" and by_uid[API_UID]["type"] == API_TYPE
    assert by_uid[API_UID]["secureJsonData"]["httpHeaderValue1"] == "Bearer ${FANSIPAN_GRAFANA_API_KEY}"
    provider = yaml.safe_load((PROVISIONING / "dashboards" / "fansipan.yaml").read_text(encoding="utf-8"))
    assert provider["providers"][0]["type"] == "file"
    for uid, board in boards.items():
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), uid
        for p in panels(board):
            assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, (uid, p["title"])
            refs = [p["datasource"]] + [t["datasource"] for t in p["targets"]]
            assert all(r["uid"] in by_uid and r["type"] == by_uid[r["uid"]]["type"] for r in refs), (uid, p["title"])


def test_alarm_marks_come_from_the_profiles(boards):
    """Every threshold line on a panel of one kind's field is that field's limit in its profile."""
    checked = 0
    for board in boards.values():
        for p in panels(board):
            steps = (p.get("fieldConfig", {}).get("defaults", {}).get("thresholds") or {}).get("steps", [])
            fields = {(m.group(2), m.group(1)) for t in p["targets"]
                      for m in re.finditer(r'\("(\w+)"\)\s+FROM "(\w+)"', t.get("query", ""))}
            if len(fields) != 1 or len(steps) < 2:
                continue
            kind, field = fields.pop()
            lim = registry().kinds[kind].fields[field].limits
            marks = {v for v in (lim.warn_below, lim.crit_below, lim.warn_above, lim.crit_above) if v is not None}
            assert {s["value"] for s in steps[1:]} == marks, (p["title"], kind, field)
            checked += 1
    assert checked >= 15  # water level, PM2.5, CRAC supply air, server inlet, UPS battery...


def test_push_without_grafana_client_names_the_extra():
    if importlib.util.find_spec("grafana_client") is not None:
        pytest.skip("grafana-client is installed here")
    from dashboards.push import push
    with pytest.raises(ImportError, match=re.escape("pip install 'fansipan[grafana]'")):
        push("http://127.0.0.1:1", "token")


# ---------------------------------------------------------------- every query, against real servers

@pytest.fixture(scope="module")
def stack(influxd, tmp_path_factory):
    """influxd and the API holding MINUTES of simulated telemetry, its refusals and its incidents."""
    from analytics.incidents import IncidentStore
    from analytics.service import DetectionService
    from api.keys import KeyStore
    from api.main import create_app
    from api.settings import ApiSettings
    from fansipan.config import Settings
    from fastapi.testclient import TestClient
    from ingest.validate import Validator
    from simulator.core import Simulation
    from storage.influx_v1 import InfluxV1Store

    tmp = tmp_path_factory.mktemp("boards")
    reg = registry()
    store = InfluxV1Store(influxd.url, "fansipan_boards", reg)
    incidents = IncidentStore(tmp / "incidents.sqlite", clear_hold_s=120, reopen_s=600)
    t0 = int(START.timestamp() * 1e9)
    now = [t0]
    sim = Simulation(reg, faults=FAULTS, seed=5, speed=0, start=START)
    validator = Validator(reg)
    detector = DetectionService(reg, store, incidents, clock=lambda: now[0], history_s=0, lag_s=0)
    for minute in range(MINUTES):
        now[0] = t0 + (minute + 1) * 60 * 10**9
        points, refused = [], []
        for topic, payload, _ in sim.messages(1, step_s=60):
            p, r = validator.message(topic, payload, now[0])
            points += p
            refused += r
        store.write(points, refused)
        detector.cycle()  # writes the fansipan_incident events the annotations read
    keys = KeyStore(tmp / "keys.sqlite")
    _, token = keys.create("grafana", "viewer")  # what the provisioned data source is given
    end_ns = now[0]  # the API's clock stops where the data does, so "now" statuses are of that moment
    app = create_app(Settings(), registry=reg, store=store, incidents=incidents, keys=keys,
                     api_settings=ApiSettings(), clock=lambda: end_ns)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as api, \
            httpx.Client(base_url=influxd.url, timeout=30) as influx:
        yield Runner(influx, "fansipan_boards", api, "/api/v1/grafana")
    store.close()
    incidents.close()


RANGE = macros.TimeRange.of(START, START + timedelta(minutes=MINUTES))


@pytest.mark.servers
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_variable_panel_and_annotation_returns_data(stack, boards, scenario):
    outcomes = []
    for board in boards.values():
        outcomes += [(board["uid"], o) for o in stack.run_board(board, RANGE, SCENARIOS[scenario])]
    failed = [f"{uid}: {o.where}: {o.problems}\n    sent: {str(o.sent)[:400]}" for uid, o in outcomes if o.problems]
    assert not failed, "\n".join(failed)
    # Both data sources were exercised, on every board (InfluxQL goes out as text, API bodies as JSON).
    sent = {(uid, "api" if isinstance(o.sent, dict) else "influxql") for uid, o in outcomes}
    assert all({kind for u, kind in sent if u == uid} == {"api", "influxql"} for uid in boards)
    assert len(outcomes) > 60


@pytest.mark.servers
def test_all_is_sent_as_a_list_the_api_and_influxdb_both_understand(stack, boards):
    values, outcomes = stack.resolve(boards["fansipan-sensors"], RANGE, {"district": "$__all", "commune": "$__all"})
    assert not [o.problems for o in outcomes if o.problems]
    assert len(values["district"]) == 9 and len(values["commune"]) == 58
    assert macros.format_regex(values["commune"]).startswith("(") and "|" in macros.format_regex(values["commune"])


@pytest.mark.servers
def test_availability_counts_a_cut_uplink_as_down(stack, boards):
    """Y Tý's router went silent 20 min in (uplink cut): the panel must not call it 100 % available."""
    panel = next(p for p in boards["fansipan-province"]["panels"] if p["title"].startswith("Khả dụng đường truyền"))
    out = stack.run_target(panel, panel["targets"][0], {"district": ["bat_xat", "lao_cai_city"]}, RANGE)
    assert not out.problems
    avail = {s["tags"]["site"]: s["values"][0][1] for s in out.answer["series"]}
    assert avail["y_ty"] < 0.4 and avail["duyen_hai"] < 0.7  # cut at 20 and 30 minutes of 75
    assert avail["coc_leu"] > 0.98


@pytest.mark.servers
def test_incident_annotations_show_what_the_detector_found(stack, boards):
    board = boards["fansipan-province"]
    for anno in board["annotations"]["list"]:
        out = stack.run_target(annotation_panel(anno), anno["target"], {"district": ["bat_xat", "muong_khuong"]}, RANGE)
        assert not out.problems, out.problems
        text = json.dumps(out.answer, ensure_ascii=False)
        assert "Y Tý" in text and "uplink_down" in text
