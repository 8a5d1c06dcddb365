"""Clock skew end to end: device -> real mosquitto -> collector -> SQLite store -> DetectionService.

Two air-quality stations, with no uplink or power feed so that only they
matter: A's clock is wrong (behind, ahead, or 1970), B reports normally, so
that the detector's "now" keeps up with the wall clock.  Helpers are shared
with tests/test_late_data.py.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
import uuid

import paho.mqtt.client as mqtt
import pytest
from servers import wait_for

from analytics.incidents import IncidentStore
from analytics.service import DetectionService
from device_profiles import load_registry
from fansipan.config import Settings
from ingest.collector import Collector
from storage.base import Point
from storage.sqlite import SQLiteStore

pytestmark = pytest.mark.servers

BASE = load_registry()
A, B = "cocleu-aq-1", "kimtan-aq-1"
S = 1_000_000_000


def world_registry(**reporting):
    """A and B alone, with air_quality's reporting contract changed by ``reporting``."""
    p = BASE.kinds["air_quality"]
    kinds = {**BASE.kinds, "air_quality": p.model_copy(update={"reporting": p.reporting.model_copy(update=reporting)})}
    devices = {d: dataclasses.replace(BASE.devices[d], uplink=None, power=None) for d in (A, B)}
    return dataclasses.replace(BASE, kinds=kinds, devices=devices)


def topic(device: str) -> str:
    return f"laocai/{BASE.devices[device].site}/air_quality/{device}"


class World:
    """A collector and a publisher on the real broker, a SQLite store, an incident store."""

    def __init__(self, port: int, tmp_path, registry, clock=lambda: time.time_ns() + AHEAD_NS):
        self.registry = registry
        self.path = tmp_path / "f.sqlite"
        self.store = SQLiteStore(self.path, registry)
        self.incidents = IncidentStore(tmp_path / "incidents.sqlite", clear_hold_s=0)
        self.detector = DetectionService(registry, self.store, self.incidents, clock=clock, history_s=0, lag_s=0,
                                         statistics=False)
        settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{port}", mqtt_client_id=f"c-{uuid.uuid4().hex[:8]}",
                            batch_size=100, batch_ms=50)
        self.collector = Collector(settings, registry, self.store)
        self.collector.start()
        wait_for(lambda: self.collector.stats.snapshot()["connected"], 10, "collector connected")
        time.sleep(0.3)  # subscriptions acknowledged before anything is published
        self.pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}",
                               protocol=mqtt.MQTTv5)
        self.pub.connect("127.0.0.1", port)
        self.pub.loop_start()
        self.sent = 0  # messages

    def publish(self, device: str, readings: list[dict]) -> None:
        payload = json.dumps(readings if len(readings) > 1 else readings[0]).encode()
        self.pub.publish(topic(device), payload, qos=1).wait_for_publish(5)
        self.sent += 1

    def settle(self) -> dict:
        """Wait until the collector has written and acknowledged every message sent; its stats."""
        wait_for(lambda: self.collector.stats.snapshot()["messages"] >= self.sent, 15,
             f"collector processed {self.sent} messages")
        return self.collector.stats.snapshot()

    def live(self, device: str, ts_ns: int, pm25: float = 12.0) -> None:
        """A reading that arrived on time, written straight to the store (the healthy neighbour)."""
        d = self.registry.devices[device]
        self.store.write([Point("air_quality", device, d.site, d.district, ts_ns, {"pm25": pm25}, ts_ns)])

    def rows(self, device: str, field: str) -> list[tuple[int, float, int]]:
        with sqlite3.connect(self.path) as db:
            kind = self.registry.devices[device].kind
            return db.execute(f'SELECT ts_ns, "{field}", arrived_ms FROM "readings_{kind}" WHERE device = ? '
                              f'AND "{field}" IS NOT NULL ORDER BY ts_ns', (device,)).fetchall()

    def close(self) -> None:
        self.pub.loop_stop()
        self.pub.disconnect()
        self.collector.stop()
        self.store.close()
        self.incidents.close()


