"""Ingest throughput, end to end, against baselines measured in the same run.

    python -m benchmarks.ingest [--messages 40000] [--batched-messages 2000] [--rounds 3] [--no-per-reading]
                                [--scenarios one,json,lp]

Method: every consumer drains the same backlog from a real mosquitto. For each
consumer we first open its persistent session (subscribe, disconnect), then
publish the backlog with QoS 1 (the broker queues it for the session), then
start the consumer and time how long it takes to take everything. This
measures the consumer, not the publisher, and every consumer sees the same
broker, the same messages and the same machine load.

Consumers: ``mosquitto_sub`` (C, QoS 1, discards), a bare paho-mqtt subscriber
that only counts (QoS 1, automatic acknowledgements), and the Fansipan
collector (QoS 1, decode + validate + durable write, then acknowledge) into
the embedded SQLite store and into a real InfluxDB 1.x; and, for the
before/after comparison in the same run, the collector's per-reading path
(``Collector(bulk=False)``) into InfluxDB.

For the consumers that run in this process the report also gives CPU time a
message, of the whole process and of each of the collector's threads (the MQTT
client's, the writer that validates and encodes, the sender that writes and
acknowledges; Linux /proc): where the time went, not only how much.

Scenarios: one reading a message (JSON), 100 readings a message (JSON), 100
readings a message (line protocol): the simulator's devices of the kinds with
that payload format.  Times are restamped just before publishing (unique, a
fraction of a second in the past, in nanoseconds), so the clock tracker sees
live devices, as in production, rather than a two-day-old replay.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from device_profiles import load_registry
from fansipan.broker import LocalBroker
from fansipan.config import Settings
from ingest.collector import Collector
from ingest.validate import Validator
from simulator.core import Simulation
from simulator.publisher import MqttPublisher
from storage.influx_v1 import InfluxV1Store
from storage.sqlite import SQLiteStore

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import servers  # noqa: E402  (starts a real influxd on 127.0.0.1, as the tests do)

REGISTRY = load_registry()
TOPIC = "laocai/#"
THREADS = {"paho-mqtt-client-": "MQTT", "fansipan-writer": "writer", "fansipan-sender": "sender"}
SCENARIOS = {"one": ("1 reading/message, JSON", 1, "json"), "json": ("100 readings/message, JSON", 100, "json"),
             "lp": ("100 readings/message, line protocol", 100, "line_protocol")}  # label, readings a message, format


def thread_cpu() -> dict[str, float]:
    """CPU seconds so far of this process's MQTT client, writer and sender threads (Linux /proc), by role."""
    out: dict[str, float] = {}
    for t in threading.enumerate():
        role = next((r for prefix, r in THREADS.items() if t.name.startswith(prefix)), None)
        if role is None:
            continue
        try:
            f = Path(f"/proc/self/task/{t.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # not Linux, or the thread just ended
            continue
        out[role] = out.get(role, 0.0) + (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    return out


def backlog(n_messages: int, batch: int, fmt: str | None = None) -> tuple[list[tuple[str, bytes]], int]:
    """The simulator's messages, a fixed sample: (topic, payload) list and the readings in it.

    ``fmt``: only devices whose kind sends that payload format (``json``, ``line_protocol``).
    """
    start = datetime.now(timezone.utc) - timedelta(days=2)
    sim = Simulation(REGISTRY, seed=11, speed=0, start=start, batch=batch)
    router = Validator(REGISTRY).router
    formats: dict[str, str] = {}
    msgs, readings = [], 0
    for topic, payload, n in sim.messages(10**9):
        if fmt is not None:
            if topic not in formats:
                found = router.route(topic)
                formats[topic] = found[0].profile.format if found else ""
            if formats[topic] != fmt:
                continue
        msgs.append((topic, payload))
        readings += n
        if len(msgs) >= n_messages:
            break
    return msgs, readings


def restamp(msgs: list[tuple[str, bytes]], fmt: str) -> list[tuple[str, bytes]]:
    """The same readings with unique times (ns) ending now: what live devices would send."""
    total = sum(p.count(b"\n") + 1 if fmt == "line_protocol" else max(1, p.count(b'"ts"')) for _t, p in msgs)
    t = time.time_ns() - total * 1000
    out = []
    for topic, payload in msgs:
        if fmt == "line_protocol":
            lines = []
            for line in payload.split(b"\n"):
                lines.append(line.rsplit(b" ", 1)[0] + b" %d" % t)
                t += 1000
            out.append((topic, b"\n".join(lines)))
            continue
        doc = orjson.loads(payload)
        for r in doc if isinstance(doc, list) else [doc]:
            r["ts"] = t
            t += 1000
        out.append((topic, orjson.dumps(doc)))
    return out


def publish_all(port: int, msgs) -> None:
    # A window of 1,000: paho walks its whole window at every PUBACK, so 5,000 made publishing the
    # backlog (untimed) take minutes.
    pub = MqttPublisher("127.0.0.1", port, client_id=f"bench-pub-{uuid.uuid4().hex[:6]}", max_inflight=1000)
    for topic, payload in msgs:
        pub.publish(topic, payload)
    pub.flush(timeout=300)
    pub.close()


def _session_props() -> Properties:
    p = Properties(PacketTypes.CONNECT)
    p.SessionExpiryInterval = 3600
    p.ReceiveMaximum = 20000
    return p


class BarePaho:
    """Counts messages; QoS 1 with paho's automatic acknowledgement. The ceiling of one Python MQTT client."""

    name = "bare paho subscriber (counts only)"

    def __init__(self, port: int):
        self.port, self.count, self.done = port, 0, threading.Event()
        self.target = 0
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bare-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(TOPIC, qos=1)
        self.client.on_message = self._on_message

    def _on_message(self, c, u, m):
        self.count += 1
        if self.count >= self.target:
            self.done.set()

    def open_session(self) -> None:
        self.client.connect("127.0.0.1", self.port, clean_start=False, properties=_session_props())
        self.client.loop_start()
        time.sleep(0.5)
        self.client.disconnect()
        self.client.loop_stop()

    def drain(self, n_messages: int, n_readings: int) -> float:
        self.target = n_messages
        t0 = time.perf_counter()
        self.client.connect("127.0.0.1", self.port, clean_start=False, properties=_session_props())
        self.client.loop_start()
        if not self.done.wait(600):
            raise RuntimeError(f"bare paho got {self.count} of {n_messages}")
        elapsed = time.perf_counter() - t0
        self.threads = thread_cpu()
        self.client.disconnect()
        self.client.loop_stop()
        return elapsed


class MosquittoSub:
    name = "mosquitto_sub (C)"

    def __init__(self, port: int):
        self.port, self.cid = port, f"msub-{uuid.uuid4().hex[:6]}"
        self.exe = shutil.which("mosquitto_sub")
        if not self.exe:
            raise RuntimeError("mosquitto_sub not found (Debian: apt-get install mosquitto-clients)")

    def _argv(self, extra):
        return [self.exe, "-h", "127.0.0.1", "-p", str(self.port), "-i", self.cid, "-c", "-q", "1", "-t", TOPIC, "-V", "311", *extra]

    def open_session(self) -> None:
        subprocess.run(self._argv(["-W", "1"]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def drain(self, n_messages: int, n_readings: int) -> float:
        t0 = time.perf_counter()
        subprocess.run(self._argv(["-C", str(n_messages)]), stdout=subprocess.DEVNULL, check=True, timeout=600)
        return time.perf_counter() - t0


class FansipanCollector:
    def __init__(self, port: int, store, label: str, bulk: bool = True):
        self.name = f"Fansipan collector -> {label}" + ("" if bulk else " (per-reading path)")
        self.settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{port}", mqtt_client_id=f"coll-{uuid.uuid4().hex[:6]}")
        self.store = store
        self.bulk = bulk

    def _new(self) -> Collector:
        return Collector(self.settings, REGISTRY, self.store, bulk=self.bulk)

    def open_session(self) -> None:
        c = self._new()
        c.start()
        deadline = time.monotonic() + 10
        while not c.stats.snapshot()["connected"] and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        c.stop()

    def drain(self, n_messages: int, n_readings: int) -> float:
        c = self._new()
        t0 = time.perf_counter()
        c.start()
        while True:
            s = c.stats.snapshot()
            if s["readings_stored"] + s["quarantined"] >= n_readings:
                break
            if time.perf_counter() - t0 > 600:
                raise RuntimeError(f"{self.name}: {s}")
            time.sleep(0.01)
        elapsed = time.perf_counter() - t0
        self.threads = thread_cpu()  # the threads start with this drain and end with it
        c.stop()
        if s["quarantined"]:
            raise RuntimeError(f"{self.name}: simulator backlog had quarantined readings: {s['quarantined_by_reason']}")
        return elapsed


class InfluxAlone:
    """The store's own ceiling: the same readings, encoded beforehand (untimed), written by InfluxV1Store._send."""

    def __init__(self, url: str, database: str, concurrency: int):
        self.name = f"InfluxDB 1.6.7 /write alone ({concurrency} request{'s' if concurrency > 1 else ''} at once)"
        self.store = InfluxV1Store(url, database, REGISTRY, write_concurrency=concurrency)
        self.msgs: list = []

    def open_session(self) -> None:
        pass

    def drain(self, n_messages: int, n_readings: int) -> float:
        from ingest.bulk import BulkValidator
        from storage.bulk_encode import BulkLines
        from storage.common import float_fields
        from storage.line_protocol import Encoder

        now = time.time_ns()
        batch, rejected = BulkValidator(Validator(REGISTRY)).messages([(t, p, now) for t, p in self.msgs])
        lines = BulkLines(Encoder(float_fields(REGISTRY))).lines(batch, rejected)
        if len(lines) != n_readings:
            raise RuntimeError(f"{self.name}: {len(lines)} lines for {n_readings} readings")
        t0 = time.perf_counter()
        for i in range(0, len(lines), 500_000):  # the collector's batch: 5,000 messages of 100 readings
            self.store._send(lines[i:i + 500_000])
        return time.perf_counter() - t0


def run(args) -> list[dict]:
    broker = LocalBroker.start("mosquitto")
    tmp = Path(tempfile.mkdtemp(prefix="fansipan-bench-"))
    influxd = servers.start_influxd(tmp)
    rows = []
    try:
        scenarios = [(label, args.messages if per == 1 else args.batched_messages, per, fmt)
                     for name, (label, per, fmt) in SCENARIOS.items() if name in args.scenarios]
        for sn, (label, n, batch, fmt) in enumerate(scenarios):
            msgs, readings = backlog(n, batch, fmt)
            for rnd in range(args.rounds):  # interleaved: every consumer once a round, each round in the same load
                tag = f"{sn}r{rnd}"
                consumers = [
                    MosquittoSub(broker.port),
                    BarePaho(broker.port),
                    FansipanCollector(broker.port, SQLiteStore(tmp / f"b{tag}.sqlite", REGISTRY), "SQLite (embedded)"),
                    FansipanCollector(broker.port, InfluxV1Store(influxd.url, f"bench{tag}", REGISTRY), "InfluxDB 1.6.7"),
                ]
                if args.per_reading:
                    consumers.append(FansipanCollector(broker.port, InfluxV1Store(influxd.url, f"bench{tag}p", REGISTRY),
                                                       "InfluxDB 1.6.7", bulk=False))
                if batch > 1:
                    consumers += [InfluxAlone(influxd.url, f"alone{tag}c{c}", c) for c in (1, 2)]
                for consumer in consumers:
                    consumer.open_session()
                    if isinstance(consumer, InfluxAlone):
                        consumer.msgs = restamp(msgs, fmt)
                    else:
                        publish_all(broker.port, restamp(msgs, fmt))
                    cpu = time.process_time()
                    elapsed = consumer.drain(len(msgs), readings)
                    cpu = time.process_time() - cpu if isinstance(consumer, (BarePaho, FansipanCollector)) else None
                    rows.append({"scenario": label, "consumer": consumer.name, "round": rnd, "messages": len(msgs),
                                 "readings": readings, "seconds": elapsed, "msg_s": len(msgs) / elapsed,
                                 "readings_s": readings / elapsed, "msg_cpu_s": len(msgs) / cpu if cpu else None,
                                 "threads": getattr(consumer, "threads", {})})
                    print(f"  {label:<36} {consumer.name:<62} {len(msgs) / elapsed:>10,.0f} msg/s "
                          f"{readings / elapsed:>11,.0f} readings/s  (round {rnd + 1})", flush=True)
    finally:
        influxd.stop()
        broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


def report(rows: list[dict], command: str) -> str:
    """Per scenario and consumer: the median over the rounds, and the ratio to the bare paho subscriber of
    the same round (median, and the lowest and highest of the rounds)."""
    rounds = max(r["round"] for r in rows) + 1
    lines = [f"Command: `{command}`  ", f"Machine: {os.cpu_count()} cores; date {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
             f"broker mosquitto 2.0 on 127.0.0.1, QoS 1, backlog drained from a persistent session; {rounds} round(s), "
             "medians.", "",
             "| scenario | consumer | messages | msg/s | readings/s | vs bare paho, same round (msg/s) | rounds: lowest-highest "
             "| msg per CPU s | vs bare paho (CPU) | us CPU a message: MQTT thread / writer / sender |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[dict]] = {}
    bare = {(r["scenario"], r["round"]): r for r in rows if r["consumer"].startswith("bare paho")}
    for r in rows:
        groups.setdefault((r["scenario"], r["consumer"]), []).append(r)
    for (scenario, consumer), mine in groups.items():
        ratios = sorted(r["msg_s"] / bare[scenario, r["round"]]["msg_s"] for r in mine)
        per_cpu = "- | - |"
        if mine[0]["msg_cpu_s"]:
            per_cpu = (f"{statistics.median(r['msg_cpu_s'] for r in mine):,.0f} | "
                       f"{statistics.median(r['msg_cpu_s'] / bare[scenario, r['round']]['msg_cpu_s'] for r in mine):.0%} |")
        by_thread = " / ".join(f"{statistics.median(r['threads'].get(role, 0.0) for r in mine) / mine[0]['messages'] * 1e6:.1f}"
                               for role in THREADS.values()) if mine[0]["threads"] else "-"
        lines.append(f"| {scenario} | {consumer} | {mine[0]['messages']:,} | {statistics.median(r['msg_s'] for r in mine):,.0f} | "
                     f"{statistics.median(r['readings_s'] for r in mine):,.0f} | {statistics.median(ratios):.0%} | "
                     f"{ratios[0]:.0%}-{ratios[-1]:.0%} | {per_cpu} {by_thread} |")
    return "\n".join(lines)


def _scenarios(text: str) -> list[str]:
    names = text.split(",")
    unknown = sorted(set(names) - set(SCENARIOS))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown scenario {unknown[0]!r}: choose from {', '.join(SCENARIOS)}")
    return names


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=40_000, help="backlog size for one-reading messages")
    p.add_argument("--batched-messages", type=int, default=2_000, help="backlog size for 100-reading messages")
    p.add_argument("--rounds", type=int, default=3,
                   help="every consumer this many times, interleaved; the report gives medians (the machine is shared)")
    p.add_argument("--scenarios", type=_scenarios, default=list(SCENARIOS),
                   help="which, comma-separated: one (1 JSON reading a message), json (100), lp (100 line protocol)")
    p.add_argument("--no-per-reading", dest="per_reading", action="store_false",
                   help="leave out the collector's per-reading path (the before/after comparison)")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    command = "python -m benchmarks.ingest " + " ".join(argv)
    rows = run(args)
    print()
    print(report(rows, command.strip()))


if __name__ == "__main__":
    main()
