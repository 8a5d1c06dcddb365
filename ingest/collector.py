"""The MQTT collector: subscribe, batch, validate, write durably, then acknowledge.

Delivery contract (QoS 1, persistent session):

* a message is acknowledged (PUBACK) only after every reading in it is durably
  written to the store, as telemetry or as a quarantined reject;
* a message not yet acknowledged when the collector dies or the connection
  drops is redelivered by the broker; writing a point twice stores it once, so
  redelivery costs nothing but time;
* acknowledgements for messages received on an earlier connection are never
  sent: the broker resends those messages on the new connection, and a stale
  packet id could acknowledge a different message;
* while the store is down the collector retries with backoff and stops
  acknowledging: the broker holds the rest (bounded by its in-flight window and
  queue, see deploy/mosquitto/mosquitto.conf).

Threads: paho's network thread only appends messages to the pending list; one
writer thread decodes and validates (in bulk, as numpy columns: ingest/bulk.py)
and encodes; one sender thread (ingest/pipeline.py) writes, acknowledges and
counts, one hand-off (~1 MB of payload) at a time, in order, while the writer
reads the next.  ``Collector(bulk=False, pipeline=False)`` is the old one-thread,
reading-by-reading path.
"""

from __future__ import annotations

import logging
import ssl
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from device_profiles import Registry
from fansipan.config import Settings
from storage.base import Rejected, Store, StoreError

from . import acks
from .bulk import BulkValidator
from .clock import ClockTracker
from .delivery import as_points, backoff_s, count_by_kind, deliver, device_ids, prepare
from .formats import SparkplugLink
from .pipeline import Conveyor, slices
from .spool import Spool, SpoolFull
from .validate import Validator

log = logging.getLogger("fansipan.collector")

SESSION_EXPIRY_S = 7 * 24 * 3600  # how long the broker keeps our queue while we are away


