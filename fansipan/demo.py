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
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

from analytics.incidents import IncidentStore
from analytics.service import DetectionService
from analytics.topology import UNREACHABLE
from device_profiles import load_registry
from ingest.collector import Collector
from ingest.spool import Spool
from storage.factory import open_store

from .broker import LocalBroker
from .cli import _stop_event
from .config import Settings

log = logging.getLogger("fansipan.demo")
LOCAL = ZoneInfo("Asia/Ho_Chi_Minh")

# What the demo breaks, in simulated seconds from the start (see README "The demo").
DEFAULT_FAULTS = [
    "uplink_cut:y_ty:600",  # Y Tý (Bát Xát) loses its uplink 10 simulated minutes in
    "power_loss:pha_long:900",  # Pha Long (Mường Khương): mains lost, UPS drains, then silence
    "crac_failure:dc-crac-1:300",  # data center: CRAC 1 fails, inlet temperatures climb
    "stuck_sensor:sapa-aq-1:1500",  # Sa Pa air-quality station freezes on one value after 25 minutes
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
    incidents_path = store_path.with_name("incidents.sqlite")
    for path in (store_path, incidents_path, store_path.with_name("spool.sqlite")):
        for suffix in ("", "-wal", "-shm"):  # each demo run starts empty, so its counts add up
            Path(str(path) + suffix).unlink(missing_ok=True)

    stop = _stop_event()
    broker = LocalBroker.start(args.broker)
    print(f"broker: {broker.name} on 127.0.0.1:{broker.port} (MQTT {broker.protocol})")
    settings = Settings(
        mqtt_url=f"mqtt://127.0.0.1:{broker.port}", mqtt_protocol=broker.protocol, store="sqlite",
        sqlite_path=str(store_path), mqtt_client_id="fansipan-demo-collector", batch_size=1000, batch_ms=200,
        incidents_path=str(incidents_path), spool_path=str(store_path.with_name("spool.sqlite")),
    )
    settings.check()
    store = open_store(settings, registry)
    collector = Collector(settings, registry, store, spool=Spool(settings.spool_path, settings.spool_max_mb * 1024 * 1024))
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
    # The detector runs on simulated time: at x60 a minute of the province passes every second. It looks
    # three wall seconds behind the simulator, more than a reading takes through broker, batch and store
    # on a busy machine, so the pipeline's own latency, multiplied by the speed-up, does not pass for silence.
    behind_ns = int(3 * max(1.0, args.speed) * 1e9)
    sim_clock = lambda: int(sim.sim_time.timestamp() * 1e9) - behind_ns if sim.sim_time else time.time_ns()  # noqa: E731
    incidents = IncidentStore(incidents_path, clear_hold_s=120, reopen_s=600)
    pub = MqttPublisher("127.0.0.1", broker.port, protocol=5 if broker.protocol == "5" else 4,
                        client_id="fansipan-demo-simulator")
    started = time.monotonic()
    sim_thread = threading.Thread(target=sim.run, args=(pub.publish,), kwargs={"duration_s": args.duration, "stop": stop},
                                  name="simulator", daemon=True)
    sim_thread.start()
    while sim.sim_time is None and sim_thread.is_alive():
        time.sleep(0.05)
    detector = DetectionService(registry, store, incidents, clock=sim_clock, history_s=0)
    det_stop = threading.Event()
    det_thread = threading.Thread(target=detector.run, args=(1.0, det_stop), name="detector", daemon=True)
    det_thread.start()
    api_server = _serve_api(args, settings, registry, store, incidents, sim_clock)
    try:
        while sim_thread.is_alive():
            sim_thread.join(2.0)
            _progress(started, sim, collector, incidents)
    finally:
        stop.set()
        sim_thread.join(10)
        pub.flush(timeout=30)
        pub.close()
        drained = _drain(sim, collector, timeout=30)
        det_stop.set()
        det_thread.join(30)
        if api_server is not None:
            api_server.should_exit = True
        detector.cycle()  # one last look with everything stored
        _progress(started, sim, collector, incidents)
        collector.stop()
        store.close()
        broker.stop()
    summary = _summary(sim, collector, broker, faults, time.monotonic() - started, drained)
    summary["incidents"] = _incidents(incidents, registry)
    incidents.close()
    _print_kinds(summary)
    _print_incidents(summary["incidents"])
    if args.summary_json:
        Path(args.summary_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.summary_json).write_text(json.dumps(summary, indent=2, ensure_ascii=False))
        print(f"summary written to {args.summary_json}")
    return 0 if drained else 1


def _serve_api(args, settings, registry, store, incidents, clock):
    """The API on 127.0.0.1 for the length of the demo, with a fresh admin key printed once."""
    if args.api_port < 0:
        return None
    import uvicorn

    from api.keys import KeyStore
    from api.main import create_app
    from api.settings import ApiSettings

    from .broker import free_port

    port = args.api_port if args.api_port and _port_free(args.api_port) else free_port()
    keys = KeyStore(settings.incidents_path)
    _, token = keys.create("demo", "admin")
    app = create_app(settings, registry, store, incidents, keys=keys, clock=clock,
                     api_settings=ApiSettings(host="127.0.0.1", port=port, status_public=True))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, name="api", daemon=True).start()
    print(f"API: http://127.0.0.1:{port}/docs  (admin key for this demo: {token})\n"
          f"status page / trang trạng thái: http://127.0.0.1:{port}/status", flush=True)
    return server


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:  # taken: the demo picks another port and says which
            return False


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


