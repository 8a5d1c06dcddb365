"""Sparkplug B: topics, payload values, and the host session (births, aliases, seq, deaths, rebirth).

No broker here: the validator is fed messages built by simulator.sparkplug.EdgeNode
(and some by hand). tests/test_sparkplug_mqtt.py runs the same through mosquitto.
"""

from __future__ import annotations

import pytest

from device_profiles import load_registry
from ingest.sparkplug_codec import (DOUBLE, INT32, INT64, Topic, decode_payload, decode_sparkplug_b, encode_payload,
                                    metric_value, parse_topic)
from ingest.validate import Validator
from simulator.sparkplug import EdgeNode

REGISTRY = load_registry()
T0 = 1764230400_000_000_000  # arrival of the first message, ns
MS = T0 // 1_000_000
S = 1_000_000_000


@pytest.fixture
def host():
    """A fresh validator whose Sparkplug host records the commands it sends."""
    v = Validator(REGISTRY)
    v.sent = []
    v.sparkplug.send = lambda topic, payload: v.sent.append((topic, payload))
    return v


def pump_node(bdseq: int = 1) -> EdgeNode:
    return EdgeNode("laocai", "cocleu-edge-gw-1",
                    {"cocleu-pump-1": {"Pump/Flow": 120.0, "Pump/Running": True, "Tank/Level": 3.5},
                     "cocleu-pump-2": {"Pump/Flow": 80.0, "Outlet/Pressure": 4.2}},
                    node_metrics={"Gateway/CPU Temperature": 41.5, "Gateway/Uptime": 3600}, bdseq=bdseq)


def feed(v, msgs, t=T0):
    points, rejected = [], []
    for topic, payload in msgs:
        p, r = v.message(topic, payload, t)
        points += p
        rejected += r
    return points, rejected


def born(v, node=None, t=T0):
    node = node or pump_node()
    points, rejected = feed(v, node.births(MS), t)
    assert rejected == []
    return node, points


# --- codec --------------------------------------------------------------------------------------

@pytest.mark.parametrize("topic, want", [
    ("spBv1.0/laocai/NDATA/gw", Topic("laocai", "NDATA", "gw")),
    ("spBv1.0/laocai/DDATA/gw/dev", Topic("laocai", "DDATA", "gw", "dev")),
    ("spBv1.0/STATE/fansipan", Topic("", "STATE", "fansipan")),
    ("spBv1.0/laocai/DDATA/gw", "has no device level"),  # a device message needs its device
    ("spBv1.0/laocai/NDATA/gw/dev", "must not have a device level"),
    ("spBv1.0/laocai/XDATA/gw", "is not one of"),
    ("spBv1.0/laocai//gw", "levels"),  # an empty level
    ("spAv1.0/laocai/NDATA/gw", "not in the Sparkplug B namespace"),
])
def test_parse_topic(topic, want):
    if isinstance(want, Topic):
        assert parse_topic(topic) == want
    else:
        with pytest.raises(ValueError, match=want):
            parse_topic(topic)


def test_signed_and_typed_values_round_trip():
    payload = encode_payload([{"name": "a", "value": -5, "datatype": INT32}, {"name": "b", "value": -2**40, "datatype": INT64},
                              {"name": "c", "value": 2.5, "datatype": DOUBLE}, {"name": "d", "value": None}])
    ms = decode_payload(payload).metrics
    assert [metric_value(m) for m in ms] == [-5, -2**40, 2.5, None]


def test_stateless_decoder_groups_metrics_by_time_and_refuses_aliases():
    payload = encode_payload([{"name": "flow_m3h", "value": 1.0, "timestamp": MS}, {"name": "tank_level_m", "value": 2.0, "timestamp": MS},
                              {"alias": 7, "value": 3.0}], timestamp_ms=MS + 5)
    out = decode_sparkplug_b(payload)
    assert out[0].fields == {"flow_m3h": 1.0, "tank_level_m": 2.0} and out[0].ts == T0
    assert "alias 7 has no name" in str(out[1])


# --- the host session ---------------------------------------------------------------------------

