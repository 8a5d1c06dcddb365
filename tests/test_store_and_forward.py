"""Store-and-forward: nothing acknowledged is lost while the store is down, slow or refusing.

Unit tests of the delivery rules (split on 413, quarantine rows the store
refuses, honour Retry-After) and of the spool, then the fault test against real
servers: influxd killed with SIGKILL for 30 s under load and restarted, every
acknowledged reading in InfluxDB exactly once.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter

import httpx
import pytest

import servers
from device_profiles import load_registry
from fansipan.config import Settings
from ingest.collector import Collector
from ingest.delivery import backoff_s, deliver
from ingest.spool import Spool, SpoolFull
from simulator.core import Simulation
from simulator.publisher import MqttPublisher
from storage.base import Point, Rejected, StoreError
from storage.influx_v1 import InfluxV1Store

REGISTRY = load_registry()


def pt(i: int, device: str = "yty-router") -> Point:
    return Point("commune_router", device, "y_ty", "bat_xat", 1_764_230_400_000_000_000 + i, {"latency_ms": float(i)},
                 1_764_230_400_000_000_000 + i)


class FakeStore:
    """Refuses batches over ``max_rows`` with 413 and any batch holding a point with latency 13 with 400."""

    def __init__(self, max_rows=10**9, down=0):
        self.max_rows, self.down = max_rows, down
        self.points, self.rejected, self.calls = [], [], 0

    def write(self, points, rejected=()):
        self.calls += 1
        if self.down:
            self.down -= 1
            raise StoreError("down", retryable=True, status=503, retry_after_s=2.0)
        if len(points) + len(rejected) > self.max_rows:
            raise StoreError("too large", retryable=False, status=413)
        if any(p.fields.get("latency_ms") == 13.0 for p in points):
            raise StoreError("HTTP 400: field type conflict", retryable=False, status=400)
        self.points += points
        self.rejected += rejected


def test_413_splits_until_the_batch_fits():
    store = FakeStore(max_rows=7)
    assert deliver(store, [pt(i) for i in range(20, 60)], []) == 0
    assert sorted(p.ts_ns for p in store.points) == [pt(i).ts_ns for i in range(20, 60)]


def test_a_refused_row_goes_to_the_quarantine_and_the_rest_is_stored():
    store = FakeStore()
    refused = deliver(store, [pt(i) for i in range(20)], [Rejected(1, "t", "wrong_type", "d", b"x")])
    assert refused == 1
    assert len(store.points) == 19 and 13.0 not in [p.fields["latency_ms"] for p in store.points]
    bad = [r for r in store.rejected if r.reason == "store_rejected"]
    assert len(bad) == 1 and "field type conflict" in bad[0].detail and bad[0].device == "yty-router"
    assert b"latency_ms=13.0" in bad[0].raw


def test_retryable_errors_reach_the_caller_and_retry_after_is_honoured():
    store = FakeStore(down=1)
    with pytest.raises(StoreError) as exc:
        deliver(store, [pt(1)], [])
    assert exc.value.retryable and backoff_s(0, exc.value) == 2.0
    waits = [backoff_s(a) for a in range(10)]
    assert all(0 < w <= 30 for w in waits) and max(waits) > 5  # exponential, capped, jittered


def test_spool_keeps_order_survives_reopen_and_refuses_past_its_size(tmp_path):
    spool = Spool(tmp_path / "s.sqlite", max_bytes=2_000)
    first = spool.put([pt(1)], [Rejected(5, "t", "decode_error", "d", b"\xff\x00")])
    spool.put([pt(2)], [])
    with pytest.raises(SpoolFull, match="is full"):
        spool.put([pt(i) for i in range(100)], [])
    spool.close()
    again = Spool(tmp_path / "s.sqlite", max_bytes=2_000)
    assert len(again) == 2
    batch_id, points, rejected = again.oldest()
    assert batch_id == first and points == [pt(1)] and rejected[0].raw == b"\xff\x00"
    again.delete(batch_id)
    assert again.oldest()[1] == [pt(2)]
    assert again.stats()["batches"] == 1


def _count_stored(url: str, db: str) -> int:
    total = 0
    for kind in REGISTRY.kinds:
        r = httpx.get(f"{url}/query", params={"db": db, "q": f'SELECT count("arrived_ms") FROM "{kind}"'}, timeout=30)
        for s in r.json()["results"][0].get("series", []):
            total += s["values"][0][1]
    return total


@pytest.mark.servers
def test_influxd_killed_for_30_s_under_load_loses_nothing(mosquitto, tmp_path):
    influxd = servers.start_influxd(tmp_path / "influx")
    db = f"kill_{uuid.uuid4().hex[:6]}"
    store = InfluxV1Store(influxd.url, db, REGISTRY, timeout_s=2)
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{mosquitto.port}", mqtt_client_id=f"sf-{uuid.uuid4().hex[:6]}",
                        batch_size=500, batch_ms=100)
    collector = Collector(settings, REGISTRY, store, spool=Spool(tmp_path / "spool.sqlite", 256 * 1024 * 1024))
    collector.start()
    deadline = time.monotonic() + 10
    while not collector.stats.snapshot()["connected"] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    sim = Simulation(REGISTRY, faults=[], seed=9, speed=30)
    pub = MqttPublisher("127.0.0.1", mosquitto.port, client_id=f"sfp-{uuid.uuid4().hex[:6]}")
    publisher = threading.Thread(target=sim.run, args=(pub.publish,), kwargs={"duration_s": 45})
    try:
        publisher.start()
        time.sleep(5)
        influxd.kill()  # SIGKILL: no goodbye
        time.sleep(32)
        spooled = collector.stats.snapshot()["spool"]
        influxd.start()
        publisher.join(60)
        assert pub.flush(timeout=60)
        want = sim.stats.published_readings
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            s = collector.stats.snapshot()
            if s["readings_stored"] >= want and s["spool"].get("batches", 1) == 0:
                break
            time.sleep(0.5)
    finally:
        pub.close()
        collector.stop()
    assert spooled.get("batches", 0) > 0, "the outage should have filled the spool"
    assert collector.stats.snapshot()["spool"]["batches"] == 0
    assert Counter(collector.stats.snapshot()["quarantined_by_reason"]) == Counter()
    stored = _count_stored(influxd.url, db)
    print(f"\nRELIABILITY influxd SIGKILL 32 s: sent {want} spooled at peak {spooled.get('readings')} "
          f"stored {stored} lost {want - stored}")
    assert stored == want, "every acknowledged reading stored exactly once"
    store.close()
    influxd.stop()
