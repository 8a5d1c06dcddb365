"""Scenarios from the simulator's faults: the right incidents, and no child alarm storms.

The simulator's readings go through the validator into the embedded store, and
the detection service runs a cycle after every simulated minute with its clock
on simulated time. No broker is needed: the MQTT path is covered by
test_end_to_end.py.
"""

from __future__ import annotations

from datetime import datetime, timezone


from analytics.incidents import IncidentStore
from analytics.service import DetectionService
from device_profiles import load_registry
from ingest.validate import Validator
from simulator.core import Simulation
from storage.sqlite import SQLiteStore

REGISTRY = load_registry()
START = datetime(2026, 7, 15, 3, 30, tzinfo=timezone.utc)  # monsoon season, 10:30 local: loudspeakers start at 11:00
STEP_S = 60


def run_scenario(tmp_path, faults: list[str], minutes: int, warm_minutes: int = 0):
    store = SQLiteStore(tmp_path / "t.sqlite", REGISTRY)
    incidents = IncidentStore(tmp_path / "i.sqlite", clear_hold_s=120, reopen_s=600)
    sim = Simulation(REGISTRY, faults=faults, seed=5, speed=0, start=START)
    validator = Validator(REGISTRY)
    now = [int(START.timestamp() * 1e9)]
    service = DetectionService(REGISTRY, store, incidents, clock=lambda: now[0], history_s=0, lag_s=0)
    for minute in range(minutes):
        points, rejected = [], []
        for topic, payload, _ in sim.messages(1, step_s=STEP_S):
            now[0] = int(START.timestamp() * 1e9) + (minute + 1) * STEP_S * 10**9
            p, r = validator.message(topic, payload, now[0])
            points += p
            rejected += r
        store.write(points, rejected)
        now[0] = int(START.timestamp() * 1e9) + (minute + 1) * STEP_S * 10**9
        service.cycle()
    return incidents, service


def open_by_kind(incidents):
    out = {}
    for inc in incidents.open_incidents():
        out.setdefault(inc.kind, []).append(inc)
    return out


def test_quiet_province_raises_nothing(tmp_path):
    incidents, _ = run_scenario(tmp_path, [], minutes=30)
    assert incidents.all() == []


def test_uplink_cut_is_one_incident_at_the_commune(tmp_path):
    incidents, _ = run_scenario(tmp_path, ["uplink_cut:y_ty:600"], minutes=45)
    found = open_by_kind(incidents)
    assert list(found) == ["uplink_down"], [i.title for i in incidents.all()]
    (inc,) = found["uplink_down"]
    assert inc.device == "yty-router" and inc.site == "y_ty" and inc.severity == "critical"
    behind = {d.id for d in REGISTRY.devices.values() if d.site == "y_ty"} - {"yty-router"}
    assert {m for m, _ in inc.members} == behind
    assert all(role == "unreachable (inferred)" for _, role in inc.members)
    cut_ns = int(START.timestamp() * 1e9) + 600 * 10**9
    assert cut_ns - 60 * 10**9 <= inc.started_ns <= cut_ns + 60 * 10**9  # started when the reports stopped
    assert "Y Tý" in inc.title


def test_power_loss_names_the_cause(tmp_path):
    incidents, _ = run_scenario(tmp_path, ["power_loss:pha_long:300"], minutes=45)
    kinds = open_by_kind(incidents)
    assert "power_loss" in kinds, [i.title for i in incidents.all()]
    (inc,) = kinds["power_loss"]
    assert inc.site == "pha_long"
    assert "battery" in inc.cause
    # the UPS's own on_battery limit came first, and no loudspeaker raised an alarm of its own
    assert not any(i.kind == "silence" and i.site == "pha_long" for i in incidents.open_incidents())


def test_crac_failure_warns_before_the_hard_limit(tmp_path):
    incidents, _ = run_scenario(tmp_path, ["crac_failure:dc-crac-1:120"], minutes=40)
    limits = [i for i in incidents.all() if i.kind == "limit" and i.site == "dc_laocai"]
    assert limits, [i.title for i in incidents.all()]
    first = min(limits, key=lambda i: i.started_ns)
    assert first.severity == "warning"  # warned while still under the critical mark
    assert first.evidence["value"] < first.evidence["marks"].get("crit_above", float("inf"))


def test_flood_crosses_warning_then_critical(tmp_path):
    incidents, _ = run_scenario(tmp_path, ["flood:banvuoc-wl-1:0"], minutes=70)
    (inc,) = [i for i in incidents.all() if i.device == "banvuoc-wl-1" and i.kind == "limit"]
    assert inc.severity == "critical"
    events = [e for _, _, e, _ in incidents.events(inc.id)]
    assert events[:2] == ["opened", "escalated"]


def test_stuck_sensor_is_found(tmp_path):
    incidents, _ = run_scenario(tmp_path, ["stuck_sensor:sapa-aq-1:1800"], minutes=50)
    stuck = [i for i in incidents.all() if i.kind == "stuck"]
    assert [i.device for i in stuck] == ["sapa-aq-1"]


def test_restart_keeps_open_incidents_without_duplicates(tmp_path):
    incidents, _ = run_scenario(tmp_path, ["uplink_cut:y_ty:0"], minutes=10)
    before = [(i.id, i.key) for i in incidents.open_incidents()]
    incidents.close()
    again = IncidentStore(tmp_path / "i.sqlite")
    assert [(i.id, i.key) for i in again.open_incidents()] == before


def test_a_device_silent_before_its_uplink_waits_for_the_uplinks_verdict():
    """A device whose silence deadline comes before its router's (a report just before the cut, or a shorter
    interval) raises no 'device silent' alarm of its own while the router has not been heard since the
    device's first missed report was due; one incident at the router."""
    from analytics.topology import Topology

    topo = Topology(REGISTRY)
    heard = {d: 1000.0 for d in REGISTRY.devices}
    heard.update({"yty-spk-1": 900.0, "yty-router": 890.0})  # the router last heard before the loudspeaker
    assert topo.conditions({"yty-spk-1": 900.0}, heard=heard) == []
    heard["yty-router"] = 950.0  # heard after the loudspeaker, but before its next report was due: still waiting
    assert topo.conditions({"yty-spk-1": 900.0}, heard=heard) == []
    spk = REGISTRY.kinds["ip_loudspeaker"].reporting
    heard["yty-router"] = 900.0 + spk.interval_s + spk.jitter_s + 1  # the path worked when it was due: its own silence
    (c,) = topo.conditions({"yty-spk-1": 900.0}, heard=heard)
    assert (c.kind, c.device) == ("silence", "yty-spk-1")
    heard["yty-router"] = 890.0  # the router went silent too: one uplink incident, the loudspeaker in it
    (c,) = topo.conditions({"yty-spk-1": 900.0, "yty-router": 890.0}, heard=heard)
    assert (c.kind, c.device) == ("uplink_down", "yty-router") and ("yty-spk-1", "unreachable (inferred)") in c.members