def test_births_then_data_by_alias(host):
    node, points = born(host)
    by_dev = {p.device: p.fields for p in points}
    assert by_dev["cocleu-edge-gw-1"] == {"cpu_temp_c": 41.5, "uptime_s": 3600, "online": 1}  # bdSeq/Node Control skipped
    assert by_dev["cocleu-pump-1"] == {"flow_m3h": 120.0, "pump_running": 1, "tank_level_m": 3.5, "online": 1}
    points, rejected = feed(host, [node.data("cocleu-pump-1", {"Pump/Flow": 130.5, "Tank/Level": 3.4}, MS + 15_000)], T0 + 15 * S)
    assert rejected == [] and host.sent == []
    assert [(p.device, p.ts_ns, p.fields) for p in points] == [("cocleu-pump-1", T0 + 15 * S, {"flow_m3h": 130.5, "tank_level_m": 3.4})]
    assert points[0].kind == "pump_station" and points[0].site == "coc_leu"


def test_seq_wraps_255_to_0_without_a_rebirth(host):
    node, _ = born(host)
    msgs = [node.data(None, {"Gateway/Uptime": 3600 + i}, MS + i) for i in range(300)]  # seq 3..255, 0..46
    points, rejected = feed(host, msgs)
    assert len(points) == 300 and rejected == [] and host.sent == []


def test_seq_gap_asks_for_a_rebirth_but_keeps_the_readings(host):
    node, _ = born(host)
    node.data(None, {"Gateway/Uptime": 1}, MS)  # built, never delivered: a lost message
    points, rejected = feed(host, [node.data(None, {"Gateway/Uptime": 2}, MS + 1)], T0 + S)
    assert [p.fields for p in points] == [{"uptime_s": 2}] and rejected == []
    assert [t for t, _ in host.sent] == ["spBv1.0/laocai/NCMD/cocleu-edge-gw-1"]


def test_unknown_alias_is_quarantined_and_a_rebirth_requested_rate_limited(host):
    _node, _ = born(host)
    bad = encode_payload([{"alias": 99, "value": 1.0}, {"alias": 100, "value": 2.0}], seq=3, timestamp_ms=MS)
    points, rejected = feed(host, [("spBv1.0/laocai/DDATA/cocleu-edge-gw-1/cocleu-pump-1", bad)], T0 + S)
    assert points == [] and [r.reason for r in rejected] == ["unknown_alias"]
    assert "by alias 99, 100" in rejected[0].detail and "rebirth requested" in rejected[0].detail
    assert rejected[0].device == "cocleu-pump-1" and rejected[0].kind == "pump_station"
    (topic, cmd), = host.sent
    assert topic == "spBv1.0/laocai/NCMD/cocleu-edge-gw-1"
    assert [(m.name, m.boolean_value) for m in decode_payload(cmd).metrics] == [("Node Control/Rebirth", True)]
    bad2 = encode_payload([{"alias": 99, "value": 1.0}], seq=4, timestamp_ms=MS)
    feed(host, [("spBv1.0/laocai/DDATA/cocleu-edge-gw-1/cocleu-pump-1", bad2)], T0 + 5 * S)
    assert len(host.sent) == 1  # within 10 s of the last request: not asked again
    bad3 = encode_payload([{"alias": 99, "value": 1.0}], seq=5, timestamp_ms=MS)
    feed(host, [("spBv1.0/laocai/DDATA/cocleu-edge-gw-1/cocleu-pump-1", bad3)], T0 + 12 * S)
    assert len(host.sent) == 2


def test_data_before_any_birth_is_quarantined_with_a_rebirth_request(host):
    node = pump_node()
    node.births(MS)  # the collector missed them (it started later)
    points, rejected = feed(host, [node.data("cocleu-pump-1", {"Pump/Flow": 1.0}, MS)])
    assert points == [] and [r.reason for r in rejected] == ["unknown_alias"]
    assert "before its NBIRTH" in rejected[0].detail
    assert len(host.sent) == 1