@pytest.fixture
def make_world(mosquitto, tmp_path):
    made = []

    def make(registry, **kw) -> World:
        w = World(mosquitto.port, tmp_path / f"w{len(made)}", registry, **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def _steady(world: World, offset_s: float, n: int = 4, gap_s: float = 0.55) -> None:
    """A publishes ``n`` live readings, ``gap_s`` apart, each measured ``offset_s`` before it is sent."""
    for _ in range(n):
        world.publish(A, [{"ts": time.time() - offset_s, "pm25": 12.0}])
        time.sleep(gap_s)


AHEAD_NS = 5 * S  # the detector runs this far ahead of the wall clock: A's 1 s contract is long missed


def _detect(world: World):
    world.live(B, world.detector.clock())
    world.detector.cycle()
    return {i.key: i for i in world.incidents.open_incidents()}


def test_clock_behind_beyond_tolerance_is_quarantined_and_raises_clock_not_synchronised(make_world):
    w = make_world(world_registry(interval_s=1, jitter_s=0.5))  # live pace: messages >= 0.5 s apart
    _steady(w, 3600)
    s = w.settle()
    assert s["readings_stored"] == 1  # the first one alone could be a replay: stored, marked historical
    assert s["quarantined_by_reason"] == {"clock_skew": 3}
    rows = w.store.quarantined(0, time.time_ns() + S)
    assert all("behind arrival" in r.detail and "NTP" in r.detail and r.device == A for r in rows)
    assert [v for _, v, _ in w.rows(A, "historical")] == [1]

    open_ = _detect(w)  # A's last stored reading is an hour old, far past its 1 s contract: it would be silent
    assert "silence:" + A not in open_, "a device whose clock is wrong is heard from: not silent"
    inc = open_["clock:" + A]
    assert inc.kind == "clock_skew" and "Clock not synchronised" in inc.title and "Đồng hồ không đồng bộ" in inc.title
    assert "3600 s behind" in inc.evidence["last_symptom"] or "3601 s behind" in inc.evidence["last_symptom"]


def test_clock_behind_with_correct_policy_stores_corrected_times(make_world):
    w = make_world(world_registry(interval_s=1, jitter_s=0.5, clock_policy="correct"))
    _steady(w, 3600)
    s = w.settle()
    assert s["readings_stored"] == 4 and s["quarantined_by_reason"] == {"clock_skew": 1}  # one evidence row
    corrected = w.rows(A, "time_corrected")
    assert len(corrected) == 3
    for ts, _, arrived_ms in corrected:  # shifted to arrival: the network delay on loopback is milliseconds
        assert abs(ts / 1e6 - arrived_ms) < 1000
    assert w.store.quarantined(0, time.time_ns() + S)[0].detail.startswith("evidence, not a refusal")

    open_ = _detect(w)
    assert "silence:" + A not in open_ and open_["clock:" + A].kind == "clock_skew"
    assert w.store.last_seen()[A] > time.time_ns() - 10 * S  # stored near now, not an hour ago


@pytest.mark.parametrize("ts, symptom", [(0, "before 2000"), ("ahead", "ahead of arrival")])
def test_1970_and_ahead_timestamps_are_never_telemetry_but_a_clock_incident(make_world, ts, symptom):
    """The simulator's clock_skew fault (an hour ahead) and a device that lost its RTC (1970)."""
    w = make_world(world_registry(interval_s=1, jitter_s=0.5))
    for _ in range(3):
        w.publish(A, [{"ts": time.time() + 3600 if ts == "ahead" else ts, "pm25": 12.0}])
    s = w.settle()
    assert s["readings_stored"] == 0 and s["quarantined_by_reason"] == {"bad_timestamp": 3}
    assert w.rows(A, "pm25") == [] and A not in w.store.last_seen()

    open_ = _detect(w)
    assert "silence:" + A not in open_
    assert symptom in open_["clock:" + A].evidence["last_symptom"]
