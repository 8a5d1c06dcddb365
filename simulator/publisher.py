"""An MQTT publisher for the simulator: paho-mqtt 2.x, QoS 1, bounded in-flight window.

``publish`` returns as soon as the message is handed to paho and blocks only
while ``max_inflight`` messages await their PUBACK (back-pressure instead of an
unbounded queue); ``flush`` waits until every message is acknowledged;
``close`` flushes, then disconnects.  paho reconnects by itself; QoS 1
messages published while disconnected are sent once the link is back.
"""

from __future__ import annotations

import logging
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

log = logging.getLogger(__name__)

PROTOCOLS = {5: MQTTProtocolVersion.MQTTv5, "5": MQTTProtocolVersion.MQTTv5,
             4: MQTTProtocolVersion.MQTTv311, "4": MQTTProtocolVersion.MQTTv311,
             "3.1.1": MQTTProtocolVersion.MQTTv311, 311: MQTTProtocolVersion.MQTTv311}


class PublishError(RuntimeError):
    """The broker cannot be reached, or refused the connection, or the client is closed."""


class MqttPublisher:
    """Publish (topic, payload) with QoS ``qos`` to an MQTT broker.

    ``protocol``: 5 (MQTT v5, default) or 4 / "3.1.1" (MQTT 3.1.1).  The
    constructor connects and raises :class:`PublishError` if the broker does not
    accept the connection within ``connect_timeout`` seconds; ValueError for a
    bad protocol or QoS.
    """

    def __init__(self, host: str, port: int = 1883, protocol: int | str = 5, client_id: str = "fansipan-simulator",
                 qos: int = 1, username: str | None = None, password: str | None = None, keepalive: int = 30,
                 max_inflight: int = 1000, connect_timeout: float = 10.0, tls: bool = False,
                 tls_ca: str | None = None, client_cert: str | None = None, client_key: str | None = None):
        if protocol not in PROTOCOLS:
            raise ValueError(f"MQTT protocol must be 5 or 4 ('3.1.1'), got {protocol!r}")
        if qos not in (0, 1, 2):
            raise ValueError(f"qos must be 0, 1 or 2, got {qos!r}")
        self.qos = qos
        self.max_inflight = max_inflight
        self.published = 0  # handed to paho
        self.acked = 0  # acknowledged by the broker (PUBACK / PUBCOMP; at once for QoS 0)
        self.refused = 0  # acknowledged with an MQTT v5 failure reason code
        self._pending = 0
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._closed = False
        self._connect_error: str | None = None
        v5 = PROTOCOLS[protocol] == MQTTProtocolVersion.MQTTv5
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=PROTOCOLS[protocol], clean_session=None if v5 else True)
        if username:
            self.client.username_pw_set(username, password)
        if tls or tls_ca or client_cert:
            # mqtts: verify the broker against tls_ca (None: the system's CAs), host name included;
            # client_cert/client_key for a listener with require_certificate true.
            self.client.tls_set(ca_certs=tls_ca, certfile=client_cert, keyfile=client_key)
        self.client.max_inflight_messages_set(max_inflight)
        self.client.max_queued_messages_set(0)  # our own window bounds what paho holds
        self.client.reconnect_delay_set(0.5, 10)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        try:
            self.client.connect(host, port, keepalive=keepalive)
        except OSError as exc:
            raise PublishError(f"cannot reach the MQTT broker at {host}:{port}: {exc}") from None
        self.client.loop_start()
        if not self._connected.wait(connect_timeout) or self._connect_error:
            self.client.loop_stop()
            why = self._connect_error or f"no CONNACK within {connect_timeout:g} s"
            raise PublishError(f"MQTT broker at {host}:{port} did not accept the connection: {why}")

    # -------------------------------------------------------------- paho callbacks (network thread)

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            self._connect_error = str(reason_code)
            log.error("MQTT connection refused: %s", reason_code)
        else:
            log.info("MQTT connected")
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        if not self._closed:
            log.warning("MQTT disconnected (%s); paho reconnects", reason_code)

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self._cond:
            self._pending -= 1
            self.acked += 1
            if reason_code is not None and getattr(reason_code, "is_failure", False):
                self.refused += 1
            self._cond.notify_all()

    # -------------------------------------------------------------- API

    @property
    def in_flight(self) -> int:
        return self._pending

    def publish(self, topic: str, payload: bytes) -> None:
        """Hand one message to the broker; blocks while the in-flight window is full. Raises PublishError if closed."""
        with self._cond:
            while self._pending >= self.max_inflight:
                if self._closed:
                    raise PublishError("publisher is closed")
                self._cond.wait(1.0)
            if self._closed:
                raise PublishError("publisher is closed")
            self._pending += 1
        info = self.client.publish(topic, payload, qos=self.qos)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            with self._cond:
                self._pending -= 1
                self._cond.notify_all()
            raise PublishError(f"paho refused to publish on {topic!r}: {mqtt.error_string(info.rc)}")
        self.published += 1

    def flush(self, timeout: float | None = 30.0) -> bool:
        """Wait until every published message is acknowledged; False (and a warning) on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending > 0:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    log.warning("%d MQTT message(s) still unacknowledged after %.0f s", self._pending, timeout)
                    return False
                self._cond.wait(0.5 if left is None else min(0.5, left))
        return True

    def close(self, timeout: float | None = 30.0) -> bool:
        """Flush (up to ``timeout`` s), disconnect and stop the network thread; True if all was acknowledged."""
        if self._closed:
            return self._pending == 0
        ok = self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self.client.disconnect()
        self.client.loop_stop()
        return ok

    def __enter__(self) -> MqttPublisher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