def test_ndeath_marks_the_node_and_its_devices_offline_at_arrival(host):
    node, _ = born(host)
    points, rejected = feed(host, [node.ndeath()], T0 + 60 * S)
    assert rejected == []
    assert sorted((p.device, p.ts_ns, p.fields["online"]) for p in points) == [
        ("cocleu-edge-gw-1", T0 + 60 * S, 0), ("cocleu-pump-1", T0 + 60 * S, 0), ("cocleu-pump-2", T0 + 60 * S, 0)]
    # after the death, data needs a new birth
    _p, rejected = feed(host, [node.data("cocleu-pump-1", {"Pump/Flow": 1.0}, MS)], T0 + 61 * S)
    assert [r.reason for r in rejected] == ["unknown_alias"]


def test_a_stale_ndeath_from_an_earlier_session_is_ignored(host):
    born(host, pump_node(bdseq=5))
    old_will = pump_node(bdseq=4).ndeath()  # delivered late, after the node reconnected with bdSeq 5
    assert feed(host, [old_will], T0 + S) == ([], [])


def test_ddeath_marks_one_device_offline(host):
    node, _ = born(host)
    points, rejected = feed(host, [node.ddeath("cocleu-pump-2", MS + 1000)], T0 + 2 * S)
    assert [(p.device, p.fields) for p in points] == [("cocleu-pump-2", {"online": 0})] and rejected == []
    _p, rejected = feed(host, [node.data("cocleu-pump-2", {"Pump/Flow": 1.0}, MS)], T0 + 3 * S)
    assert [r.reason for r in rejected] == ["unknown_alias"] and "before its DBIRTH" in rejected[0].detail
    points, rejected = feed(host, [node.data("cocleu-pump-1", {"Pump/Flow": 2.0}, MS)], T0 + 3 * S)
    assert [p.fields for p in points] == [{"flow_m3h": 2.0}]  # the other device lives on


def test_is_historical_readings_are_marked_historical_at_their_own_time(host):
    node, _ = born(host)
    msg = node.data("cocleu-pump-1", {"Pump/Flow": 90.0}, MS - 3_600_000, historical=True)
    points, rejected = feed(host, [msg], T0 + S)
    assert rejected == []
    assert [(p.ts_ns, p.fields) for p in points] == [(T0 - 3600 * S, {"flow_m3h": 90.0, "historical": 1})]


@pytest.mark.parametrize("topic, payload, reason, detail", [
    ("spBv1.0/other/NDATA/cocleu-edge-gw-1", b"", "unknown_topic", "group 'other' is not declared"),
    ("spBv1.0/laocai/NBIRTH/ghost-gw", b"", "unknown_device", "'ghost-gw' is not in the site registry"),
    ("spBv1.0/laocai/NBIRTH/cocleu-router", b"", "unknown_device", "is a commune_router"),
    ("spBv1.0/laocai/DBIRTH/dc-edge-gw-1/cocleu-pump-1", b"", "unknown_device", "not behind edge node 'dc-edge-gw-1'"),
    ("spBv1.0/laocai/NBIRTH/cocleu-edge-gw-1", b"\xff\xfe not protobuf", "decode_error", "not a Sparkplug B protobuf"),
    ("spBv1.0/laocai/DDATA/cocleu-edge-gw-1", b"", "unknown_topic", "has no device level"),
])
def test_refusals_name_what_is_wrong(host, topic, payload, reason, detail):
    points, rejected = host.message(topic, payload, T0)
    assert points == [] and [r.reason for r in rejected] == [reason]
    assert detail in rejected[0].detail


def test_state_and_commands_carry_no_telemetry(host):
    assert host.message("spBv1.0/STATE/other-host", b'{"online": true, "timestamp": 1}', T0) == ([], [])
    assert host.message("spBv1.0/laocai/NCMD/cocleu-edge-gw-1", b"", T0) == ([], [])


def test_bad_metrics_in_a_birth_do_not_cost_the_good_ones(host):
    payload = encode_payload([{"name": "bdSeq", "value": 0}, {"name": "Gateway/CPU Temperature", "alias": 1, "value": 40.0},
                              {"name": "Gateway/Uptime", "alias": 2, "value": "forever"},  # a string for an int field
                              {"name": "fan_rpm", "alias": 3, "value": 1200.0}], seq=0, timestamp_ms=MS)
    points, rejected = host.message("spBv1.0/laocai/NBIRTH/cocleu-edge-gw-1", payload, T0)
    assert points == [] and [r.reason for r in rejected] == ["wrong_type"]  # one reading: all its fields, or none
    payload = encode_payload([{"name": "Gateway/CPU Temperature", "alias": 1, "value": 40.0, "timestamp": MS},
                              {"name": "fan_rpm", "alias": 3, "value": 1200.0, "timestamp": MS + 1}], seq=0, timestamp_ms=MS)
    points, rejected = host.message("spBv1.0/laocai/NBIRTH/cocleu-edge-gw-1", payload, T0)
    assert [p.fields for p in points] == [{"cpu_temp_c": 40.0, "online": 1}]
    assert [r.reason for r in rejected] == ["unknown_field"] and "'fan_rpm'" in rejected[0].detail