@dataclass
class CollectorStats:
    """Counters for progress displays and metrics. Read under ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    messages: int = 0
    readings_stored: int = 0
    rejected: Counter = field(default_factory=Counter)  # reason -> readings refused
    per_kind: Counter = field(default_factory=Counter)  # kind -> readings stored
    devices: set = field(default_factory=set)
    writes: int = 0
    write_failures: int = 0
    pending: int = 0
    connected: bool = False
    last_error: str = ""
    spool: dict = field(default_factory=dict)
    spool_alarm: int = 0  # 0 fine, 1 half full, 2 80 % full, 3 full (backpressure)

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "messages": self.messages,
                "readings_stored": self.readings_stored,
                "quarantined": sum(self.rejected.values()),
                "quarantined_by_reason": dict(self.rejected),
                "stored_by_kind": dict(self.per_kind),
                "devices_seen": len(self.devices),
                "writes": self.writes,
                "write_failures": self.write_failures,
                "pending_messages": self.pending,
                "connected": self.connected,
                "last_error": self.last_error,
                "spool": dict(self.spool),
                "spool_alarm": self.spool_alarm,
            }


class _GiveUp(Exception):
    """Stopping while the store is down: leave the batch unacknowledged for redelivery."""


class _Msg:
    __slots__ = ("topic", "payload", "mid", "qos", "gen", "arrived_ns")

    def __init__(self, topic, payload, mid, qos, gen, arrived_ns):
        self.topic, self.payload, self.mid, self.qos, self.gen, self.arrived_ns = topic, payload, mid, qos, gen, arrived_ns


class Collector:
    def __init__(self, settings: Settings, registry: Registry, store: Store, heartbeat_file: str | None = None,
                 spool: Spool | None = None, bulk: bool = True, pipeline: bool = True):
        self.settings = settings
        self.registry = registry
        self.store = store
        self.validator = Validator(registry)
        self.clock = ClockTracker(registry)  # clock skew, late and replayed readings (docs/time.md)
        # Validate a batch as numpy columns (ingest/bulk.py); bulk=False: message by message, reading by reading.
        self.bulk = BulkValidator(self.validator) if bulk else None
        self.pipeline = pipeline  # validate the next batch while this one is written (ingest/pipeline.py)
        self._conveyor: Conveyor | None = None
        self.stats = CollectorStats()
        self.heartbeat_file = Path(heartbeat_file) if heartbeat_file else None
        self.max_pending = 4 * settings.batch_size  # beyond this the network thread waits (backpressure)
        self._pending: list[_Msg] = []
        self._cond = threading.Condition()
        self._gen = 0
        self._stopping = threading.Event()
        self._writer: threading.Thread | None = None
        self.spool = spool
        self._spooled = threading.Event()
        self._forwarder: threading.Thread | None = None
        self._client = self._make_client()
        self._batched_acks = acks.batched(self._client)
        self._sparkplug = SparkplugLink(self._client, self.validator, settings.mqtt_client_id)  # ingest/formats.py

    # --- MQTT -----------------------------------------------------------------------------------

    def subscriptions(self) -> list[str]:
        subs = sorted({p.subscription for p in self.registry.kinds.values()})
        if self.settings.mqtt_share_group:
            subs = [f"$share/{self.settings.mqtt_share_group}/{s}" for s in subs]
        return subs + self._sparkplug.subscriptions  # Sparkplug B: never shared (ingest/formats.py)

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        v5 = s.mqtt_protocol == "5"
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=s.mqtt_client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else False,
            manual_ack=True,
        )
        if s.mqtt_username:
            client.username_pw_set(s.mqtt_username, s.mqtt_password or None)
        if s.mqtt_tls:
            # Verify the broker against FANSIPAN_MQTT_CA_FILE (empty: the system's CAs), host name
            # included; present a client certificate if the listener has require_certificate true.
            client.tls_set(ca_certs=s.mqtt_ca_file or None, certfile=s.mqtt_client_cert or None,
                           keyfile=s.mqtt_client_key or None)
        client.reconnect_delay_set(min_delay=1, max_delay=30)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_message = self._on_message
        return client

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        host, port = self.settings.mqtt_host_port
        if reason_code.is_failure:
            msg = f"MQTT broker {host}:{port} refused the connection: {reason_code}"
            if "authori" in str(reason_code).lower() or "password" in str(reason_code).lower():
                msg += " (check FANSIPAN_MQTT_USERNAME / FANSIPAN_MQTT_PASSWORD)"
            log.error(msg)
            with self.stats.lock:
                self.stats.last_error = msg
            return
        with self._cond:
            self._gen += 1
        subs = self.subscriptions()
        if self.settings.mqtt_protocol == "5":
            client.subscribe([(t, SubscribeOptions(qos=1)) for t in subs])
        else:
            client.subscribe([(t, 1) for t in subs])
        with self.stats.lock:
            self.stats.connected = True
        self._sparkplug.online()
        log.info("connected to MQTT broker %s:%s (session %s); subscribed to %d topic filters",
                 host, port, "resumed" if flags.session_present else "new", len(subs))

    def _on_connect_fail(self, client, userdata):
        # paho calls this from inside its `except OSError` around the (re)connect: that exception says
        # why (refused, unreachable, a TLS certificate that does not verify). paho retries by itself.
        exc = sys.exc_info()[1]
        host, port = self.settings.mqtt_host_port
        msg = f"cannot connect to the MQTT broker {host}:{port}: {exc or 'connection failed'}"
        if isinstance(exc, ssl.SSLError):
            msg += " (check FANSIPAN_MQTT_CA_FILE, the host name in FANSIPAN_MQTT_URL against the broker's certificate, FANSIPAN_MQTT_CLIENT_CERT/_KEY)"
        (log.error if isinstance(exc, ssl.SSLError) else log.warning)(msg)
        with self.stats.lock:
            self.stats.connected = False
            self.stats.last_error = msg

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self.stats.lock:
            self.stats.connected = False
        if not self._stopping.is_set():
            host, port = self.settings.mqtt_host_port
            log.warning("lost the MQTT broker %s:%s (%s); reconnecting, unacknowledged messages will be redelivered",
                        host, port, reason_code)

    def _on_message(self, client, userdata, message):
        # Runs on paho's network thread: no decoding here, and nothing that can raise.
        m = _Msg(message.topic, message.payload, message.mid, message.qos, self._gen, time.time_ns())
        with self._cond:
            while len(self._pending) >= self.max_pending and not self._stopping.is_set():
                self._cond.wait(0.5)
            self._pending.append(m)
            n = len(self._pending)
            if n == 1 or n >= self.settings.batch_size:  # the first starts the batch_ms clock, a full batch goes now
                self._cond.notify_all()

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect (in the background, retrying) and start the writer."""
        host, port = self.settings.mqtt_host_port
        props = None
        if self.settings.mqtt_protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            # The broker may send us this many unacknowledged messages: at least a batch.
            props.ReceiveMaximum = min(65535, max(self.max_pending, 20))
            self._client.connect_async(host, port, keepalive=30, clean_start=False, properties=props)
        else:
            self._client.connect_async(host, port, keepalive=30)
        if self.pipeline:
            self._conveyor = Conveyor(self._deliver, _GiveUp)
        self._writer = threading.Thread(target=self._write_loop, name="fansipan-writer", daemon=True)
        self._writer.start()
        if self.spool is not None:
            if len(self.spool):
                log.warning("spool %s holds %d batches from before: replaying them to the store first",
                            self.spool.path, len(self.spool))
            self._forwarder = threading.Thread(target=self._forward_loop, name="fansipan-forwarder", daemon=True)
            self._forwarder.start()
        self._client.loop_start()

    def stop(self, timeout: float = 30.0) -> None:
        """Write and acknowledge what is pending, then disconnect."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        if self._writer is not None:
            self._writer.join(timeout)
        if self._forwarder is not None:
            self._spooled.set()
            self._forwarder.join(timeout)
        self._client.disconnect()
        self._client.loop_stop()

    # --- writing --------------------------------------------------------------------------------

    def _take_batch(self) -> list[_Msg]:
        deadline = None
        with self._cond:
            while not self._stopping.is_set():
                if len(self._pending) >= self.settings.batch_size:
                    break
                if self._pending:
                    if deadline is None:
                        deadline = time.monotonic() + self.settings.batch_ms / 1000
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                else:
                    self._cond.wait(1.0)
                    self._heartbeat()
            batch = self._pending[: self.settings.batch_size]
            del self._pending[: len(batch)]
            self._cond.notify_all()
        with self.stats.lock:
            self.stats.pending = len(self._pending)
        return batch

    def _write_loop(self) -> None:
        try:
            while True:
                batch = self._take_batch()
                if batch:
                    try:
                        self._process(batch)
                    except _GiveUp:
                        return
                self._heartbeat()
                if self._stopping.is_set():
                    with self._cond:
                        if not self._pending:
                            return
        finally:
            if self._conveyor is not None:
                self._conveyor.close()

    def _process(self, batch: list[_Msg]) -> None:
        if self._conveyor is None:
            self._deliver(batch, *self._validate(batch))
            return
        for part in slices(batch):  # ~1 MB of payload a hand-off: the store writes one while the next is read
            if not self._conveyor.put((part, *self._validate(part))):
                raise _GiveUp  # the sender stopped: what is left stays unacknowledged, for redelivery

    def _deliver(self, batch: list[_Msg], points, rejected) -> None:
        """Make the batch durable, acknowledge it, count it (on the sender thread when pipelined)."""
        refused = self._accept(points, rejected)
        self._ack(batch)
        with self.stats.lock:
            st = self.stats
            st.messages += len(batch)
            st.readings_stored += len(points) - refused
            st.per_kind.update(count_by_kind(points))
            st.devices.update(device_ids(points))
            for r in rejected:
                st.rejected[r.reason] += 1
            if refused:
                st.rejected["store_rejected"] += refused

    def _validate(self, batch: list[_Msg]):
        """(points: a list of Points or a storage.columns.ColumnBatch, rejects) for a batch of messages."""
        if self.bulk is not None:
            try:
                cols, rejected = self.bulk.messages([(m.topic, m.payload, m.arrived_ns) for m in batch], clock=self.clock)
                return prepare(self.store, cols, rejected), rejected
            except Exception:  # a bulk-path bug must not lose the batch: the per-message path below decides
                log.exception("bulk validation failed on a batch of %d messages; validating them one by one", len(batch))
        points, rejected = [], []
        for m in batch:
            try:
                p, r = self.validator.message(m.topic, m.payload, m.arrived_ns)
                p, r = self.clock.apply(p, r, m.topic, m.payload)
            except Exception as exc:  # a validator bug must not kill the collector or lose the message
                log.exception("validator failed on topic %s", m.topic)
                p, r = [], [Rejected(m.arrived_ns, m.topic, "decode_error", f"internal error: {exc!r}", bytes(m.payload[:4096]))]
            points.extend(p)
            rejected.extend(r)
        return points, rejected

    def _failed(self, exc: StoreError) -> None:
        with self.stats.lock:
            self.stats.write_failures += 1
            self.stats.last_error = str(exc)

    def _accept(self, points, rejected) -> int:
        """Make the batch durable (in the store, or in the spool); returns the points the store refused.

        Without a spool: retry until the store takes it (the messages stay
        unacknowledged meanwhile). With one: straight to the store while the
        spool is empty (nothing older waits), else into the spool, in order;
        a full spool means waiting, not acknowledging: backpressure.
        """
        attempt = 0
        while True:
            if self.spool is None or len(self.spool) == 0:
                try:
                    refused = deliver(self.store, points, rejected)
                    with self.stats.lock:
                        self.stats.writes += 1
                    return refused
                except StoreError as exc:
                    self._failed(exc)
                    if self.spool is None:
                        self._wait_or_give_up(attempt, exc, "messages stay unacknowledged")
                        attempt += 1
                        continue
                    log.warning("store write failed (%s): spooling the batch to %s", exc, self.spool.path)
            try:
                self.spool.put(as_points(points), rejected)
                self._spooled.set()
                self._spool_alarm()
                return 0
            except SpoolFull as exc:
                self._spool_alarm(str(exc))
                self._wait_or_give_up(attempt, None, "backpressure: messages stay unacknowledged at the broker")
                attempt += 1

    def _wait_or_give_up(self, attempt: int, exc: StoreError | None, what: str) -> None:
        if self._stopping.is_set() and attempt >= 3:
            log.error("stopping with a batch neither stored nor spooled; it stays unacknowledged and the broker "
                      "will redeliver it")
            raise _GiveUp
        wait = backoff_s(attempt, exc)
        log.warning("%s; retrying in %.1f s (%s)", exc or "spool full", wait, what)
        self._stopping.wait(wait)

    def _forward_loop(self) -> None:
        """Replay the spool into the store, oldest batch first, until it is empty; then wait for more."""
        attempt = 0
        while not (self._stopping.is_set() and (len(self.spool) == 0 or attempt > 3)):
            item = self.spool.oldest()
            if item is None:
                self._spooled.wait(1.0)
                self._spooled.clear()
                continue
            batch_id, points, rejected = item
            try:
                refused = deliver(self.store, points, rejected)
            except StoreError as exc:
                self._failed(exc)
                wait = backoff_s(attempt, exc)
                attempt += 1
                log.warning("spool replay: store still failing (%s); next try in %.1f s", exc, wait)
                self._stopping.wait(wait)
                continue
            self.spool.delete(batch_id)
            attempt = 0
            with self.stats.lock:
                self.stats.writes += 1
                if refused:
                    self.stats.rejected["store_rejected"] += refused
                    self.stats.readings_stored -= refused
            if len(self.spool) == 0:
                log.info("spool replayed: the store has every accepted reading again")
            self._spool_alarm()

    def _spool_alarm(self, full: str = "") -> None:
        """Warn as the spool fills (50 %, 80 %), loudly when full; say when it has drained."""
        st = self.spool.stats()
        level = 3 if full else 2 if st["fill"] >= 0.8 else 1 if st["fill"] >= 0.5 else 0
        with self.stats.lock:
            self.stats.spool = st
            previous, self.stats.spool_alarm = self.stats.spool_alarm, level
        if level > previous:
            msg = (f"spool {self.spool.path} is {st['fill']:.0%} full ({st['batches']} batches, {st['readings']:,} readings, "
                   f"oldest {st['oldest_age_s']:.0f} s): the store ({self.store!r}) is not taking writes")
            if level == 3:
                log.error("%s. SPOOL FULL: no longer acknowledging MQTT messages; the broker holds them (%s)", msg, full)
            else:
                log.warning(msg)

    def _ack(self, batch: list[_Msg]) -> None:  # this connection's messages; ingest/acks.py: the PUBACKs in one write
        gen = self._gen
        mine = [m for m in batch if m.qos > 0 and m.gen == gen]
        acks.acknowledge(self._client, [m.mid for m in mine if m.qos == 1], [m.mid for m in mine if m.qos == 2],
                         fast=self._batched_acks)

    def _heartbeat(self) -> None:
        if self.heartbeat_file is not None:
            try:
                self.heartbeat_file.touch()
            except OSError as exc:
                log.warning("cannot touch heartbeat file %s: %s", self.heartbeat_file, exc.strerror)

