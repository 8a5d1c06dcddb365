"""The ``fansipan`` command: one entry point for every service and tool."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from device_profiles import ProfileError, load_registry

from .config import ConfigError, Settings

log = logging.getLogger("fansipan")


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
    )


def _stop_event() -> threading.Event:
    """An event set by SIGINT/SIGTERM, so services drain instead of dying mid-batch."""
    stop = threading.Event()

    def handler(signum, frame):
        if stop.is_set():  # second Ctrl-C: the operator means it
            raise KeyboardInterrupt
        log.info("received %s: finishing the current batch, then stopping (again to force)", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def cmd_profiles_check(args) -> int:
    try:
        reg = load_registry(args.dir) if args.dir else load_registry()
    except ProfileError as exc:
        print(exc, file=sys.stderr)
        return 1
    districts = [s for s in reg.sites.values() if s.type == "district"]
    communes = [s for s in reg.sites.values() if s.type == "commune"]
    print(f"ok: {len(reg.kinds)} device kinds, {len(reg.sites)} sites ({len(districts)} districts, "
          f"{len(communes)} communes), {len(reg.devices)} devices in {reg.source}")
    return 0


def cmd_collect(args) -> int:
    from ingest.collector import Collector
    from ingest.spool import Spool
    from storage.factory import open_store

    settings = Settings.from_env(mqtt_share_group=args.share_group, mqtt_client_id=args.client_id)
    registry = load_registry(settings.profiles_path())
    store = open_store(settings, registry)
    spool = Spool(settings.spool_path, settings.spool_max_mb * 1024 * 1024) if settings.spool_path else None
    collector = Collector(settings, registry, store, heartbeat_file=args.heartbeat_file, spool=spool)
    stop = _stop_event()
    collector.start()
    if args.metrics_port:
        from ingest.metrics import serve_metrics

        serve_metrics(collector, args.metrics_port, args.metrics_host)
        log.info("metrics on http://%s:%d/metrics", args.metrics_host, args.metrics_port)
    log.info("collector %s: store %s, batches of up to %d messages or %d ms; subscriptions: %s",
             settings.mqtt_client_id, settings.store, settings.batch_size, settings.batch_ms, ", ".join(collector.subscriptions()))
    while not stop.wait(30):
        s = collector.stats.snapshot()
        log.info("stored %d readings, quarantined %d %s, %d pending, spool %s, %s",
                 s["readings_stored"], s["quarantined"], s["quarantined_by_reason"] or "", s["pending_messages"],
                 f"{s['spool'].get('batches', 0)} batches" if spool else "off",
                 "connected" if s["connected"] else "NOT CONNECTED")
    collector.stop()
    store.close()
    return 0


def cmd_detect(args) -> int:
    from analytics.incidents import IncidentStore
    from analytics.service import DetectionService
    from analytics.shard import Shard
    from storage.factory import open_store

    settings = Settings.from_env(mqtt=False, detect_shard=args.shard)
    registry = load_registry(settings.profiles_path())
    store = open_store(settings, registry)
    incidents = IncidentStore(settings.incidents_path)
    shard = Shard.parse(settings.detect_shard)
    service = DetectionService(registry, store, incidents, shard=shard)
    stop = _stop_event()
    log.info("detector: store %s, incidents in %s, a cycle every %d s", settings.store, settings.incidents_path,
             settings.detect_every_s)
    if not shard.whole:
        log.info("detector shard %s: per-series detectors on %d of %d devices", shard,
                 sum(map(len, service.owned.values())), len(registry.devices))
    service.run(settings.detect_every_s, stop)
    incidents.close()
    store.close()
    return 0


def cmd_simulate(args) -> int:
    from simulator.core import Simulation
    from simulator.faults import Fault
    from simulator.publisher import MqttPublisher

    settings = Settings.from_env(mqtt_url=args.mqtt_url)
    registry = load_registry(settings.profiles_path())
    sim = Simulation(registry, faults=[Fault.parse(f) for f in args.fault], seed=args.seed, speed=args.speed, batch=args.batch)
    host, port = settings.mqtt_host_port
    pub = MqttPublisher(host, port, protocol=5 if settings.mqtt_protocol == "5" else 4,
                        client_id=args.client_id, username=settings.mqtt_username or None,
                        password=settings.mqtt_password or None, tls=settings.mqtt_tls,
                        tls_ca=settings.mqtt_ca_file or None, client_cert=settings.mqtt_client_cert or None,
                        client_key=settings.mqtt_client_key or None)
    stop = _stop_event()
    try:
        sim.run(pub.publish, duration_s=args.duration, stop=stop)
        pub.flush(timeout=60)
    finally:
        pub.close()
    st = sim.stats
    print(f"published {st.published_messages} messages, {st.published_readings} valid readings, "
          f"malformed on purpose: {dict(st.malformed_by_reason)}")
    return 0


def cmd_serve(args) -> int:
    from api.main import serve

    serve(Settings.from_env(mqtt=False))
    return 0


def cmd_keys(args) -> int:
    from api.keys import main as keys_main

    return keys_main(args.keys_args)


def cmd_bench(args) -> int:
    if args.bench == "nab":
        from benchmarks.nab import main as nab_main

        return nab_main(["--data", args.data, *(["--out", args.out] if args.out else [])])
    if args.bench == "sparkplug":
        from benchmarks.sparkplug import main as sparkplug_main

        return sparkplug_main([])
    from benchmarks.ingest import main as ingest_main

    ingest_main([])
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    return run_demo(args)


def cmd_mqtt_acl(args) -> int:
    from .mqtt_security import run

    return run(args)


def cmd_probe(args) -> int:
    from probe.config import ProbeConfigError
    from probe.run import run

    try:
        return run(args, _stop_event())
    except ProbeConfigError as exc:
        print(f"fansipan probe: {exc}", file=sys.stderr)
        return 2


def cmd_notify(args) -> int:
    from notify.rules import RulesError
    from notify.run import run

    try:
        return run(args, _stop_event())
    except RulesError as exc:
        print(f"fansipan notify: {exc}", file=sys.stderr)
        return 2


def cmd_report(args) -> int:
    from reports.cli import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fansipan", description="Telemetry and outage detection for the Lào Cai operations center.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    prof = sub.add_parser("profiles", help="device profiles and the site registry")
    prof_sub = prof.add_subparsers(dest="profiles_command", required=True)
    chk = prof_sub.add_parser("check", help="validate every profile and the site registry")
    chk.add_argument("--dir", help="profiles directory (default: the shipped device_profiles/)")
    chk.set_defaults(func=cmd_profiles_check)

    col = sub.add_parser("collect", help="run the MQTT collector (settings from FANSIPAN_* variables)")
    col.add_argument("--share-group", help="subscribe as $share/GROUP/... so several collectors split the stream")
    col.add_argument("--client-id", help="MQTT client id; stable across restarts (the broker keeps its session)")
    col.add_argument("--heartbeat-file", help="touch this file every few seconds (container health checks)")
    col.add_argument("--metrics-port", type=int, default=0, help="serve Prometheus metrics on this port (0: off)")
    col.add_argument("--metrics-host", default="127.0.0.1", help="address for the metrics server (0.0.0.0 in a container)")
    col.set_defaults(func=cmd_collect)

    det = sub.add_parser("detect", help="run the detector: silence, topology, limits, anomalies -> incidents")
    det.add_argument("--shard", metavar="I/N", help="run shard I of N detector processes, e.g. 0/3 "
                     "(default FANSIPAN_DETECT_SHARD, else 0/1: one detector for everything); see docs/SCALING.md")
    det.set_defaults(func=cmd_detect)

    sim = sub.add_parser("simulate", help="publish simulated field-device telemetry to a broker")
    sim.add_argument("--mqtt-url", help="broker, e.g. mqtt://127.0.0.1:1883 (default FANSIPAN_MQTT_URL)")
    sim.add_argument("--speed", type=float, default=1.0, help="simulated seconds per wall second; 0 = as fast as possible")
    sim.add_argument("--duration", type=float,
                     help="stop after this many wall seconds (simulated seconds with --speed 0; default: until interrupted)")
    sim.add_argument("--fault", action="append", default=[], metavar="NAME:TARGET[:START[:DURATION]]",
                     help="inject a fault, e.g. uplink_cut:y_ty, crac_failure:dc, malformed:0.01 (repeatable)")
    sim.add_argument("--batch", type=int, default=1, help="readings per message")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--client-id", default="fansipan-simulator")
    sim.set_defaults(func=cmd_simulate)

    acl = sub.add_parser("mqtt-acl", help="write mosquitto's password file and ACL, and per-device credentials, from the registry")
    from .mqtt_security import add_arguments as mqtt_acl_arguments
    mqtt_acl_arguments(acl)
    acl.set_defaults(func=cmd_mqtt_acl)

    prb = sub.add_parser("probe", help="synthetic probes: check portals, DNS and TCP reachability, publish the results over MQTT")
    prb.add_argument("--config", required=True, help="the probe's checks (YAML; see deploy/probe.example.yaml, docs/probes.md)")
    prb.add_argument("--client-id", help="MQTT client id (default fansipan-probe-HOSTNAME)")
    prb.add_argument("--credentials", help="device-credentials.csv from `fansipan mqtt-acl`: one connection per probe "
                     "device with its own account (default: one connection as FANSIPAN_MQTT_USERNAME)")
    prb.add_argument("--once", action="store_true", help="run one round, print the readings, publish nothing")
    prb.set_defaults(func=cmd_probe)

    ntf = sub.add_parser("notify", help="send incident notifications (e-mail, signed webhook, Telegram) by rules")
    ntf.add_argument("--rules", required=True, help="rules and channels (YAML; see deploy/notify.example.yaml, docs/notifications.md)")
    ntf.add_argument("--every", type=float, default=5.0, help="seconds between passes over the incident events (default 5)")
    ntf.set_defaults(func=cmd_notify)

    rep = sub.add_parser("report", help="the monthly availability report for the leadership (csv, html, pdf)")
    from reports.cli import add_arguments as _report_arguments

    _report_arguments(rep)
    rep.set_defaults(func=cmd_report)

    srv = sub.add_parser("serve", help="run the API (telemetry, devices, sites, incidents, Grafana data source, /status)")
    srv.set_defaults(func=cmd_serve)
    keys = sub.add_parser("keys", help="API keys: create --role admin|operator|viewer --name NAME | list | revoke ID",
                          add_help=False)
    keys.add_argument("keys_args", nargs=argparse.REMAINDER)
    keys.set_defaults(func=cmd_keys)

    bench = sub.add_parser("bench", help="benchmarks (figures go to BENCHMARKS.md)")
    bench_sub = bench.add_subparsers(dest="bench", required=True)
    nab = bench_sub.add_parser("nab", help="stream the detector over the NAB corpus and score it with NAB's scoring")
    nab.add_argument("--data", required=True, help="NAB corpus folder holding data/ and labels/ (e.g. ../shared/data/nab)")
    nab.add_argument("--out", help="also write the results as markdown to this file")
    nab.set_defaults(func=cmd_bench)
    ing = bench_sub.add_parser("ingest", help="collector vs bare paho vs mosquitto_sub (needs mosquitto and influxd)")
    ing.set_defaults(func=cmd_bench)
    spb = bench_sub.add_parser("sparkplug", help="Sparkplug B decode rate against the JSON decoder (no server needed)")
    spb.set_defaults(func=cmd_bench)

    demo = sub.add_parser("demo", help="broker + collector + embedded store + simulator with faults, on this machine")
    demo.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    demo.add_argument("--summary-json", help="write a summary of the run to this file at exit")
    demo.add_argument("--speed", type=float, default=60.0, help="simulated seconds per wall second (default 60)")
    demo.add_argument("--broker", choices=("auto", "mosquitto", "amqtt"), default="auto",
                      help="local broker: mosquitto if installed, else the in-process amqtt")
    demo.add_argument("--store-path", default="var/demo/fansipan.sqlite", help="embedded store file")
    demo.add_argument("--fault", action="append", default=None, metavar="NAME:TARGET[:START[:DURATION]]",
                      help="faults to inject (default: a scripted set, see README)")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--api-port", type=int, default=8080,
                      help="serve the API and the status page here during the demo (0: any free port, -1: no API)")
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    from simulator.publisher import PublishError

    try:
        return args.func(args)
    except (ConfigError, ProfileError, PublishError) as exc:
        print(f"fansipan {args.command}: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a bad --fault, named with the valid choices
        if args.command not in ("simulate", "demo"):
            raise
        print(f"fansipan {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
