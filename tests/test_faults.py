"""Faults that happen every week, against real servers, counting every reading end to end.

* the collector killed with SIGKILL mid-stream and restarted: nothing acknowledged is lost;
* mosquitto restarted (persistence on): the collector reconnects and resubscribes by itself;
* the spool full while the store is down: a clear error, backpressure, nothing dropped.

(influxd killed under load: tests/test_store_and_forward.py; the detector restarted:
tests/test_detection_scenarios.py::test_restart_keeps_open_incidents_without_duplicates.)
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest
import servers

from device_profiles import load_registry
from fansipan.config import Settings
from ingest.collector import Collector
from ingest.spool import Spool
from simulator.core import Simulation
from simulator.publisher import MqttPublisher
from storage.base import StoreError
from storage.sqlite import SQLiteStore

pytestmark = pytest.mark.servers
REGISTRY = load_registry()
wait_for = functools.partial(servers.wait_for, every=0.2)  # the store file is opened at each look


def stored_readings(path) -> int:
    """Readings (device, measurement time) in an embedded store file."""
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE name LIKE 'readings_%'")]
        return sum(db.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0] for t in tables)


def publish_in_background(port: int, wall_s: float, speed: float = 30, seed: int = 4):
    sim = Simulation(REGISTRY, seed=seed, speed=speed)
    pub = MqttPublisher("127.0.0.1", port, client_id=f"pub-{uuid.uuid4().hex[:6]}")
    t = threading.Thread(target=sim.run, args=(pub.publish,), kwargs={"duration_s": wall_s}, daemon=True)
    t.start()
    return sim, pub, t


def start_collector_process(port: int, tmp_path, client_id: str, metrics_port: int = 0) -> subprocess.Popen:
    env = {**os.environ, "FANSIPAN_MQTT_URL": f"mqtt://127.0.0.1:{port}", "FANSIPAN_MQTT_CLIENT_ID": client_id,
           "FANSIPAN_STORE": "sqlite", "FANSIPAN_SQLITE_PATH": str(tmp_path / "store.sqlite"),
           "FANSIPAN_SPOOL_PATH": str(tmp_path / "spool.sqlite"), "FANSIPAN_BATCH_MS": "100"}
    extra = ["--metrics-port", str(metrics_port)] if metrics_port else []
    return subprocess.Popen([sys.executable, "-m", "fansipan", "collect", *extra], env=env,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / f"collector-{time.time_ns()}.log", "w"))


def test_collector_killed_mid_stream_loses_nothing(mosquitto, tmp_path):
    client_id = f"kill-{uuid.uuid4().hex[:6]}"
    proc = start_collector_process(mosquitto.port, tmp_path, client_id)
    time.sleep(2.5)  # connected and subscribed: its persistent session exists from here on
    sim, pub, publisher = publish_in_background(mosquitto.port, wall_s=20)
    try:
        time.sleep(6)
        proc.send_signal(signal.SIGKILL)  # mid-stream: batches in flight, nothing flushed politely
        proc.wait(10)
        time.sleep(2)  # the broker queues for the dead collector's session meanwhile
        metrics_port = servers.free_port()
        proc = start_collector_process(mosquitto.port, tmp_path, client_id, metrics_port)
        publisher.join(60)
        assert pub.flush(timeout=60)
        want = sim.stats.published_readings
        wait_for(lambda: stored_readings(tmp_path / "store.sqlite") >= want, 60, f"{want} readings stored")
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        assert 'fansipan_collector_readings_stored_total{kind="commune_router"}' in metrics
        assert "fansipan_collector_connected 1.0" in metrics and "fansipan_collector_spool_fill_ratio" in metrics
    finally:
        pub.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    stored = stored_readings(tmp_path / "store.sqlite")
    print(f"\nRELIABILITY collector SIGKILL: sent {want} stored {stored} lost {want - stored}")
    assert stored == want


def test_mosquitto_restart_collector_reconnects_and_resubscribes(tmp_path):
    broker = servers.start_mosquitto(tmp_path / "broker")
    store = SQLiteStore(tmp_path / "s.sqlite", REGISTRY)
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{broker.port}", mqtt_client_id=f"rs-{uuid.uuid4().hex[:6]}",
                        batch_size=200, batch_ms=100)
    collector = Collector(settings, REGISTRY, store)
    collector.start()
    try:
        wait_for(lambda: collector.stats.snapshot()["connected"], 10, "collector connected")
        time.sleep(0.3)
        sim, pub, t = publish_in_background(broker.port, wall_s=3, seed=1)
        t.join(30)
        pub.flush(30)
        pub.close()
        first = sim.stats.published_readings
        wait_for(lambda: collector.stats.snapshot()["readings_stored"] >= first, 30, "first round stored")

        broker.stop()
        wait_for(lambda: not collector.stats.snapshot()["connected"], 10, "collector saw the broker go")
        broker.start()
        # Published at once, while the collector is still backing off: the broker queues them for its session.
        sim2, pub2, t2 = publish_in_background(broker.port, wall_s=3, seed=2)
        t2.join(30)
        assert pub2.flush(30)
        pub2.close()
        wait_for(lambda: collector.stats.snapshot()["readings_stored"] >= first + sim2.stats.published_readings, 60,
                 "second round stored after the restart")
    finally:
        collector.stop()
        broker.stop()
    assert collector.stats.snapshot()["readings_stored"] == first + sim2.stats.published_readings
    stored = stored_readings(tmp_path / "s.sqlite")
    sent = first + sim2.stats.published_readings
    print(f"\nRELIABILITY mosquitto restart: sent {sent} stored {stored} lost {sent - stored}")
    assert stored == sent


class SwitchableStore:
    """The embedded store behind a switch: while ``down``, every write fails as a dead server's would."""

    def __init__(self, inner):
        self.inner, self.down = inner, True

    def write(self, points, rejected=()):
        if self.down:
            raise StoreError("store unreachable (test switch)", retryable=True)
        self.inner.write(points, rejected)

    def __repr__(self):
        return "SwitchableStore"


