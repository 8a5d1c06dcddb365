"""End to end through real servers: simulator -> mosquitto -> collector -> store.

Every reading is counted: each valid reading the simulator published is stored
exactly once, and each reading it broke on purpose is quarantined with the
reason it was broken for.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone

import httpx
import paho.mqtt.client as mqtt
import pytest
from servers import wait_for

from device_profiles import load_registry
from fansipan.config import Settings
from ingest.collector import Collector
from simulator.core import Simulation
from simulator.faults import Fault
from simulator.publisher import MqttPublisher
from storage.base import StoreError
from storage.influx_v1 import InfluxV1Store
from storage.sqlite import SQLiteStore

pytestmark = pytest.mark.servers

REGISTRY = load_registry()
# A simulated day hour in the past, so no reading is "in the future" when it arrives.
START = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=3)


def _collector(port: int, store, protocol: str = "5", client_id: str | None = None, share_group: str = "") -> Collector:
    settings = Settings(
        mqtt_url=f"mqtt://127.0.0.1:{port}", mqtt_protocol=protocol, mqtt_client_id=client_id or f"c-{uuid.uuid4().hex[:8]}",
        mqtt_share_group=share_group, batch_size=500, batch_ms=100,
    )
    c = Collector(settings, REGISTRY, store)
    c.start()
    wait_for(lambda: c.stats.snapshot()["connected"], 10, "collector connected")
    time.sleep(0.3)  # subscriptions acknowledged before anything is published
    return c


def _publish(port: int, faults: list[str], sim_seconds: float, protocol: int = 5, batch: int = 1, seed: int = 7) -> Simulation:
    sim = Simulation(REGISTRY, faults=[Fault.parse(f) for f in faults], seed=seed, speed=0, start=START, batch=batch)
    pub = MqttPublisher("127.0.0.1", port, protocol=protocol, client_id=f"sim-{uuid.uuid4().hex[:8]}")
    try:
        sim.run(pub.publish, duration_s=sim_seconds)
        pub.flush(timeout=60)
    finally:
        pub.close()
    return sim


def _accounted(sim: Simulation, collector: Collector) -> bool:
    s = collector.stats.snapshot()
    return s["readings_stored"] + s["quarantined"] >= sim.stats.published_readings + sum(sim.stats.malformed_by_reason.values())


def _influx_count(url: str, db: str, q: str) -> list:
    r = httpx.get(f"{url}/query", params={"db": db, "q": q, "epoch": "ns"}, timeout=30)
    r.raise_for_status()
    return r.json()["results"][0].get("series", [])


def test_simulator_to_influxdb_every_reading_once(mosquitto, influxd):
    db = f"e2e_{uuid.uuid4().hex[:8]}"
    store = InfluxV1Store(influxd.url, db, REGISTRY)
    collector = _collector(mosquitto.port, store)
    faults = ["malformed:0.02", "clock_skew:cocleu-cam-1", "uplink_cut:y_ty:600", "crac_failure:dc-crac-1:300"]
    try:
        sim = _publish(mosquitto.port, faults, sim_seconds=1800)
        wait_for(lambda: _accounted(sim, collector), 60, "collector accounted for every published reading")
    finally:
        collector.stop()

    published = sim.stats.published_readings
    assert published > 10_000
    stored = 0
    for kind in REGISTRY.kinds:
        for series in _influx_count(influxd.url, db, f'SELECT count("arrived_ms") FROM "{kind}"'):
            stored += series["values"][0][1]
    assert stored == published, "every valid reading stored exactly once"

    quarantined = Counter()
    for series in _influx_count(influxd.url, db, 'SELECT count("topic") FROM "fansipan_quarantine" GROUP BY "reason"'):
        quarantined[series["tags"]["reason"]] = series["values"][0][1]
    assert quarantined == Counter(sim.stats.malformed_by_reason)
    assert quarantined["bad_timestamp"] > 0 and quarantined["decode_error"] > 0

    # Devices behind Y Tý's cut uplink went silent after the cut; the rest of the province did not.
    last = store.last_seen()
    cut_at = START.timestamp() * 1e9 + 600e9
    behind = [d for d in REGISTRY.devices.values() if d.site == "y_ty"]
    assert behind and all(last.get(d.id, 0) <= cut_at for d in behind)
    assert sum(1 for d in REGISTRY.devices.values() if d.site != "y_ty" and last.get(d.id, 0) > cut_at) > 100
    store.close()


def test_mqtt311_and_embedded_store(mosquitto, tmp_path):
    store = SQLiteStore(tmp_path / "f.sqlite", REGISTRY)
    collector = _collector(mosquitto.port, store, protocol="3.1.1")
    try:
        sim = _publish(mosquitto.port, ["malformed:0.05"], sim_seconds=300, protocol=4, batch=5)
        wait_for(lambda: _accounted(sim, collector), 60, "collector accounted for every published reading")
    finally:
        collector.stop()
    s = collector.stats.snapshot()
    assert s["readings_stored"] == sim.stats.published_readings
    assert Counter(s["quarantined_by_reason"]) == Counter(sim.stats.malformed_by_reason)
    rows = store.quarantined(0, time.time_ns() + 1, limit=100_000)
    assert Counter(r.reason for r in rows) == Counter(sim.stats.malformed_by_reason)
    assert all(r.topic and r.detail and r.raw for r in rows)
    store.close()


def test_shared_subscription_splits_the_stream(mosquitto, tmp_path):
    """Two collectors in one $share group: each reading stored once, both did work."""
    store = SQLiteStore(tmp_path / "f.sqlite", REGISTRY)
    group = f"g{uuid.uuid4().hex[:6]}"
    a = _collector(mosquitto.port, store, share_group=group)
    b = _collector(mosquitto.port, store, share_group=group)
    try:
        sim = _publish(mosquitto.port, [], sim_seconds=300)
        wait_for(lambda: a.stats.snapshot()["readings_stored"] + b.stats.snapshot()["readings_stored"] >= sim.stats.published_readings,
              60, "both collectors together stored everything")
    finally:
        a.stop()
        b.stop()
    sa, sb = a.stats.snapshot()["readings_stored"], b.stats.snapshot()["readings_stored"]
    assert sa + sb == sim.stats.published_readings
    assert sa > 0.2 * (sa + sb) and sb > 0.2 * (sa + sb)
    store.close()


def test_unacknowledged_messages_are_redelivered_after_collector_crash(mosquitto, tmp_path):
    """A collector that dies before its write leaves its messages at the broker; the next one stores them."""

    release = threading.Event()

    class HangingStore:
        """A write that never returns: the process is stuck, then dies, with nothing written or acked."""

        def __init__(self):
            self.calls = 0

        def write(self, points, rejected=()):
            self.calls += 1
            release.wait(60)
            raise StoreError("the process is gone", retryable=False)

    client_id = f"crash-{uuid.uuid4().hex[:6]}"
    dying = _collector(mosquitto.port, HangingStore(), client_id=client_id)
    sim = _publish(mosquitto.port, [], sim_seconds=60)
    wait_for(lambda: dying.store.calls > 0, 10, "the dying collector tried to write")
    dying._client.disconnect()  # the connection drops with everything unacknowledged
    dying._client.loop_stop()

    store = SQLiteStore(tmp_path / "f.sqlite", REGISTRY)
    survivor = _collector(mosquitto.port, store, client_id=client_id)  # same session
    try:
        wait_for(lambda: survivor.stats.snapshot()["readings_stored"] >= sim.stats.published_readings, 30,
              "redelivered readings stored")
    finally:
        survivor.stop()
        release.set()
    assert survivor.stats.snapshot()["readings_stored"] == sim.stats.published_readings
    store.close()


def test_a_poison_message_does_not_stop_the_collector(mosquitto, tmp_path):
    store = SQLiteStore(tmp_path / "f.sqlite", REGISTRY)
    collector = _collector(mosquitto.port, store)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    try:
        poison = [b"\x00\xff" * 1000, b"{" * 100_000, b"[]", b"null", b'{"ts": 1e400}', b"x" * (300 * 1024)]
        for p in poison:
            pub.publish("laocai/y_ty/commune_router/yty-router", p, qos=1).wait_for_publish(5)
        pub.publish("laocai/y_ty/commune_router/yty-router", b'{"latency_ms": 42.0}', qos=1).wait_for_publish(5)
        wait_for(lambda: collector.stats.snapshot()["readings_stored"] == 1, 10, "the good reading after the poison")
    finally:
        pub.loop_stop()
        collector.stop()
    assert collector.stats.snapshot()["quarantined"] == len(poison)
    store.close()


def test_detector_writes_incident_events_next_to_the_telemetry(influxd, tmp_path):
    """The boards plot incidents from InfluxDB: the detector writes its incident events there."""
    from analytics.incidents import IncidentStore
    from analytics.service import DetectionService
    from ingest.validate import Validator

    db = f"ev_{uuid.uuid4().hex[:8]}"
    store = InfluxV1Store(influxd.url, db, REGISTRY)
    start = datetime.now(timezone.utc) - timedelta(hours=1)
    sim = Simulation(REGISTRY, faults=["uplink_cut:y_ty:300"], seed=3, speed=0, start=start)
    validator = Validator(REGISTRY)
    now = [int(start.timestamp() * 1e9)]
    service = DetectionService(REGISTRY, store, IncidentStore(tmp_path / "i.sqlite"), clock=lambda: now[0], history_s=0, lag_s=0)
    for minute in range(1, 16):
        now[0] = int(start.timestamp() * 1e9) + minute * 60 * 10**9
        points = [p for t, pl, _ in sim.messages(1, step_s=60) for p in validator.message(t, pl, now[0])[0]]
        store.write(points)
        service.cycle()
    rows = _influx_count(influxd.url, db, 'SELECT "id", "title", "device" FROM "fansipan_incident" WHERE "event" = \'opened\'')
    titles = [v[2] for s in rows for v in s["values"]]
    assert any("Y Tý" in t and "Uplink down" in t for t in titles), titles
    store.close()
