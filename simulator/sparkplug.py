"""A simulated Sparkplug B edge node and its devices: births, data by alias, deaths, rebirths.

:class:`EdgeNode` only builds messages (topic, payload), keeping what a real
edge node keeps: ``bdSeq`` (one per MQTT session), ``seq`` (0..255, per
message, wrapping) and the alias of every metric, declared in NBIRTH/DBIRTH.
:class:`EdgeNodeClient` runs one over MQTT: the NDEATH as its will, births on
connect, and births again when a host asks with ``Node Control/Rebirth``.
Used by the tests and the Sparkplug benchmark (see docs/formats.md).
"""

from __future__ import annotations

import threading
import time

from ingest.sparkplug_codec import NAMESPACE, REBIRTH_METRIC, decode_payload, encode_payload


def _now_ms() -> int:
    return int(time.time() * 1000)


class EdgeNode:
    """``devices``: device id -> {metric name: initial value}; ``node_metrics`` the node's own."""

    def __init__(self, group: str, node_id: str, devices: dict[str, dict], node_metrics: dict | None = None,
                 bdseq: int = 0):
        self.group, self.node_id = group, node_id
        self.node_metrics = dict(node_metrics or {})
        self.devices = {d: dict(m) for d, m in devices.items()}
        self.bdseq = bdseq
        self.seq = 0
        self.alias: dict[tuple[str | None, str], int] = {}
        n = 0
        for dev, metrics in [(None, self.node_metrics), *self.devices.items()]:
            for name in metrics:
                n += 1
                self.alias[(dev, name)] = n

    def topic(self, mtype: str, device: str | None = None) -> str:
        base = f"{NAMESPACE}/{self.group}/{mtype}/{self.node_id}"
        return f"{base}/{device}" if device else base

    def _next_seq(self) -> int:
        self.seq = (self.seq + 1) % 256
        return self.seq

    def births(self, ts_ms: int | None = None) -> list[tuple[str, bytes]]:
        """NBIRTH (seq 0, bdSeq, the rebirth control) then a DBIRTH per device, with current values."""
        ts_ms = _now_ms() if ts_ms is None else ts_ms
        self.seq = 0
        node = [{"name": "bdSeq", "value": self.bdseq}, {"name": REBIRTH_METRIC, "value": False}]
        node += [{"name": n, "alias": self.alias[(None, n)], "value": v} for n, v in self.node_metrics.items()]
        out = [(self.topic("NBIRTH"), encode_payload(node, seq=0, timestamp_ms=ts_ms))]
        for dev, metrics in self.devices.items():
            ms = [{"name": n, "alias": self.alias[(dev, n)], "value": v} for n, v in metrics.items()]
            out.append((self.topic("DBIRTH", dev), encode_payload(ms, seq=self._next_seq(), timestamp_ms=ts_ms)))
        return out

    def data(self, device: str | None, values: dict, ts_ms: int | None = None, historical: bool = False) -> tuple[str, bytes]:
        """NDATA (device None) or DDATA by alias, with the next seq; metric timestamps = ``ts_ms``."""
        ts_ms = _now_ms() if ts_ms is None else ts_ms
        ms = []
        for name, value in values.items():
            m = {"alias": self.alias[(device, name)], "value": value, "timestamp": ts_ms}
            if historical:
                m["is_historical"] = True
            ms.append(m)
            (self.devices[device] if device else self.node_metrics)[name] = value
        payload = encode_payload(ms, seq=self._next_seq(), timestamp_ms=_now_ms() if historical else ts_ms)
        return (self.topic("DDATA", device) if device else self.topic("NDATA")), payload

    def ddeath(self, device: str, ts_ms: int | None = None) -> tuple[str, bytes]:
        return self.topic("DDEATH", device), encode_payload([], seq=self._next_seq(),
                                                             timestamp_ms=_now_ms() if ts_ms is None else ts_ms)

    def ndeath(self) -> tuple[str, bytes]:
        """The NDEATH of the current session: the MQTT will, registered before connecting."""
        return self.topic("NDEATH"), encode_payload([{"name": "bdSeq", "value": self.bdseq}], timestamp_ms=_now_ms())


class EdgeNodeClient:
    """One EdgeNode over MQTT (paho v5): will = NDEATH, births on connect and on rebirth requests."""

    def __init__(self, node: EdgeNode, host: str, port: int, qos: int = 1):
        import paho.mqtt.client as mqtt

        self.node, self.qos = node, qos
        self.rebirths = 0
        self.lock = threading.Lock()
        self._connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"spb-{node.node_id}",
                                  protocol=mqtt.MQTTv5)
        topic, payload = node.ndeath()
        self.client.will_set(topic, payload, qos=1)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.connect(host, port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(10):
            raise ConnectionError(f"edge node {node.node_id}: no CONNACK from {host}:{port} in 10 s")

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        client.subscribe(self.node.topic("NCMD"), qos=1)
        self.publish_births()
        self._connected.set()

    def _on_message(self, client, userdata, message):
        try:
            metrics = decode_payload(message.payload).metrics
        except Exception:  # noqa: BLE001 - a bad command must not kill the simulated node
            return
        if any(m.name == REBIRTH_METRIC and m.boolean_value for m in metrics):
            self.rebirths += 1
            self.publish_births()

    def publish_births(self) -> None:
        with self.lock:
            for topic, payload in self.node.births():
                self.client.publish(topic, payload, qos=self.qos)

    def publish(self, msg: tuple[str, bytes]) -> None:
        self.client.publish(msg[0], msg[1], qos=self.qos)

    def data(self, device, values, ts_ms=None, historical=False) -> None:
        with self.lock:
            self.publish(self.node.data(device, values, ts_ms, historical))

    def die(self) -> None:
        """Drop the connection without DISCONNECT, so the broker publishes the NDEATH will."""
        self.client.loop_stop()
        self.client.socket().close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