def _progress(started: float, sim, collector, incidents) -> None:
    s = collector.stats.snapshot()
    st = sim.stats
    open_now = {}
    for inc in incidents.open_incidents():
        open_now[inc.kind] = open_now.get(inc.kind, 0) + 1
    clock = sim.sim_time.astimezone(LOCAL).strftime("%d/%m %H:%M") if sim.sim_time else "--"
    print(f"[{time.monotonic() - started:6.0f} s | {clock}] published {st.published_readings:,} readings "
          f"(+{sum(st.malformed_by_reason.values()):,} malformed on purpose) | stored {s['readings_stored']:,} "
          f"from {s['devices_seen']} devices | quarantined {s['quarantined']:,}: {_fmt_counts(s['quarantined_by_reason'])}"
          f" | incidents open: {_fmt_counts(open_now)}"
          f"{'' if s['connected'] else ' | COLLECTOR NOT CONNECTED'}", flush=True)


def _incidents(incidents: IncidentStore, registry) -> list[dict]:
    out = []
    for inc in incidents.all():
        out.append({
            "id": inc.id, "kind": inc.kind, "severity": inc.severity, "status": inc.status,
            "site": inc.site, "site_name": registry.sites[inc.site].name, "device": inc.device,
            "start": datetime.fromtimestamp(inc.started_ns / 1e9, timezone.utc).isoformat(timespec="seconds"),
            "resolved": (datetime.fromtimestamp(inc.resolved_ns / 1e9, timezone.utc).isoformat(timespec="seconds")
                         if inc.resolved_ns else None),
            "title": inc.title, "cause": inc.cause,
            "unreachable": [m for m, role in inc.members if role == UNREACHABLE],
            "affected": [m for m, role in inc.members if role != UNREACHABLE],
        })
    return out


def _print_incidents(rows: list[dict]) -> None:
    print(f"incidents ({len(rows)}):")
    for r in rows:
        extra = f" [+{len(r['unreachable'])} unreachable]" if r["unreachable"] else ""
        extra += f" [+{len(r['affected'])} more devices]" if r["affected"] else ""
        print(f"  #{r['id']:<3} {r['status']:<12} {r['severity']:<8} {r['start'][11:16]} UTC  {r['title']}{extra}")


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