def test_spool_full_means_backpressure_not_loss(mosquitto, tmp_path, caplog):
    store = SwitchableStore(SQLiteStore(tmp_path / "s.sqlite", REGISTRY))
    spool = Spool(tmp_path / "spool.sqlite", max_bytes=100_000)  # fills in seconds
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{mosquitto.port}", mqtt_client_id=f"full-{uuid.uuid4().hex[:6]}",
                        batch_size=200, batch_ms=100)
    collector = Collector(settings, REGISTRY, store, spool=spool)
    caplog.set_level(logging.WARNING, logger="fansipan.collector")
    collector.start()
    try:
        wait_for(lambda: collector.stats.snapshot()["connected"], 10, "collector connected")
        time.sleep(0.3)
        sim, pub, t = publish_in_background(mosquitto.port, wall_s=8, speed=60)
        t.join(60)
        assert pub.flush(60)
        pub.close()
        want = sim.stats.published_readings
        wait_for(lambda: collector.stats.snapshot()["spool_alarm"] == 3, 60, "the spool filled up")
        time.sleep(1)
        held_back = want - collector.stats.snapshot()["readings_stored"]
        assert held_back > 0, "past the spool's size, messages must stay unacknowledged at the broker"
        assert any("SPOOL FULL" in r.getMessage() for r in caplog.records)
        store.down = False  # the store comes back: the spool drains, acknowledging resumes
        wait_for(lambda: collector.stats.snapshot()["readings_stored"] >= want
                 and collector.stats.snapshot()["spool"].get("batches", 1) == 0, 90, "everything stored")
    finally:
        collector.stop()
    stored = stored_readings(tmp_path / "s.sqlite")
    print(f"\nRELIABILITY spool full: sent {want} held back at the broker {held_back} stored {stored} lost {want - stored}")
    assert stored == want
