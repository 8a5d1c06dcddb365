"""Sparkplug B through a real mosquitto and the collector into the store.

An edge node (simulator.sparkplug.EdgeNodeClient) with two pump PLCs: births,
data by alias, a historical backfill, an unknown alias that makes the collector
ask for a rebirth over MQTT (the node answers with new births), then the node
dies and the broker's NDEATH will marks it and its devices offline.
"""

from __future__ import annotations

import threading
import time
import uuid

import orjson
import paho.mqtt.client as mqtt
import pytest
from servers import wait_for

from device_profiles import load_registry
from fansipan.config import Settings
from ingest.collector import Collector
from ingest.sparkplug_codec import encode_payload
from simulator.sparkplug import EdgeNode, EdgeNodeClient
from storage.sqlite import SQLiteStore

pytestmark = pytest.mark.servers

REGISTRY = load_registry()
NODE, P1, P2 = "cocleu-edge-gw-1", "cocleu-pump-1", "cocleu-pump-2"


def _retained(port: int, topic: str) -> bytes | None:
    got, done = [], threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"peek-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
    c.on_connect = lambda cl, *_a: cl.subscribe(topic, qos=1)
    c.on_message = lambda _c, _u, m: (got.append(m.payload), done.set())
    c.connect("127.0.0.1", port)
    c.loop_start()
    done.wait(5)
    c.disconnect()
    c.loop_stop()
    return got[0] if got else None


def test_sparkplug_node_births_data_rebirth_and_death(mosquitto, tmp_path):
    store = SQLiteStore(tmp_path / "spb.sqlite", REGISTRY)
    client_id = f"c-{uuid.uuid4().hex[:8]}"
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{mosquitto.port}", mqtt_client_id=client_id, batch_size=100, batch_ms=50)
    collector = Collector(settings, REGISTRY, store)
    collector.start()
    node = client = None
    try:
        wait_for(lambda: collector.stats.snapshot()["connected"], 10, "collector connected")
        time.sleep(0.3)  # subscriptions acknowledged
        assert orjson.loads(_retained(mosquitto.port, f"spBv1.0/STATE/{client_id}"))["online"] is True

        node = EdgeNode("laocai", NODE, {P1: {"Pump/Flow": 120.0, "Pump/Running": True}, P2: {"Tank/Level": 3.5}},
                        node_metrics={"Gateway/Uptime": 10}, bdseq=1)
        client = EdgeNodeClient(node, "127.0.0.1", mosquitto.port)  # births on connect
        stats = collector.stats
        wait_for(lambda: stats.snapshot()["readings_stored"] >= 3, 10, "the three births stored")

        now_ms = int(time.time() * 1000)
        t0 = now_ms - 30_000
        published = {}
        for i in range(20):
            ts = t0 + i * 1000
            client.data(P1, {"Pump/Flow": 100.0 + i}, ts)
            client.data(P2, {"Tank/Level": 3.0 + i / 100}, ts)
            published[(P1, ts)] = 100.0 + i
        client.data(P1, {"Pump/Flow": 50.0}, now_ms - 600_000, historical=True)  # buffered during an outage
        # a metric by an alias the births never declared: quarantined, and a rebirth is requested over MQTT
        with client.lock:
            client.publish((node.topic("DDATA", P1), encode_payload([{"alias": 999, "value": 1.0}], seq=node._next_seq())))
        wait_for(lambda: client.rebirths >= 1, 10, "the edge node received the collector's rebirth request")
        wait_for(lambda: stats.snapshot()["readings_stored"] >= 3 + 41 + 3, 10, "data, backfill and the new births stored")

        client.die()  # no DISCONNECT: the broker publishes the NDEATH will
        client = None
        wait_for(lambda: stats.snapshot()["readings_stored"] >= 3 + 41 + 3 + 3, 15, "NDEATH: node and devices offline")
        time.sleep(0.3)
    finally:
        if client is not None:
            client.close()
        collector.stop()

    snap = collector.stats.snapshot()
    assert snap["quarantined_by_reason"] == {"unknown_alias": 1}, snap
    frame = store.frame("pump_station", 0, time.time_ns() + 10**9)
    rows = {}
    for i in range(len(frame.ts_ns)):
        dev = frame.devices[frame.device_idx[i]]
        rows[(dev, int(frame.ts_ns[i]) // 1_000_000)] = {f: frame.values[f][i] for f in frame.values}
    for key, flow in published.items():  # every valid reading published is stored, at its measurement time
        assert rows[key]["flow_m3h"] == flow
    assert rows[(P1, now_ms - 600_000)]["flow_m3h"] == 50.0  # the backfill, at its own time
    for dev in (P1, P2):  # online: 1 at each birth, 0 last (the node's death)
        online = [r["online"] for (d, _t), r in sorted(rows.items()) if d == dev and r["online"] == r["online"]]
        assert online[:1] == [1.0] and online[-1] == 0.0 and online.count(1.0) == 2, (dev, online)
    gw = store.frame("edge_gateway", 0, time.time_ns() + 10**9)
    assert [v for v in gw.values["online"].tolist() if v == v] == [1.0, 1.0, 0.0]
    rejected = store.quarantined(0, time.time_ns() + 10**9)
    assert [(r.reason, r.device) for r in rejected] == [("unknown_alias", P1)] and "alias 999" in rejected[0].detail
