"""``fansipan demo``: the whole path on one machine, no servers to install.

A local broker (mosquitto if installed, else in-process amqtt), the collector,
the embedded SQLite store and the simulator with scripted faults; live progress
on stdout; a JSON summary at exit.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from device_profiles import load_registry
from ingest.collector import Collector
from storage.factory import open_store

from .broker import LocalBroker
from .cli import _stop_event
from .config import Settings

log = logging.getLogger("fansipan.demo")

# What the demo breaks, in simulated seconds from the start (see README "The demo").
DEFAULT_FAULTS = [
    "uplink_cut:y_ty:600",  # Y Tý (Bát Xát) loses its uplink 10 simulated minutes in
    "power_loss:pha_long:900",  # Pha Long (Mường Khương): mains lost, UPS drains, then silence
    "crac_failure:dc-crac-1:300",  # data center: CRAC 1 fails, inlet temperatures climb
    "stuck_sensor:sapa-aq-1:0",  # Sa Pa air-quality station repeats one value
    "flood:banvuoc-wl-1:0",  # Bản Vược gauge on the Red River rises past its alarm marks
    "speaker_offline:ta_van:1200",
    "clock_skew:cocleu-cam-1:0",  # a camera whose clock is an hour ahead: refused, bad_timestamp
    "malformed:0.005",  # half a percent of messages are broken on purpose
]


def _fmt_counts(counts: dict) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])) or "none"


def run_demo(args) -> int:
    from simulator.core import Simulation
    from simulator.faults import Fault
    from simulator.publisher import MqttPublisher

    registry = load_registry()
    faults = [Fault.parse(f) for f in (args.fault if args.fault is not None else DEFAULT_FAULTS)]
    store_path = Path(args.store_path)
    for suffix in ("", "-wal", "-shm"):  # each demo run starts from an empty store, so its counts add up
        Path(str(store_path) + suffix).unlink(missing_ok=True)

    stop = _stop_event()
    broker = LocalBroker.start(args.broker)
    print(f"broker: {broker.name} on 127.0.0.1:{broker.port} (MQTT {broker.protocol})")
    settings = Settings(
        mqtt_url=f"mqtt://127.0.0.1:{broker.port}", mqtt_protocol=broker.protocol, store="sqlite",
        sqlite_path=str(store_path), mqtt_client_id="fansipan-demo-collector", batch_size=1000, batch_ms=200,
    )
    settings.check()
    store = open_store(settings, registry)
    collector = Collector(settings, registry, store)
    collector.start()
    deadline = time.monotonic() + 15
    while not collector.stats.snapshot()["connected"]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the collector could not connect to {broker.name} on port {broker.port}")
        time.sleep(0.05)
    time.sleep(0.3)  # let the subscriptions settle before the first publish

    print(f"store: SQLite {store_path}; {len(registry.devices)} devices of {len(registry.kinds)} kinds; "
          f"speed x{args.speed:g}; faults: {', '.join(str(f) for f in faults) or 'none'}")
    sim = Simulation(registry, faults=faults, seed=args.seed, speed=args.speed)
    pub = MqttPublisher("127.0.0.1", broker.port, protocol=5 if broker.protocol == "5" else 4,
                        client_id="fansipan-demo-simulator")
    started = time.monotonic()
    sim_thread = threading.Thread(target=sim.run, args=(pub.publish,), kwargs={"duration_s": args.duration, "stop": stop},
                                  name="simulator", daemon=True)
    sim_thread.start()
    try:
        while sim_thread.is_alive():
            sim_thread.join(2.0)
            _progress(started, sim, collector)
    finally:
        stop.set()
        sim_thread.join(10)
        pub.flush(timeout=30)
        pub.close()
        drained = _drain(sim, collector, timeout=30)
        _progress(started, sim, collector)
        collector.stop()
        store.close()
        broker.stop()
    summary = _summary(sim, collector, broker, faults, time.monotonic() - started, drained)
    _print_kinds(summary)
    if args.summary_json:
        Path(args.summary_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.summary_json).write_text(json.dumps(summary, indent=2, ensure_ascii=False))
        print(f"summary written to {args.summary_json}")
    return 0 if drained else 1


def _expected(sim) -> int:
    st = sim.stats
    return st.published_readings + sum(st.malformed_by_reason.values())


def _drain(sim, collector, timeout: float) -> bool:
    """Wait until the collector has accounted for every reading the simulator published."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = collector.stats.snapshot()
        if s["readings_stored"] + s["quarantined"] >= _expected(sim):
            return True
        time.sleep(0.1)
    s = collector.stats.snapshot()
    log.error("after %.0f s the collector has accounted for %d of %d published readings; "
              "the rest stay unacknowledged at the broker", timeout, s["readings_stored"] + s["quarantined"], _expected(sim))
    return False


def _progress(started: float, sim, collector) -> None:
    s = collector.stats.snapshot()
    st = sim.stats
    print(f"[{time.monotonic() - started:6.0f} s] published {st.published_readings:,} readings "
          f"(+{sum(st.malformed_by_reason.values()):,} malformed on purpose) | stored {s['readings_stored']:,} "
          f"from {s['devices_seen']} devices | quarantined {s['quarantined']:,}: {_fmt_counts(s['quarantined_by_reason'])}"
          f"{'' if s['connected'] else ' | COLLECTOR NOT CONNECTED'}", flush=True)


def _print_kinds(summary: dict) -> None:
    print("stored readings by kind:")
    for kind, n in sorted(summary["stored_by_kind"].items()):
        print(f"  {kind:<16} {n:>10,}")


def _summary(sim, collector, broker, faults, elapsed: float, drained: bool) -> dict:
    s = collector.stats.snapshot()
    st = sim.stats
    return {
        "duration_s": round(elapsed, 1),
        "broker": broker.name,
        "faults": [str(f) for f in faults],
        "readings_published": st.published_readings,
        "malformed_published_by_reason": dict(st.malformed_by_reason),
        "messages_published": st.published_messages,
        "readings_stored": s["readings_stored"],
        "quarantined": s["quarantined"],
        "quarantined_by_reason": s["quarantined_by_reason"],
        "stored_by_kind": s["stored_by_kind"],
        "devices_published": len(st.devices_published),
        "devices_seen": s["devices_seen"],
        "all_accounted_for": drained,
    }
