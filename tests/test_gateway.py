"""Gateway payloads (many devices in one message): golden cases (golden/gateway/), the "behind the
gateway" rule, and through mosquitto into the store."""

from __future__ import annotations

import json
import time
import uuid

import orjson
import paho.mqtt.client as mqtt
import pytest
from golden import ARRIVED_NS, cases, run_case

from device_profiles import load_registry
from fansipan.config import Settings
from ingest.collector import Collector
from ingest.gateway import behind
from ingest.validate import REASONS, Validator
from storage.sqlite import SQLiteStore

CASES = cases("gateway")
REGISTRY = load_registry()
VALIDATOR = Validator(REGISTRY)
TOPIC = "laocai/a_lu/commune_gateway/alu-gw-1"


def test_cases_exist():
    assert len(CASES) >= 10


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case):
    run_case(case, VALIDATOR)


def test_behind_follows_the_uplink_chain_only():
    assert behind(REGISTRY, "alu-wl-1", "alu-gw-1")
    assert not behind(REGISTRY, "alu-wl-1", "alu-ups")  # its power feed, not its uplink
    assert behind(REGISTRY, "alu-wl-1", "alu-router")  # the gateway's own uplink is on the chain
    assert not behind(REGISTRY, "alu-spk-1", "alu-gw-1")  # same commune, not behind the gateway


def test_points_take_each_devices_own_kind_and_site():
    payload = orjson.dumps({"ts": 1764230400, "readings": [{"device": "alu-wl-1", "level_m": 1.0}, {"device": "alu-ws-1", "air_temp_c": 9.5}]})
    points, rejected = VALIDATOR.message(TOPIC, payload, ARRIVED_NS)
    assert rejected == [] and [(p.kind, p.site, p.district) for p in points] == [("water_level", "a_lu", "bat_xat"),
                                                                                  ("weather_station", "a_lu", "bat_xat")]


def test_rejects_name_the_device_at_fault_not_the_gateway():
    payload = orjson.dumps({"ts": 1764230400, "readings": [{"device": "alu-wl-1", "level_m": 1e9}]})
    _p, (r,) = VALIDATOR.message(TOPIC, payload, ARRIVED_NS)
    assert (r.reason, r.kind, r.device) == ("out_of_range", "water_level", "alu-wl-1")


@pytest.mark.servers
def test_gateway_through_mosquitto_into_the_store(mosquitto, tmp_path):
    store = SQLiteStore(tmp_path / "gw.sqlite", REGISTRY)
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{mosquitto.port}", mqtt_client_id=f"c-{uuid.uuid4().hex[:8]}",
                        batch_size=100, batch_ms=50)
    collector = Collector(settings, REGISTRY, store)
    collector.start()
    now = int(time.time()) - 120
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"gw-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    levels, temps = {}, {}
    try:
        deadline = time.monotonic() + 10
        while not collector.stats.snapshot()["connected"]:
            assert time.monotonic() < deadline, "collector did not connect"
            time.sleep(0.05)
        time.sleep(0.3)
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        for i in range(10):
            t = now + 6 * i
            readings = [{"device": "alu-gw-1", "backhaul_up": True, "sensors_connected": 2, "cpu_temp_c": 40.0},
                        {"device": "alu-wl-1", "level_m": 1.0 + i / 8},
                        {"device": "alu-ws-1", "air_temp_c": 12.0 + i / 4},
                        {"device": "cocleu-wl-1", "level_m": 2.0},  # not behind this gateway: refused
                        {"device": "alu-ws-1", "ts": t + 1, "air_temp_c": 999.0}]  # out of range: refused alone
            levels[t], temps[t] = 1.0 + i / 8, 12.0 + i / 4
            pub.publish(TOPIC, orjson.dumps({"gateway": "alu-gw-1", "ts": t, "readings": readings}), qos=1).wait_for_publish(5)
        deadline = time.monotonic() + 15
        while collector.stats.snapshot()["messages"] < 10:
            assert time.monotonic() < deadline, "collector did not take the messages"
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        pub.disconnect()
        pub.loop_stop()
        collector.stop()
    end = time.time_ns()
    wl = store.frame("water_level", 0, end, ["alu-wl-1", "cocleu-wl-1"])
    assert wl.devices == ("alu-wl-1",) and dict(zip((wl.ts_ns // 10**9).tolist(), wl.values["level_m"].tolist())) == levels
    ws = store.frame("weather_station", 0, end)
    assert dict(zip((ws.ts_ns // 10**9).tolist(), ws.values["air_temp_c"].tolist())) == temps
    assert len(store.frame("commune_gateway", 0, end).ts_ns) == 10
    reasons = sorted((r.reason, r.device) for r in store.quarantined(0, end))
    assert reasons == [("out_of_range", "alu-ws-1")] * 10 + [("unknown_device", "cocleu-wl-1")] * 10


def test_hostile_messages_never_raise():
    """Random mutations of a real gateway message: always points/rejects, never an exception."""
    import copy
    import random

    rng = random.Random(13)
    pieces = [None, True, 7, -1.5, 2**70, "alu-wl-1", "alu-gw-1", "cocleu-wl-1", "", [], {}, {"level_m": 1.0}, [{"x": 1}]]
    keys = ["gateway", "ts", "readings", "devices", "device", "level_m", "air_temp_c", "bogus"]
    for _ in range(2000):
        msg = {"gateway": "alu-gw-1", "ts": 1764230400, "readings": [{"device": "alu-wl-1", "level_m": 1.0}],
               "devices": {"alu-ws-1": {"air_temp_c": 3.0}}}
        for _ in range(rng.randrange(1, 4)):
            target = rng.choice([msg, msg["readings"][0] if isinstance(msg.get("readings"), list) and msg["readings"] else msg])
            target[rng.choice(keys)] = copy.deepcopy(rng.choice(pieces))
        points, rejected = VALIDATOR.message(TOPIC, json.dumps(msg).encode(), ARRIVED_NS)
        assert all(r.reason in REASONS for r in rejected)
        assert {p.device for p in points} <= {"alu-gw-1", "alu-wl-1", "alu-ws-1"}
