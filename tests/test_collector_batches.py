"""How the collector takes its batches and acknowledges them.

A lone message does not wait for a full batch longer than ``batch_ms``; a
written batch is acknowledged in one write (ingest/acks.py), and the broker
takes every acknowledgement.
"""

from __future__ import annotations

import threading
import time
import uuid
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import pytest
from servers import wait_for

from device_profiles import load_registry
from fansipan.config import Settings
from ingest import acks
from ingest.collector import Collector
from storage.sqlite import SQLiteStore

REGISTRY = load_registry()
TOPIC = "laocai/y_ty/commune_router/yty-router"


def test_a_lone_message_after_a_quiet_spell_waits_batch_ms_not_more(tmp_path):
    """The writer sleeps while nothing is pending; the first message wakes it to start the batch_ms clock."""
    settings = Settings(mqtt_url="mqtt://127.0.0.1:9", batch_size=500, batch_ms=100)
    c = Collector(settings, REGISTRY, SQLiteStore(tmp_path / "s.sqlite", REGISTRY))
    taken = []
    writer = threading.Thread(target=lambda: taken.append((c._take_batch(), time.monotonic())))
    writer.start()
    time.sleep(0.1)  # the writer is asleep on an empty queue
    sent = time.monotonic()
    c._on_message(None, None, SimpleNamespace(topic=TOPIC, payload=b'{"latency_ms": 1.0}', mid=1, qos=1))
    writer.join(5)
    (batch, at), = taken
    assert [m.payload for m in batch] == [b'{"latency_ms": 1.0}']
    assert 0.09 <= at - sent < 0.6  # batch_ms (100 ms) for more to come; the bug was up to a second more


def test_this_paho_has_the_packet_queue_the_batched_acks_use():
    """Fails on a paho-mqtt release without it: the collector would still work, acknowledging one at a time."""
    assert acks.batched(mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, manual_ack=True))


class Wire:
    """What acknowledge() queues, as paho would send it."""

    def __init__(self):
        self.packets, self.acked = [], []

    def _packet_queue(self, command, packet, mid, qos):
        self.packets.append((command, packet, mid, qos))

    def ack(self, mid, qos):
        self.acked.append((mid, qos))


def test_the_pubacks_of_a_batch_are_one_packet_of_the_same_bytes():
    wire = Wire()
    acks.acknowledge(wire, [1, 2, 65535], [7])
    assert wire.packets == [(mqtt.PUBACK, b"\x40\x02\x00\x01\x40\x02\x00\x02\x40\x02\xff\xff", 0, 0)]
    assert wire.acked == [(7, 2)]
    acks.acknowledge(wire, [])  # nothing to acknowledge: nothing queued
    assert len(wire.packets) == 1
    slow = Wire()
    acks.acknowledge(slow, [1, 2], fast=False)
    assert slow.packets == [] and slow.acked == [(1, 1), (2, 1)]


def _collector(port: int, store, client_id: str, protocol: str) -> Collector:
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{port}", mqtt_protocol=protocol, mqtt_client_id=client_id,
                        batch_size=100, batch_ms=50)
    c = Collector(settings, REGISTRY, store)
    c.start()
    wait_for(lambda: c.stats.snapshot()["connected"], 10, "collector connected")
    time.sleep(0.3)  # subscribed before anything is published
    return c


def _stored(c: Collector, n: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    while c.stats.snapshot()["readings_stored"] < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return c.stats.snapshot()["readings_stored"]


@pytest.mark.servers
@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
@pytest.mark.parametrize("fast", [True, False], ids=["one-write", "one-at-a-time"])
def test_acknowledged_messages_are_not_redelivered(mosquitto, tmp_path, monkeypatch, protocol, fast):
    """350 messages in batches of 100: after a clean stop, the same session gets none of them again."""
    monkeypatch.setattr(acks, "batched", lambda client: fast)
    store = SQLiteStore(tmp_path / "acks.sqlite", REGISTRY)
    client_id = f"acks-{uuid.uuid4().hex[:6]}"
    first = _collector(mosquitto.port, store, client_id, protocol)
    pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    pub.connect("127.0.0.1", mosquitto.port)
    pub.loop_start()
    try:
        for i in range(350):
            pub.publish(TOPIC, b'{"latency_ms": %d.5}' % i, qos=1)
        assert _stored(first, 350) == 350
        first.stop()
        second = _collector(mosquitto.port, store, client_id, protocol)  # the same persistent session
        try:
            time.sleep(1.0)  # anything unacknowledged would be redelivered now
            pub.publish(TOPIC, b'{"latency_ms": 1.0}', qos=1).wait_for_publish(5)
            assert _stored(second, 1, timeout=10) == 1  # live, and only the new message
            time.sleep(0.3)
            assert second.stats.snapshot()["readings_stored"] == 1
        finally:
            second.stop()
    finally:
        pub.loop_stop()
        pub.disconnect()
        store.close()
