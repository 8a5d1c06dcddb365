"""Scale-out: 1, 2 and 4 collector processes on one shared subscription of a real mosquitto.

    python -m benchmarks.scaleout [--readings 400000] [--batch 100] [--store influx1|victoria|sqlite]

Method, for each number of collectors N:

1. N collector processes (``multiprocessing``, spawn: one Python interpreter and
   one MQTT client each, as ``fansipan collect`` runs them) join one
   ``$share/<group>/...`` subscription (MQTT 5 persistent sessions, QoS 1) of a
   real mosquitto with the shipped queue limits, each writing to the same store
   (a fresh InfluxDB 1.6.7 database by default), and disconnect;
2. this process publishes the simulator's messages (QoS 1, ``--batch`` readings
   per message, JSON): the broker queues each member's share in its session;
3. the collectors come back, and the clock runs until together they have stored
   (or quarantined) every published reading.  This times the collectors, not
   the publisher (as benchmarks/ingest.py does for one).  ``--live`` instead
   publishes while they run and times from the first publish.

Reported: readings/s and messages/s over that time, the publisher's own rate
(if it is close to the total, the publisher, not the collectors, was the limit),
each collector's share of the stream, and exactly-once: the readings the
collectors stored (duplicates = stored - published: redeliveries) and the
distinct readings the store holds (must equal the published ones).  And the CPU
seconds the collectors (``os.times`` in each), the broker and the store server
(``/proc/<pid>/stat``) used while the backlog drained: readings per collector
CPU second is the rate of one collector on a core of its own, whatever else
shares this machine.

The test broker runs anonymous, without ``use_username_as_clientid`` (the
shipped deploy/mosquitto config has it: there every collector replica needs its
own MQTT username, or they take each other's client id and kick each other
off; see docs/SCALING.md).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import servers  # noqa: E402  (real mosquitto, influxd, victoria-metrics on 127.0.0.1, as the tests start them)

POLL_S = 0.02


def open_bench_store(kind: str, url: str, name: str, registry):
    if kind == "influx1":
        from storage.influx_v1 import InfluxV1Store

        return InfluxV1Store(url, name, registry)
    if kind == "victoria":
        from storage.victoria import VictoriaMetricsStore

        return VictoriaMetricsStore(url, registry)
    from storage.sqlite import SQLiteStore

    return SQLiteStore(url, registry)


def collector_process(i: int, port: int, group: str, store_kind: str, store_url: str, store_name: str,
                      counts, ready, go, stop, results, drain: bool) -> None:
    """One collector: join the share group (in drain mode: and leave, keeping its session), wait for
    ``go`` (in drain mode: come back), publish its counters to ``counts`` until told to stop."""
    from device_profiles import load_registry
    from fansipan.config import Settings
    from ingest.collector import Collector

    registry = load_registry()
    store = open_bench_store(store_kind, store_url, store_name, registry)
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{port}", mqtt_client_id=f"scale-{group}-{i}",
                        mqtt_share_group=group)
    c = Collector(settings, registry, store)
    c.start()
    deadline = time.monotonic() + 30
    while not c.stats.snapshot()["connected"]:
        if time.monotonic() > deadline:
            results.put((i, {"error": f"collector {i} did not connect to 127.0.0.1:{port} in 30 s"}))
            return
        time.sleep(POLL_S)
    time.sleep(0.5)  # the SUBACKs are in before anything is published
    if drain:
        c.stop()  # the MQTT 5 session (and its share of the group's messages) stays with the broker
    ready.set()
    go.wait()
    cpu0 = sum(os.times()[:2])
    if drain:
        c = Collector(settings, registry, store)
        c.start()
    while not stop.is_set():
        s = c.stats.snapshot()
        counts[2 * i], counts[2 * i + 1] = s["readings_stored"] + s["quarantined"], s["messages"]
        time.sleep(POLL_S)
    c.stop()
    s = c.stats.snapshot()
    store.close()
    results.put((i, {"cpu_s": sum(os.times()[:2]) - cpu0,
                     **{k: s[k] for k in ("messages", "readings_stored", "quarantined", "quarantined_by_reason",
                                          "write_failures")}}))


def backlog(registry, n_readings: int, batch: int) -> tuple[list[tuple[str, bytes]], int]:
    """The simulator's messages, about ``n_readings`` readings (fewer where duty cycles keep devices
    quiet), measured up to five minutes ago: none is in the future, none older than a few hours."""
    from simulator.core import Simulation

    rate = sum(1 / registry.kinds[d.kind].reporting.interval_s for d in registry.devices.values())
    step = 300.0
    n_steps = int(1.3 * n_readings / (rate * step)) + 2  # 1.3: duty cycles (loudspeakers) keep some quiet
    start = datetime.now(timezone.utc) - timedelta(seconds=n_steps * step + 300)
    sim = Simulation(registry, seed=17, speed=0, start=start, batch=batch)
    msgs, readings = [], 0
    for topic, payload, n in sim.messages(n_steps, step_s=step):
        msgs.append((topic, payload))
        readings += n
        if readings >= n_readings:
            break
    return msgs, readings


def stored_in(store_kind: str, store_url: str, store_name: str, registry) -> int:
    """Readings the store holds: InfluxDB and SQLite store a device's reading at one time once (a
    redelivery overwrites it); VictoriaMetrics keeps every sample, so there duplicates would count."""
    if store_kind == "sqlite":
        import sqlite3

        with sqlite3.connect(store_url) as db:
            return db.execute("SELECT COUNT(*) FROM (SELECT DISTINCT device, ts_ns FROM readings)").fetchone()[0]
    if store_kind == "victoria":
        import httpx
        import orjson

        httpx.get(f"{store_url}/internal/force_flush", timeout=60).raise_for_status()
        resp = httpx.get(f"{store_url}/api/v1/export", params={"match[]": '{__name__=~".+_arrived_ms"}'}, timeout=300)
        resp.raise_for_status()
        return sum(len(orjson.loads(line)["timestamps"]) for line in resp.text.splitlines() if line.strip())
    store = open_bench_store(store_kind, store_url, store_name, registry)
    try:
        return sum(sum(s["values"][0][1] for s in store.reader.run(f'SELECT count("arrived_ms") FROM "{kind}"'))
                   for kind in registry.kinds)
    finally:
        store.close()


def cpu_of(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_one(n: int, port: int, store_kind: str, store_url: str, msgs, readings: int, registry, drain: bool,
            servers_pids: dict[str, int]) -> dict:
    ctx = mp.get_context("spawn")
    group = f"g{n}x{uuid.uuid4().hex[:6]}"
    store_name = f"scale_{group}"
    if store_kind == "sqlite":
        store_url = str(Path(store_url) / f"{group}.sqlite")
    counts = ctx.Array("q", 2 * n, lock=False)
    stop, go, results = ctx.Event(), ctx.Event(), ctx.Queue()
    readies = [ctx.Event() for _ in range(n)]
    procs = [ctx.Process(target=collector_process, args=(i, port, group, store_kind, store_url, store_name, counts,
                                                        readies[i], go, stop, results, drain), daemon=True)
             for i in range(n)]
    for p in procs:
        p.start()
    try:
        return _measure(n, port, store_kind, store_url, store_name, group, msgs, readings, registry, procs, counts,
                        readies, go, stop, results, drain, servers_pids)
    finally:
        stop.set()
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.terminate()


def _measure(n, port, store_kind, store_url, store_name, group, msgs, readings, registry, procs, counts, readies,
             go, stop, results, drain, servers_pids) -> dict:
    from simulator.publisher import MqttPublisher

    for i, r in enumerate(readies):
        if not r.wait(120):
            stop.set()
            raise RuntimeError(f"collector {i} of {n} did not get ready in 120 s: {results.get(timeout=5)}")
    pub = MqttPublisher("127.0.0.1", port, client_id=f"scale-pub-{group}", max_inflight=1000)
    if not drain:
        go.set()
    t0 = time.perf_counter()
    for topic, payload in msgs:
        pub.publish(topic, payload)
    pub.flush(timeout=600)
    t_pub = time.perf_counter() - t0
    cpu0 = {k: cpu_of(pid) for k, pid in servers_pids.items()}
    if drain:  # the backlog waits at the broker, in the members' sessions: now time the collectors alone
        go.set()
        t0 = time.perf_counter()
    while sum(counts[0::2]) < readings:
        if time.perf_counter() - t0 > 900:
            stop.set()
            raise RuntimeError(f"{n} collectors: only {sum(counts[0::2])} of {readings} readings after 900 s")
        time.sleep(POLL_S)
    elapsed = time.perf_counter() - t0
    cpu = {k: cpu_of(pid) - cpu0[k] for k, pid in servers_pids.items()}
    time.sleep(1.0)  # late duplicates (redeliveries) would show up now
    pub.close()
    stop.set()
    per = dict(results.get(timeout=120) for _ in procs)
    if any("error" in v for v in per.values()):
        raise RuntimeError(str(per))
    stored = sum(v["readings_stored"] for v in per.values())
    return {"collectors": n, "messages": len(msgs), "readings": readings, "seconds": elapsed, "publish_s": t_pub,
            "readings_s": readings / elapsed, "msg_s": len(msgs) / elapsed, "publish_msg_s": len(msgs) / t_pub,
            "shares": [per[i]["messages"] / max(1, sum(v["messages"] for v in per.values())) for i in range(n)],
            "stored_by_collectors": stored, "duplicates": stored - readings,
            "quarantined": sum(v["quarantined"] for v in per.values()),
            "quarantined_by_reason": [v["quarantined_by_reason"] for v in per.values() if v["quarantined"]],
            "collector_cpu_s": sum(v["cpu_s"] for v in per.values()), "servers_cpu_s": cpu,
            "distinct_in_store": stored_in(store_kind, store_url, store_name, registry)}


def report(rows: list[dict], command: str, store_label: str) -> str:
    one = rows[0]["readings_s"]
    lines = [f"Command: `{command}`  ",
             f"Machine: {os.cpu_count()} cores (shared with other work); date {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
             f"mosquitto 2.0 with the shipped queue limits, MQTT 5, QoS 1, one `$share` group; store {store_label}.", "",
             "| collectors | readings | readings/s | msg/s | vs 1 collector | publisher msg/s | share of each collector "
             "| stored by collectors | duplicates | in the store | CPU s: collectors / broker / store "
             "| readings per collector CPU s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        shares = " / ".join(f"{s:.0%}" for s in r["shares"])
        lines.append(f"| {r['collectors']} | {r['readings']:,} | {r['readings_s']:,.0f} | {r['msg_s']:,.0f} | "
                     f"{r['readings_s'] / one:.2f}x | {r['publish_msg_s']:,.0f} | {shares} | {r['stored_by_collectors']:,} | "
                     f"{r['duplicates']:,} | {r['distinct_in_store']:,} | {r['collector_cpu_s']:.1f} / "
                     f"{r['servers_cpu_s'].get('broker', 0):.1f} / {r['servers_cpu_s'].get('store', 0):.1f} | "
                     f"{r['readings'] / max(r['collector_cpu_s'], 1e-9):,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--readings", type=int, default=400_000, help="readings published per run (default 400,000)")
    p.add_argument("--batch", type=int, default=100, help="readings per message (default 100; 1 = one per message)")
    p.add_argument("--store", choices=("influx1", "victoria", "sqlite"), default="influx1")
    p.add_argument("--collectors", default="1,2,4", help="comma-separated collector counts (default 1,2,4)")
    p.add_argument("--live", action="store_true", help="publish while the collectors run (default: drain a backlog "
                   "queued at the broker, which times the collectors, not the publisher)")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the clean-up (collectors, servers) on kill too
    from device_profiles import load_registry

    registry = load_registry()
    tmp = Path(tempfile.mkdtemp(prefix="fansipan-scaleout-"))
    started = []
    try:
        broker = servers.start_mosquitto(tmp)
        started.append(broker)
        if args.store == "influx1":
            server = servers.start_influxd(tmp)
            started.append(server)
            url, label = server.url, "InfluxDB 1.6.7"
        elif args.store == "victoria":
            server = servers.start_victoria(tmp)
            started.append(server)
            url, label = server.url, "VictoriaMetrics 1.79 single node"
        else:
            url, label = str(tmp), "SQLite (embedded), one file shared by the collectors"
        msgs, readings = backlog(registry, args.readings, args.batch)
        print(f"{len(msgs):,} messages, {readings:,} readings ({args.batch} a message)", flush=True)
        rows = []
        for n in (int(x) for x in args.collectors.split(",")):
            if args.store == "victoria":  # VictoriaMetrics keeps duplicates: a fresh server per run keeps counts apart
                server.stop()
                shutil.rmtree(server.workdir / "data", ignore_errors=True)
                server.start()
            pids = {"broker": broker.proc.pid, **({"store": server.proc.pid} if args.store != "sqlite" else {})}
            r = run_one(n, broker.port, args.store, url, msgs, readings, registry, drain=not args.live,
                        servers_pids=pids)
            rows.append(r)
            print(f"  {n} collector(s): {r['readings_s']:,.0f} readings/s, shares "
                  f"{' / '.join(f'{s:.0%}' for s in r['shares'])}, duplicates {r['duplicates']}, "
                  f"distinct in store {r['distinct_in_store']:,} of {readings:,}", flush=True)
            if r["quarantined"]:
                print(f"  (quarantined, not stored: {r['quarantined_by_reason']})", flush=True)
    finally:
        for s in reversed(started):
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    print()
    print(report(rows, ("python -m benchmarks.scaleout " + " ".join(argv)).strip(), label))


if __name__ == "__main__":
    main()
