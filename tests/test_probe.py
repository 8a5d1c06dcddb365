"""Synthetic probes against local HTTP servers, through mosquitto, the collector and the detector.

The test starts four targets on 127.0.0.1 (healthy, slow, failing with 500, a
port nobody listens on), runs four probe rounds stamped a minute apart (real
measurements, simulated clock, so the profile's minimum durations are met
without waiting), publishes through a real mosquitto to the real collector and
runs a detection cycle: exactly the expected incidents come out, none for the
healthy target, and the notifier sends them to a local webhook as one message.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest
import yaml
from servers import free_port, wait_for

from analytics.incidents import IncidentStore
from analytics.service import DetectionService
from device_profiles import load_registry
from fansipan.config import Settings
from ingest.collector import Collector
from notify.rules import parse_rules
from notify.service import Notifier
from probe.agent import ProbeAgent
from probe.config import ProbeConfigError, load_config, parse_config
from simulator.publisher import MqttPublisher
from storage.sqlite import SQLiteStore

REGISTRY = load_registry()
SLOW_S = 1.2  # above the profile's 1000 ms warning mark, below the 4 s timeout


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's naming
        mode = self.server.mode
        if mode == "slow":
            time.sleep(SLOW_S)
        status = 500 if mode == "failing" else 200
        body = b"<html>Cong dich vu cong</html>" if status == 200 else b"internal error"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except BrokenPipeError:  # the probe's timeout hung up first, as it should
            pass

    def log_message(self, *args):
        pass


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.server.got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def targets():
    servers, urls = [], {}
    for mode in ("healthy", "slow", "failing"):
        srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        srv.mode = mode
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        urls[mode] = srv.server_address[1]
    urls["refusing"] = free_port()  # nothing listens there
    yield urls
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def _config(tmp_path, ports) -> str:
    cfg = {"interval_s": 60, "timeout_s": 4, "checks": [
        {"device": "dc-probe-web", "http": {"url": f"http://127.0.0.1:{ports['healthy']}/"},
         "dns": {"name": "localhost"}, "tcp": {"host": "127.0.0.1", "port": ports["healthy"]}},
        {"device": "yty-probe-dc", "http": {"url": f"http://127.0.0.1:{ports['slow']}/"}},
        {"device": "sapa-probe-dvc", "http": {"url": f"http://127.0.0.1:{ports['failing']}/"}},
        {"device": "bacha-probe-dvc", "http": {"url": f"http://127.0.0.1:{ports['refusing']}/"},
         "tcp": {"host": "127.0.0.1", "port": ports["refusing"]}},
    ]}
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return str(path)


def test_one_round_measures_each_target(tmp_path, targets):
    agent = ProbeAgent(load_config(_config(tmp_path, targets), REGISTRY), REGISTRY)
    t0 = time.monotonic()
    out = {topic.rsplit("/", 1)[1]: orjson.loads(p) for topic, p in agent.round(ts_s=1_800_000_000)}
    took = time.monotonic() - t0
    assert took < SLOW_S + 1.5, f"checks run concurrently, a round took {took:.1f} s"
    web, slow, failing, refusing = out["dc-probe-web"], out["yty-probe-dc"], out["sapa-probe-dvc"], out["bacha-probe-dvc"]
    assert web["ts"] == 1_800_000_000
    assert (web["http_up"], web["http_status"], web["dns_ok"], web["tcp_ok"]) == (1, 200, 1, 1)
    assert web["http_latency_ms"] < 1000 and web["tcp_ms"] < 1000 and "dns_ms" in web
    assert slow["http_up"] == 1 and slow["http_latency_ms"] >= SLOW_S * 1000
    assert (failing["http_up"], failing["http_status"]) == (0, 500)
    assert refusing == {"ts": 1_800_000_000, "http_up": 0, "http_status": 0, "tcp_ok": 0}
    assert agent.failures == 3


def test_timeout_counts_as_down(tmp_path, targets):
    cfg = parse_config({"checks": [{"device": "yty-probe-dc", "timeout_s": 0.3,
                                    "http": {"url": f"http://127.0.0.1:{targets['slow']}/"}}]}, REGISTRY)
    (topic, payload), = ProbeAgent(cfg, REGISTRY).round(ts_s=1_800_000_000)
    assert topic == "laocai/y_ty/service_probe/yty-probe-dc"
    assert orjson.loads(payload) == {"ts": 1_800_000_000, "http_up": 0, "http_status": 0}


@pytest.mark.parametrize("data, message", [
    ({"checks": [{"device": "nope-probe", "dns": {"name": "x"}}]}, "'nope-probe' is not in the site registry"),
    ({"checks": [{"device": "yty-router", "dns": {"name": "x"}}]}, "'yty-router' is a commune_router, not a service_probe"),
    ({"checks": [{"device": "yty-probe-dc"}]}, "asks for nothing"),
    ({"checks": [{"device": "yty-probe-dc", "http": {"url": "ftp://x/"}}]}, "not an http:// or https:// URL"),
    ({"checks": [{"device": "yty-probe-dc", "http": {"url": "http://x/", "method": "POST"}}]}, "use GET or HEAD"),
    ({"checks": [{"device": "yty-probe-dc", "tcp": {"host": "x", "port": 70000}}]}, "checks.0.tcp.port"),
    ({"checks": [{"device": "yty-probe-dc", "dns": {"name": "x"}, "icmp": True}]}, "checks.0.icmp: Extra inputs"),
    ({"checks": [{"device": "yty-probe-dc", "dns": {"name": "a"}}, {"device": "yty-probe-dc", "dns": {"name": "b"}}]},
     "has two checks"),
    ({"checks": []}, "checks: List should have at least 1 item"),
])
def test_bad_config_names_what_is_wrong(data, message):
    with pytest.raises(ProbeConfigError) as err:
        parse_config(data, REGISTRY, "probe.yaml")
    assert message in str(err.value) and "probe.yaml" in str(err.value)


@pytest.mark.servers
def test_probes_through_mqtt_raise_the_right_incidents(tmp_path, targets, mosquitto):
    agent = ProbeAgent(load_config(_config(tmp_path, targets), REGISTRY), REGISTRY)
    store = SQLiteStore(tmp_path / "t.sqlite", REGISTRY)
    settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{mosquitto.port}", mqtt_client_id=f"c-{uuid.uuid4().hex[:8]}",
                        batch_size=50, batch_ms=50)
    collector = Collector(settings, REGISTRY, store)
    collector.start()
    wait_for(lambda: collector.stats.snapshot()["connected"], 10, "collector connected")
    time.sleep(0.3)  # subscriptions acknowledged before anything is published
    pub = MqttPublisher("127.0.0.1", mosquitto.port, client_id=f"probe-{uuid.uuid4().hex[:8]}")
    t0 = (int(time.time()) - 3600) // 60 * 60  # on the detector's one-minute grid, an hour ago
    try:
        for r in range(4):
            for topic, payload in agent.round(ts_s=t0 + 60 * r):
                pub.publish(topic, payload)
        pub.flush(10)
        wait_for(lambda: collector.stats.snapshot()["readings_stored"] >= 16, 15, "16 probe readings stored")
    finally:
        pub.close()
        collector.stop()
    assert collector.stats.snapshot()["quarantined"] == 0

    # Detect over the probe devices only (the rest of the province sent nothing and would be silent).
    probes = {d.id: dataclasses.replace(d, uplink=None, power=None) for d in REGISTRY.devices_of("service_probe")}
    registry = dataclasses.replace(REGISTRY, devices=probes)
    incidents = IncidentStore(tmp_path / "i.sqlite")
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    hook.got = []
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    rules = parse_rules({"channels": {"ioc": {"type": "webhook", "url": f"http://127.0.0.1:{hook.server_address[1]}/",
                                              "secret_env": "HOOK_SECRET"}},
                         "rules": [{"name": "all", "severity": "warning", "channels": ["ioc"]}]})
    notifier = Notifier(rules, str(tmp_path / "i.sqlite"), {"ioc": "k"}, registry=REGISTRY)
    # The detector evaluates up to the newest reading (t0+180) plus its slack, less the profile's jitter:
    # the grid columns t0 and t0+60 are complete, two failed rounds in a row (the profile's for_s: 60).
    now_ns = (t0 + 240) * 10**9
    DetectionService(registry, store, incidents, clock=lambda: now_ns).cycle()
    found = {(i.site, i.evidence.get("field"), i.severity): i for i in incidents.open_incidents()}
    assert set(found) == {
        ("sa_pa_ward", "http_up", "critical"),  # 500
        ("bac_ha_town", "http_up", "critical"),  # refused
        ("bac_ha_town", "tcp_ok", "critical"),
        ("y_ty", "http_latency_ms", "warning"),  # slow
    }, [i.title for i in incidents.all()]
    assert found[("sa_pa_ward", "http_up", "critical")].device == "sapa-probe-dvc"
    assert found[("y_ty", "http_latency_ms", "warning")].evidence["value"] >= SLOW_S * 1000
    assert not any(i.device == "dc-probe-web" or i.site == "dc_laocai" for i in incidents.all())
    assert all(i.started_ns == t0 * 10**9 for i in found.values())  # failing since the first round

    # The engineer on duty hears about it: one message, the four incidents in it.
    try:
        assert notifier.step(now_ns + 31 * 10**9) == 1
    finally:
        hook.shutdown()
        hook.server_close()
        notifier.close()
    (body,) = hook.got
    assert sorted(c["incident"]["site"] for c in body["changes"]) == ["bac_ha_town", "bac_ha_town", "sa_pa_ward", "y_ty"]
    store.close()
    incidents.close()


def test_the_shipped_example_loads():
    cfg = load_config(Path(__file__).resolve().parents[1] / "deploy/probe.example.yaml", REGISTRY)
    assert {c.device for c in cfg.checks} == {d.id for d in REGISTRY.devices_of("service_probe")}


def test_cli_once_prints_a_round_and_refuses_a_bad_config(tmp_path, targets, capsys):
    from fansipan.cli import main

    assert main(["probe", "--config", _config(tmp_path, targets), "--once"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and any(ln.startswith("laocai/sa_pa_ward/service_probe/sapa-probe-dvc ") and '"http_status":500' in ln
                                   for ln in lines)
    bad = tmp_path / "bad.yaml"
    bad.write_text("checks:\n  - device: nope\n    dns: {name: x}\n", encoding="utf-8")
    assert main(["probe", "--config", str(bad)]) == 2
    assert "'nope' is not in the site registry" in capsys.readouterr().err


@pytest.mark.servers
def test_per_device_accounts_publish_on_a_broker_with_the_generated_acl(tmp_path, targets):
    """Each probe device may write only its own topic: --credentials gives each its own connection."""
    import os
    import pwd
    import shutil
    import tempfile
    from pathlib import Path
    from types import SimpleNamespace

    import servers

    from fansipan.mqtt_security import write_acl
    from probe.run import _publishers, read_credentials

    if os.environ.get("FANSIPAN_SKIP_SERVERS") == "1":
        pytest.skip("FANSIPAN_SKIP_SERVERS=1")
    d = Path(tempfile.mkdtemp(prefix="fansipan-probe-acl-"))  # pytest's tmp root is private to root
    d.chmod(0o755)
    try:
        paths = write_acl(REGISTRY, d / "conf", environ={})
        if os.geteuid() == 0:  # as in production, the broker's user owns its password and ACL files
            pw = pwd.getpwnam("mosquitto")
            for p in (paths.out_dir, paths.passwd, paths.acl):
                os.chown(p, pw.pw_uid, pw.pw_gid)
        broker = servers.start_mosquitto(d, persistence=False, anonymous=False,
                                         extra_conf=f"password_file {paths.passwd}\nacl_file {paths.acl}\n")
        try:
            agent = ProbeAgent(load_config(_config(tmp_path, targets), REGISTRY), REGISTRY)
            settings = Settings(mqtt_url=f"mqtt://127.0.0.1:{broker.port}")
            args = SimpleNamespace(client_id="probe-test", credentials=str(paths.device_credentials))
            pubs = _publishers(settings, args, agent.topics)
            readings = agent.round(ts_s=time.time())
            for topic, payload in readings:
                pubs[topic].publish(topic, payload)
            for p in pubs.values():
                assert p.flush(10)
            assert len({id(p) for p in pubs.values()}) == 4
            assert [(p.acked, p.refused) for p in pubs.values()] == [(1, 0)] * 4

            # One device's account publishing for another probe device is refused by the broker.
            user, password = read_credentials(paths.device_credentials, ["dc-probe-web"])["dc-probe-web"]
            shared = _publishers(Settings(mqtt_url=f"mqtt://127.0.0.1:{broker.port}", mqtt_username=user,
                                          mqtt_password=password), SimpleNamespace(client_id="p2", credentials=None),
                                 agent.topics)
            pub = next(iter(shared.values()))
            for topic, payload in readings:
                pub.publish(topic, payload)
            pub.close(10)
            assert pub.refused == 3
        finally:
            for p in pubs.values():
                p.close(5)
            broker.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_credentials_file_must_cover_every_probe_device(tmp_path):
    from probe.run import read_credentials

    f = tmp_path / "c.csv"
    f.write_text("device,kind,site,username,password,topic\nyty-probe-dc,service_probe,y_ty,yty-probe-dc,pw,t\n")
    assert read_credentials(f, ["yty-probe-dc"]) == {"yty-probe-dc": ("yty-probe-dc", "pw")}
    with pytest.raises(ProbeConfigError, match="no credentials for sapa-probe-dvc; regenerate it"):
        read_credentials(f, ["yty-probe-dc", "sapa-probe-dvc"])
    f.write_text("a,b\n1,2\n")
    with pytest.raises(ProbeConfigError, match="not a device credentials file"):
        read_credentials(f, ["yty-probe-dc"])
