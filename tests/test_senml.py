"""SenML JSON (RFC 8428): golden cases (golden/senml/), unit edge cases, and through mosquitto into the store."""

from __future__ import annotations

import json
import time
import uuid

import orjson
import paho.mqtt.client as mqtt
import pytest
from golden import ARRIVED_NS, cases, run_case
from servers import wait_for

from device_profiles import load_registry
from fansipan.config import Settings
from ingest.collector import Collector
from ingest.decoders import DecodeError, get_decoder
from ingest.senml import decode_records
from ingest.validate import REASONS, Validator
from storage.sqlite import SQLiteStore

CASES = cases("senml")
REGISTRY = load_registry()
VALIDATOR = Validator(REGISTRY)


def test_cases_exist():
    assert len(CASES) >= 12


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case):
    run_case(case, VALIDATOR)


def test_base_fields_carry_over_and_reset():
    pack = [{"bn": "a/", "bt": 1764230000, "bu": "Cel", "bv": 10, "n": "x", "v": 1},
            {"n": "y", "t": 5, "v": 2, "u": "%RH"},
            {"bn": "b/", "n": "x", "v": 3}]
    recs = decode_records(orjson.dumps(pack), ARRIVED_NS)
    assert recs == [("a", "x", 1764230000 * 10**9, 11, "Cel"), ("a", "y", 1764230005 * 10**9, 12, "%RH"),
                    ("b", "x", 1764230000 * 10**9, 13, "Cel")]


@pytest.mark.parametrize("pack, message", [
    ([{"bn": "a/", "n": "x"}], "expected exactly one of v, vb, vs, vd, got none"),
    ([{"bn": "a/", "n": "x", "v": 1, "vb": True}], "expected exactly one of v, vb, vs, vd, got v, vb"),
    ([{"bn": "a/", "n": "x", "s": 4.0}], "a sum ('s') without a value"),
    ([{"bn": "a/", "n": "x", "v": "1"}], "'v' must be a finite number"),
    ([{"bn": 5, "n": "x", "v": 1}], "'bn' must be a string"),
    ([{"bn": "urn:dev:id::", "n": "x", "v": 1}], "expected urn:dev:<scheme>:<device>:<field>"),
    ([7], "expected a JSON object, got int"),
])
def test_bad_records_name_the_problem(pack, message):
    (rec,) = decode_records(orjson.dumps(pack), ARRIVED_NS)
    assert isinstance(rec, DecodeError) and message in str(rec)


def test_registry_decoder_without_arrival_time_refuses_relative_times():
    decode = get_decoder("senml")
    (r,) = decode(b'[{"bn": "a/", "n": "x", "v": 1, "bt": 1764230000}]')
    assert r.device == "a" and r.fields == {"x": 1} and r.ts == 1764230000 * 10**9
    (r,) = decode(b'[{"bn": "a/", "n": "x", "v": 1, "t": -5}]')
    assert "needs the arrival time" in str(r)


@pytest.mark.servers
def test_senml_through_mosquitto_into_the_store(mosquitto, tmp_path):
    store = SQLiteStore(tmp_path / "senml.sqlite", REGISTRY)
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{mosquitto.port}", mqtt_client_id=f"c-{uuid.uuid4().hex[:8]}",
                        batch_size=100, batch_ms=50)
    collector = Collector(settings, REGISTRY, store)
    collector.start()
    now = int(time.time()) - 120
    good = {}
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"ws-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    try:
        wait_for(lambda: collector.stats.snapshot()["connected"], 10, "collector connected")
        time.sleep(0.3)
        pub.connect("127.0.0.1", mosquitto.port)
        pub.loop_start()
        for dev, site in (("cocleu-ws-1", "coc_leu"), ("alu-ws-1", "a_lu")):
            for i in range(10):
                t = now + 6 * i
                pack = [{"bn": f"{dev}/", "bt": t, "n": "air_temp_c", "u": "Cel", "v": 15 + i / 4},
                        {"n": "humidity_pct", "u": "%RH", "v": 80 + i}]
                good[(dev, t)] = (15 + i / 4, 80.0 + i)
                pub.publish(f"laocai/{site}/weather_station/{dev}", orjson.dumps(pack), qos=1).wait_for_publish(5)
        bad = [[{"bn": "cocleu-ws-1/", "bt": now, "n": "air_temp_c", "u": "K", "v": 290.0}],  # wrong_unit
               [{"bn": "cocleu-ws-1/", "bt": now, "n": "air_temp_c", "vb": True}],  # wrong_type
               [{"bn": "alu-ws-1/", "bt": now, "n": "air_temp_c", "v": 1.0}]]  # another device's name: unknown_device
        for pack in bad:
            pub.publish("laocai/coc_leu/weather_station/cocleu-ws-1", orjson.dumps(pack), qos=1).wait_for_publish(5)
        pub.publish("laocai/coc_leu/weather_station/cocleu-ws-1", b"[{", qos=1).wait_for_publish(5)  # decode_error
        wait_for(lambda: collector.stats.snapshot()["messages"] >= 24, 15, "24 messages taken")
        time.sleep(0.2)
    finally:
        pub.disconnect()
        pub.loop_stop()
        collector.stop()
    frame = store.frame("weather_station", 0, time.time_ns())
    stored = {(frame.devices[frame.device_idx[i]], int(frame.ts_ns[i]) // 10**9):
              (frame.values["air_temp_c"][i], frame.values["humidity_pct"][i]) for i in range(len(frame.ts_ns))}
    assert stored == good
    reasons = sorted(r.reason for r in store.quarantined(0, time.time_ns()))
    assert reasons == ["decode_error", "unknown_device", "wrong_type", "wrong_unit"]


def test_hostile_packs_never_raise():
    """Random JSON-ish mutations of a real pack: always points/rejects, never an exception."""
    import copy
    import random

    rng = random.Random(11)
    pieces = [None, True, 1, -1.5, 1e308, "x", "", [], {}, 2**70, "cocleu-ws-1/", "Cel", "urn:dev:id:", [1, [2]]]
    keys = ["bn", "bt", "bu", "bv", "bver", "n", "u", "v", "vb", "vs", "vd", "t", "s", "x_", "ut"]
    topic = "laocai/coc_leu/weather_station/cocleu-ws-1"
    for _ in range(2000):
        pack = [{"bn": "cocleu-ws-1/", "bt": 1764230000, "n": "air_temp_c", "v": 1.0}, {"n": "rain_mm", "v": 2.0}]
        for _ in range(rng.randrange(1, 4)):
            rec = rng.choice(pack + [{}])
            rec[rng.choice(keys)] = copy.deepcopy(rng.choice(pieces))
            if rec not in pack:
                pack.append(rec)
        payload = json.dumps(rng.choice([pack, pack[0], pack[:0], [pack], pieces])).encode()
        points, rejected = VALIDATOR.message(topic, payload, ARRIVED_NS)
        assert all(r.reason in REASONS for r in rejected) and all(p.device == "cocleu-ws-1" for p in points)
