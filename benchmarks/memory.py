"""Collector memory with 10,000 devices, all publishing (floor of issue 6: under 200 MB RSS).

    python -m benchmarks.memory [--devices 10000] [--rounds 3] [--batch 1] [--store sqlite|influx1]

A registry of ``--devices`` devices is generated in a temporary directory (the
shipped device profiles, a sites file of communes with a router, a UPS and
street lights, cameras, air-quality and water-level stations behind them).  One collector runs in its own process (spawn: only what a
``fansipan collect`` process holds) against a real mosquitto; the simulator
publishes ``--rounds`` reporting intervals of every device (QoS 1, ``--batch``
readings a message, one by default: each device its own message, as field
devices send them), of the last few minutes (no clock-skew refusals).  The collector's resident memory is sampled from
``/proc/self/status`` every 50 ms; the peak is the kernel's own high-water mark
(``VmHWM``, the same as ``getrusage``'s ``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import servers  # noqa: E402

FLOOR_MB = 200
# No loudspeakers: they report only in broadcast windows, and every device must publish.
PER_COMMUNE = {"street_light": 12, "camera": 10, "air_quality": 8, "water_level": 8}


def start_time(rounds: int, longest_s: float) -> datetime:
    """Just far enough back that the last simulated reading is not in the future when it arrives
    (older readings would be refused as clock skew by profiles that quarantine it)."""
    return datetime.now(timezone.utc) - timedelta(seconds=rounds * longest_s + 60)


def generate_registry(directory: Path, n_devices: int) -> Path:
    """A registry directory with ``n_devices`` devices (rounded up to whole communes of 40)."""
    from device_profiles import DEFAULT_DIR

    shutil.copytree(Path(DEFAULT_DIR) / "kinds", directory / "kinds")
    for other in Path(DEFAULT_DIR).glob("*.yaml"):  # agencies and the like, which the profiles may name
        if other.name != "sites.yaml":
            shutil.copy(other, directory / other.name)
    per = 2 + sum(PER_COMMUNE.values())
    communes = -(-n_devices // per)
    sites = [{"id": "province", "type": "province", "name": "Tỉnh"}]
    for d in range(max(1, communes // 50)):
        sites.append({"id": f"d{d}", "type": "district", "name": f"Huyện {d}", "parent": "province"})
    for c in range(communes):
        p = f"c{c}"
        devices = [{"id": f"{p}-router", "kind": "commune_router", "power": None},
                   {"id": f"{p}-ups", "kind": "commune_ups"}]
        devices += [{"id": f"{p}-{kind}-{i}", "kind": kind} for kind, n in PER_COMMUNE.items() for i in range(n)]
        sites.append({"id": p, "type": "commune", "name": f"Xã {c}", "parent": f"d{c % max(1, communes // 50)}",
                      "uplink": f"{p}-router", "power": f"{p}-ups", "devices": devices})
    (directory / "sites.yaml").write_text(yaml.safe_dump({"sites": sites}, allow_unicode=True, sort_keys=False))
    return directory


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def collector_process(registry_dir: str, port: int, store_kind: str, store_url: str, target: int, results) -> None:
    from device_profiles import load_registry
    from fansipan.config import Settings
    from ingest.collector import Collector

    base_kb = _rss_kb("VmRSS")
    registry = load_registry(registry_dir)
    if store_kind == "influx1":
        from storage.influx_v1 import InfluxV1Store

        store = InfluxV1Store(store_url, "memory", registry)
    else:
        from storage.sqlite import SQLiteStore

        store = SQLiteStore(store_url, registry)
    c = Collector(Settings(mqtt_url=f"mqtt://127.0.0.1:{port}", mqtt_client_id="memory-bench"), registry, store)
    c.start()
    while not c.stats.snapshot()["connected"]:
        time.sleep(0.05)
    time.sleep(0.5)
    ready_kb = _rss_kb("VmRSS")
    results.put(("ready", ready_kb))
    t0, samples = time.monotonic(), []
    while True:
        s = c.stats.snapshot()
        samples.append(_rss_kb("VmRSS"))
        if s["readings_stored"] + s["quarantined"] >= target or time.monotonic() - t0 > 900:
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    c.stop()
    store.close()
    results.put(("done", {"interpreter_kb": base_kb, "ready_kb": ready_kb, "max_sampled_kb": max(samples),
                          "peak_kb": _rss_kb("VmHWM"), "end_kb": _rss_kb("VmRSS"), "seconds": elapsed,
                          "devices": len(registry.devices), "devices_seen": s["devices_seen"],
                          "stored": s["readings_stored"], "quarantined": s["quarantined"]}))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=3, help="reporting intervals of every device (default 3)")
    p.add_argument("--batch", type=int, default=1, help="readings per message (default 1)")
    p.add_argument("--store", choices=("sqlite", "influx1"), default="sqlite")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    from device_profiles import load_registry
    from simulator.core import Simulation
    from simulator.publisher import MqttPublisher

    tmp = Path(tempfile.mkdtemp(prefix="fansipan-memory-"))
    started = []
    try:
        reg_dir = generate_registry(tmp / "registry", args.devices)
        registry = load_registry(reg_dir)
        longest = max(registry.kinds[d.kind].reporting.interval_s for d in registry.devices.values())
        sim = Simulation(registry, seed=23, speed=0, start=start_time(args.rounds, longest), batch=args.batch)
        msgs, readings = [], 0
        for topic, payload, n in sim.messages(int(args.rounds * longest / 60) or 1, step_s=60):
            msgs.append((topic, payload))
            readings += n
        print(f"{len(registry.devices):,} devices; {len(msgs):,} messages, {readings:,} readings", flush=True)
        broker = servers.start_mosquitto(tmp)
        started.append(broker)
        if args.store == "influx1":
            influxd = servers.start_influxd(tmp)
            started.append(influxd)
            url = influxd.url
        else:
            url = str(tmp / "memory.sqlite")
        ctx = mp.get_context("spawn")
        results = ctx.Queue()
        proc = ctx.Process(target=collector_process, args=(str(reg_dir), broker.port, args.store, url, readings, results))
        proc.start()
        kind, ready_kb = results.get(timeout=120)
        pub = MqttPublisher("127.0.0.1", broker.port, client_id="memory-pub", max_inflight=1000)
        for topic, payload in msgs:
            pub.publish(topic, payload)
        pub.flush(timeout=600)
        pub.close()
        kind, r = results.get(timeout=960)
        proc.join(60)
    finally:
        for s in reversed(started):
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    mb = lambda kb: kb / 1024  # noqa: E731
    command = ("python -m benchmarks.memory " + " ".join(argv)).strip()
    print(f"\nCommand: `{command}`  ")
    print(f"Machine: {os.cpu_count()} cores (shared); date {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
          f"store {args.store}; {args.batch} reading(s) a message, QoS 1.\n")
    print("| devices (seen by the collector) | messages | readings stored | interpreter + imports MB "
          "| registry loaded, connected MB | peak RSS MB (VmHWM) | RSS at end MB | floor |")
    print("|---|---|---|---|---|---|---|---|")
    if r["quarantined"]:
        print(f"(warning: {r['quarantined']:,} readings were quarantined, not stored)")
    verdict = "met" if mb(r["peak_kb"]) < FLOOR_MB else "MISSED"
    print(f"| {r['devices']:,} ({r['devices_seen']:,}) | {len(msgs):,} | {r['stored']:,} | {mb(r['interpreter_kb']):.0f} | "
          f"{mb(r['ready_kb']):.0f} | {mb(r['peak_kb']):.0f} | {mb(r['end_kb']):.0f} | < {FLOOR_MB} MB: {verdict} |")


if __name__ == "__main__":
    main()
