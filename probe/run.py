"""``fansipan probe --config FILE``: load the config, connect to the broker, run rounds until stopped.

On a broker with per-device accounts (``fansipan mqtt-acl``), each probe device may publish only to
its own topic, so ``--credentials device-credentials.csv`` opens one connection per device with that
device's account.  Without it, one connection uses FANSIPAN_MQTT_USERNAME/PASSWORD (a development
broker, or an account allowed to write ``laocai/+/service_probe/#``).
"""

from __future__ import annotations

import csv
import logging
import socket
import threading
from pathlib import Path

from device_profiles import load_registry

from .agent import ProbeAgent
from .config import ProbeConfigError, load_config

log = logging.getLogger("fansipan.probe")


def read_credentials(path: str | Path, devices: list[str]) -> dict[str, tuple[str, str]]:
    """device -> (username, password) from a ``fansipan mqtt-acl`` credentials CSV, for ``devices``."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or not {"device", "username", "password"} <= set(reader.fieldnames):
                raise ProbeConfigError(f"{path}: not a device credentials file (expected the columns device, "
                                       "username, password, as `fansipan mqtt-acl` writes them)")
            rows = {r["device"]: (r["username"], r["password"]) for r in reader if r.get("device") in devices}
    except OSError as exc:
        raise ProbeConfigError(f"cannot read the credentials file {path}: {exc.strerror}") from None
    missing = sorted(set(devices) - set(rows))
    if missing:
        raise ProbeConfigError(f"{path}: no credentials for {', '.join(missing)}; regenerate it with "
                               "`fansipan mqtt-acl` after adding the devices to sites.yaml")
    return rows


def _publishers(settings, args, topics: dict[str, str]) -> dict[str, object]:
    """topic -> MqttPublisher (one shared, or one per device with --credentials)."""
    from simulator.publisher import MqttPublisher

    host, port = settings.mqtt_host_port
    base_id = args.client_id or f"fansipan-probe-{socket.gethostname()}"

    def connect(client_id: str, username: str | None, password: str | None):
        return MqttPublisher(host, port, protocol=5 if settings.mqtt_protocol == "5" else 4, client_id=client_id[:64],
                             username=username, password=password, tls=settings.mqtt_tls,
                             tls_ca=settings.mqtt_ca_file or None, client_cert=settings.mqtt_client_cert or None,
                             client_key=settings.mqtt_client_key or None)

    if not args.credentials:
        shared = connect(base_id, settings.mqtt_username or None, settings.mqtt_password or None)
        return {t: shared for t in topics.values()}
    creds = read_credentials(args.credentials, list(topics))
    return {topics[d]: connect(f"{base_id}-{d}", *creds[d]) for d in topics}


def run(args, stop: threading.Event) -> int:
    from fansipan.config import Settings

    settings = Settings.from_env()
    registry = load_registry(settings.profiles_path())
    agent = ProbeAgent(load_config(args.config, registry), registry)
    if args.once:  # print one round's readings, publish nothing: to try a config out
        for topic, payload in agent.round():
            print(topic, payload.decode())
        return 0
    pubs = _publishers(settings, args, agent.topics)
    try:
        agent.run(lambda topic, payload: pubs[topic].publish(topic, payload), stop)
    finally:
        for pub in {id(p): p for p in pubs.values()}.values():
            pub.close(timeout=10)
    log.info("probe stopped after %d round(s), %d failed check(s)", agent.rounds, agent.failures)
    return 0