def test_hostile_payloads_never_raise(host):
    """Random bytes, truncations and bit flips of real payloads: always points/rejects, never an exception."""
    import random

    rng = random.Random(7)
    node = pump_node()
    real = node.births(MS) + [node.data("cocleu-pump-1", {"Pump/Flow": 1.0, "Tank/Level": 2.0}, MS) for _ in range(5)]
    topics = [t for t, _ in real] + ["spBv1.0/laocai/NDEATH/cocleu-edge-gw-1", "spBv1.0/laocai/DDEATH/cocleu-edge-gw-1/cocleu-pump-2"]
    for i in range(3000):
        _t, payload = real[i % len(real)]
        b = bytearray(payload)
        how = i % 3
        if how == 0:
            b = bytearray(rng.randbytes(rng.randrange(0, 64)))
        elif how == 1:
            b = b[: rng.randrange(0, len(b) + 1)]
        else:
            for _ in range(rng.randrange(1, 4)):
                b[rng.randrange(len(b))] = rng.randrange(256)
        points, rejected = host.message(rng.choice(topics), bytes(b), T0 + i * S)
        assert all(r.reason for r in rejected) and all(p.device for p in points)


def test_a_death_is_a_critical_limit_at_once_and_a_rebirth_clears_it(host):
    """NDEATH -> online = 0 points -> the profile's limit on online (crit_below 0.5, for_s 0) fires in the
    detector's first column after the death, and the next birth clears it (docs/formats.md)."""
    import numpy as np

    from analytics.limits import LimitDetector

    node, births = born(host)
    deaths, _ = feed(host, [node.ndeath()], T0 + 60 * S)
    rebirths, _ = feed(host, pump_node().births(MS + 120_000), T0 + 120 * S)
    pumps = ["cocleu-pump-1", "cocleu-pump-2"]
    det = LimitDetector(REGISTRY.kinds["pump_station"], pumps)

    def column(points):
        col = np.full((len(pumps), 1), np.nan)
        for p in points:
            if p.device in pumps and "online" in p.fields:
                col[pumps.index(p.device), 0] = p.fields["online"]
        return col

    det.update({"online": column(births)}, np.array([T0]))
    assert det.conditions(REGISTRY) == []
    det.update({"online": column(deaths)}, np.array([T0 + 60 * S]))
    (cond,) = det.conditions(REGISTRY)
    assert cond.severity == "critical" and cond.site == "coc_leu" and "online" in cond.title
    assert {cond.device, *(m for m, _lvl in cond.members)} == set(pumps)
    det.update({"online": np.full((2, 1), np.nan)}, np.array([T0 + 90 * S]))  # no reading: the level holds
    assert len(det.conditions(REGISTRY)) == 1
    det.update({"online": column(rebirths)}, np.array([T0 + 120 * S]))
    assert det.conditions(REGISTRY) == []


@pytest.mark.parametrize("change, message", [
    ({"format": "json"}, "'sparkplug' applies only to format sparkplug_b, not 'json'"),
    ({"sparkplug": {"group": "laocai", "metrics": {"Pump/Speed": "speed_rpm"}}}, "maps to 'speed_rpm', which is not one of"),
    ({"sparkplug": {"group": "laocai/pumps"}}, "String should match pattern"),  # a group is one topic level
])
def test_profile_sparkplug_section_is_checked_at_start(change, message):
    from pydantic import ValidationError

    from device_profiles.models import Profile

    spec = REGISTRY.kinds["pump_station"].model_dump()
    with pytest.raises(ValidationError, match=message):
        Profile.model_validate({**spec, **change})
