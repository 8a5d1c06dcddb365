"""MQTT clients and brokers for the security tests (test_mqtt_security.py, test_mqtt_tls.py)."""


import csv
import os
import pwd
import queue
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
import servers
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device_profiles import load_registry
from fansipan import mqtt_security

REGISTRY = load_registry()
COLLECTOR = "fansipan.collector"
SILENCE_S = 1.5  # mosquitto drops refused messages without a word: wait this long for nothing


# ------------------------------------------------------------------------------------ helpers


def _private_dir(prefix: str) -> Path:
    """A directory the broker can reach even after it drops root (pytest's tmp root is private to root)."""
    d = Path(tempfile.mkdtemp(prefix=prefix))
    d.chmod(0o755)
    return d


def _give_to_broker(*paths: Path) -> None:
    """As in production (chown 1883): owned by the user mosquitto drops to, still mode 0600."""
    if os.geteuid() != 0:
        return
    try:
        pw = pwd.getpwnam("mosquitto")
    except KeyError:
        return
    for p in paths:
        os.chown(p, pw.pw_uid, pw.pw_gid)


def read_credentials(paths: mqtt_security.Paths) -> dict[str, str]:
    """username -> password, from the device CSV and the generated service credentials files."""
    with paths.device_credentials.open(newline="") as f:
        creds = {row["username"]: row["password"] for row in csv.DictReader(f)}
    for user, file in paths.service_credentials.items():
        creds[user] = next(v for k, v in mqtt_security._read_env_file(file).items() if k.endswith("PASSWORD"))
    return creds


def tls_args(ca: Path | None, cert: Path | None = None, key: Path | None = None) -> dict:
    """Exactly the collector's call: client.tls_set(ca_certs=..., certfile=..., keyfile=...)."""
    return {"ca_certs": str(ca) if ca else None, "certfile": str(cert) if cert else None,
            "keyfile": str(key) if key else None}


class Client:
    """A paho client that records CONNACK, SUBACKs, PUBACK reason codes and messages."""

    def __init__(self, port: int, user: str | None, password: str | None, protocol: int = mqtt.MQTTv5,
                 tls: dict | None = None, wait: bool = True, host: str = "127.0.0.1", client_id: str | None = None,
                 session_expiry_s: int = 0):
        self.messages: queue.Queue = queue.Queue()
        self.connack = None
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.subacks: dict[int, list] = {}
        self.pubacks: dict[int, object] = {}
        self._ev = threading.Condition()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol,
                             client_id=client_id or f"t-{user or 'anon'}-{uuid.uuid4().hex[:6]}")
        if user is not None:
            self.c.username_pw_set(user, password)
        if tls is not None:
            self.c.tls_set(**tls)
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda c, u, f, rc, p: self.disconnected.set()
        self.c.on_subscribe = self._on_subscribe
        self.c.on_publish = self._on_publish
        self.c.on_message = lambda c, u, m: self.messages.put((m.topic, bytes(m.payload)))
        if session_expiry_s:  # MQTT 5 persistent session, as the collector's
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = session_expiry_s
            self.c.connect(host, port, keepalive=10, clean_start=False, properties=props)
        else:
            self.c.connect(host, port, keepalive=10)
        self.c.loop_start()
        if wait:
            assert self.connected.wait(5), "no CONNACK within 5 s"

    def _on_connect(self, c, u, flags, rc, props):
        if self.connack is None:
            self.connack = rc
        self.connected.set()
        if rc.is_failure:
            c.disconnect()  # no retrying with credentials the broker refused

    def _on_subscribe(self, c, u, mid, rcs, props):
        with self._ev:
            self.subacks[mid] = rcs
            self._ev.notify_all()

    def _on_publish(self, c, u, mid, rc, props):
        with self._ev:
            self.pubacks[mid] = rc
            self._ev.notify_all()

    def subscribe(self, topic: str) -> list:
        _, mid = self.c.subscribe(topic, qos=1)
        with self._ev:
            assert self._ev.wait_for(lambda: mid in self.subacks, 5), f"no SUBACK for {topic}"
            return self.subacks[mid]

    def publish(self, topic: str, payload: bytes):
        info = self.c.publish(topic, payload, qos=1)
        with self._ev:
            assert self._ev.wait_for(lambda: info.mid in self.pubacks, 5), f"no PUBACK for {topic}"
            return self.pubacks[info.mid]

    def first(self, timeout: float, settle: float = 0.3) -> list:
        """Wait up to ``timeout`` for a message, then collect whatever else arrives within ``settle``."""
        try:
            out = [self.messages.get(timeout=timeout)]
        except queue.Empty:
            return []
        return out + self.received(settle)

    def received(self, timeout: float) -> list:
        """Every message that arrives within ``timeout`` seconds."""
        out, deadline = [], time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                out.append(self.messages.get(timeout=left))
            except queue.Empty:
                break
        return out

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def refused(port: int, user: str | None, password: str | None, protocol: int = mqtt.MQTTv5):
    """The CONNACK reason code for a login that must fail."""
    c = Client(port, user, password, protocol=protocol)
    try:
        return c.connack
    finally:
        c.close()


def broker_with(d: Path, paths: mqtt_security.Paths, extra_conf: str = "", port: int | None = None) -> servers.Server:
    _give_to_broker(paths.out_dir, paths.passwd, paths.acl)
    conf = f"password_file {paths.passwd}\nacl_file {paths.acl}\n{extra_conf}"
    return servers.start_mosquitto(d, port=port, persistence=False, extra_conf=conf, anonymous=False)


def _skip_without_servers():
    if os.environ.get("FANSIPAN_SKIP_SERVERS") == "1":
        pytest.skip("FANSIPAN_SKIP_SERVERS=1")


