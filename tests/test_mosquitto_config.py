"""The Mosquitto configs in deploy/mosquitto: their limits against the collector's, and the production
config run on a real mosquitto (only its listener and file paths changed): authentication, the ACL,
the in-flight window and a queue that survives a broker restart, with the shipped settings.

compose.yaml, .env.example and the Dockerfile are in test_compose.py.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import servers
from test_compose import (
    ACL_EXAMPLE,
    DEFAULT_BATCH_SIZE,
    MESSAGES_PER_DEVICE_PER_S,
    MOSQUITTO_CONF,
    MOSQUITTO_DEV_CONF,
    OUTAGE_S,
    PAHO_MAX_UNACKED,
    PROVINCE_DEVICES,
    compose_code,
    environment,
    one,
    parse_mosquitto_conf,
    services,
    shell_of,
)

# ---------------------------------------------------------------------- Mosquitto configs


def test_broker_config_limits_fit_the_collector():
    conf = parse_mosquitto_conf(MOSQUITTO_CONF)
    inflight = int(one(conf, "max_inflight_messages"))
    assert DEFAULT_BATCH_SIZE <= inflight < PAHO_MAX_UNACKED, (
        f"max_inflight_messages {inflight}: the collector acknowledges a batch of {DEFAULT_BATCH_SIZE} "
        "only after writing it, so the window must hold at least one batch"
    )
    batch_in_compose = re.match(r"\$\{FANSIPAN_BATCH_SIZE:-(\d+)\}$", environment(services()["collector"])["FANSIPAN_BATCH_SIZE"])
    assert batch_in_compose and int(batch_in_compose.group(1)) <= inflight
    queued = int(one(conf, "max_queued_messages"))
    assert queued >= PROVINCE_DEVICES * MESSAGES_PER_DEVICE_PER_S * OUTAGE_S, "the queue must ride out an hour's outage"
    queued_bytes = int(one(conf, "max_queued_bytes"))
    assert queued_bytes == 0 or queued_bytes >= queued * 100, "the byte bound must not cut the message bound short"
    assert one(conf, "persistence") == "true"
    assert one(conf, "persistence_location")
    assert int(one(conf, "autosave_interval")) <= 300
    assert re.fullmatch(r"\d+[hdwmy]", one(conf, "persistent_client_expiration"))
    assert one(conf, "allow_anonymous") == "false"
    assert one(conf, "password_file") and one(conf, "acl_file")
    assert conf["listener"] == ["1883"]


def test_dev_config_is_loopback_only_with_the_same_delivery_limits():
    dev = parse_mosquitto_conf(MOSQUITTO_DEV_CONF)
    prod = parse_mosquitto_conf(MOSQUITTO_CONF)
    assert all(v.split()[1:] == ["127.0.0.1"] for v in dev["listener"]), dev["listener"]
    assert one(dev, "allow_anonymous") == "true"
    for key in ("max_inflight_messages", "max_queued_messages", "max_queued_bytes", "max_packet_size"):
        assert one(dev, key) == one(prod, key), key


def test_acl_example_grants_least_privilege():
    lines = [ln.split() for ln in ACL_EXAMPLE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert lines[0][0] == "user", "no rules for anonymous clients"
    user, rules = None, {}
    for words in lines:
        if words[0] == "user":
            user = words[1]
        else:
            rules.setdefault(user if words[0] == "topic" else "%pattern", []).append(words[1:])
    assert rules["fansipan.collector"] == [["read", "laocai/#"]]
    assert rules["fansipan.healthcheck"] == [["read", "$SYS/broker/uptime"]]
    assert rules["%pattern"] == [["write", "laocai/+/+/%u/#"]]
    default_user = re.search(r"\$\{FANSIPAN_MQTT_USERNAME:-([^}]+)\}", compose_code())
    assert default_user and default_user.group(1) in rules


# ------------------------------------------------- the production config on a real broker

PASSWORDS = {name: secrets.token_hex(8) for name in ("fansipan.collector", "fansipan.healthcheck", "aq-0001")}


def production_conf_for_test(text: str, port: int, d: Path) -> str:
    """The shipped config with only the listener and file paths changed."""
    replacements = [
        (r"^listener 1883$", f"listener {port} 127.0.0.1"),
        (r"^password_file /mosquitto/config/passwd$", f"password_file {d / 'passwd'}"),
        (r"^acl_file /mosquitto/config/acl$", f"acl_file {d / 'acl'}"),
        (r"^persistence_location /mosquitto/data/$", f"persistence_location {d / 'data'}/"),
    ]
    for pattern, new in replacements:
        text, n = re.subn(pattern, new, text, flags=re.M)
        assert n == 1, f"mosquitto.conf: expected one line matching {pattern}"
    return text


@pytest.fixture(scope="module")
def broker():
    """The production mosquitto.conf on 127.0.0.1, with passwd and acl files as the docs say."""
    if os.environ.get("FANSIPAN_SKIP_SERVERS") == "1":
        pytest.skip("FANSIPAN_SKIP_SERVERS=1")
    binary = servers.find_binary("mosquitto", "mosquitto", "/usr/sbin")
    passwd_tool = servers.find_binary("mosquitto_passwd", "mosquitto", "/usr/sbin")
    servers.find_binary("mosquitto_sub", "mosquitto-clients")
    # Not pytest's tmp_path: that is private to root, and a root-started broker drops to
    # the mosquitto user before it reads the password file.
    d = Path(tempfile.mkdtemp(prefix="fansipan-broker-"))
    d.chmod(0o755)
    try:
        (d / "data").mkdir()
        shutil.copy(ACL_EXAMPLE, d / "acl")
        for i, (user, password) in enumerate(PASSWORDS.items()):
            subprocess.run([passwd_tool, *(["-c"] if i == 0 else []), "-b", str(d / "passwd"), user, password],
                           check=True, capture_output=True, timeout=30)
        if os.geteuid() == 0:  # as deploy/mosquitto/mosquitto.conf says: owned by the broker's user, 0600
            pw = pwd.getpwnam("mosquitto")
            for p in ("data", "passwd", "acl"):
                os.chown(d / p, pw.pw_uid, pw.pw_gid)
        (d / "passwd").chmod(0o600)
        port = servers.free_port()
        conf = d / "mosquitto.conf"
        conf.write_text(production_conf_for_test(MOSQUITTO_CONF.read_text(), port, d))
        server = servers.Server("mosquitto", [binary, "-c", str(conf)], d, port, f"mqtt://127.0.0.1:{port}",
                                lambda: servers._tcp_ok(port))
        server.start()
        yield server
        server.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def mqtt_client(client_id: str, user: str | None, *, clean_session: bool = True, manual_ack: bool = False):
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                    clean_session=clean_session, manual_ack=manual_ack)
    if user:
        c.username_pw_set(user, PASSWORDS[user])
    c.received = []
    c.on_message = lambda _c, _u, m: c.received.append(m.topic)
    c.max_queued_messages_set(0)
    return c


def connect(c, port: int) -> None:
    result = {}
    c.on_connect = lambda _c, _u, _f, rc, _p: result.setdefault("rc", rc)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    deadline = time.monotonic() + 5
    while "rc" not in result and time.monotonic() < deadline:
        time.sleep(0.02)
    if result.get("rc") is None or result["rc"].is_failure:
        c.loop_stop()
        raise ConnectionRefusedError(str(result.get("rc")))


def subscribe(c, topic: str) -> None:
    done = []
    c.on_subscribe = lambda _c, _u, _mid, rcs, _p: done.append(rcs)
    c.subscribe(topic, qos=1)
    deadline = time.monotonic() + 5
    while not done and time.monotonic() < deadline:
        time.sleep(0.02)
    assert done, f"no SUBACK for {topic}"


def publish_as_device(port: int, topics: list[str]) -> None:
    dev = mqtt_client("aq-0001", "aq-0001")
    connect(dev, port)
    try:
        infos = [dev.publish(t, b'{"pm25": 12.5}', qos=1) for t in topics]
        for info in infos:
            info.wait_for_publish(30)
    finally:
        dev.disconnect()
        dev.loop_stop()


def wait_for(pred, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred() and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.servers
def test_broker_refuses_anonymous_and_wrong_passwords(broker):
    with pytest.raises(ConnectionRefusedError):
        connect(mqtt_client("anon", None), broker.port)
    c = mqtt_client("bad", "fansipan.collector")
    c.username_pw_set("fansipan.collector", "not-the-password")
    with pytest.raises(ConnectionRefusedError):
        connect(c, broker.port)


@pytest.mark.servers
def test_broker_healthcheck_command_from_compose_works(broker):
    cmd = shell_of(services()["mosquitto"]["healthcheck"]["test"])
    cmd = cmd.replace("-p 1883", f"-p {broker.port}")
    env = {"PATH": os.environ["PATH"], "MOSQUITTO_HEALTHCHECK_PASSWORD": PASSWORDS["fansipan.healthcheck"]}
    ok = subprocess.run(["/bin/sh", "-c", cmd], env=env, capture_output=True, text=True, timeout=20)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    wrong = subprocess.run(["/bin/sh", "-c", cmd], env={**env, "MOSQUITTO_HEALTHCHECK_PASSWORD": "nope"},
                           capture_output=True, timeout=20)
    assert wrong.returncode != 0


@pytest.mark.servers
def test_acl_devices_publish_only_as_themselves_and_the_collector_reads_through_a_share(broker):
    col = mqtt_client("test-acl-collector", "fansipan.collector")
    connect(col, broker.port)
    try:
        subscribe(col, "$share/fansipan/laocai/#")
        subscribe(col, "$SYS/broker/uptime")  # granted by mosquitto 2.0, but nothing is delivered
        publish_as_device(broker.port, [
            "laocai/y_ty/air_quality/aq-0001",
            "laocai/y_ty/air_quality/aq-0001/status",
            "laocai/y_ty/air_quality/aq-0002",  # another device's topic: dropped
            "elsewhere/aq-0001",  # outside laocai/: dropped
        ])
        wait_for(lambda: len(col.received) >= 2, 5)
        time.sleep(0.5)
        assert sorted(col.received) == ["laocai/y_ty/air_quality/aq-0001", "laocai/y_ty/air_quality/aq-0001/status"]
    finally:
        col.disconnect()
        col.loop_stop()


@pytest.mark.servers
def test_inflight_window_is_the_configured_value(broker):
    """A 3.1.1 subscriber that never acknowledges gets exactly max_inflight_messages, then nothing more."""
    window = int(one(parse_mosquitto_conf(MOSQUITTO_CONF), "max_inflight_messages"))
    col = mqtt_client("test-window", "fansipan.collector", manual_ack=True)
    connect(col, broker.port)
    try:
        subscribe(col, "laocai/+/window/#")
        publish_as_device(broker.port, [f"laocai/s/window/aq-0001/{i % 10}" for i in range(window + 500)])
        wait_for(lambda: len(col.received) >= window, 60)
        time.sleep(1.0)
        assert len(col.received) == window
    finally:
        col.disconnect()
        col.loop_stop()


@pytest.mark.servers
def test_queue_for_an_offline_collector_survives_a_broker_restart(broker):
    n = 3_000  # more than mosquitto's default queue limit of 1,000
    col = mqtt_client("test-queue", "fansipan.collector", clean_session=False)
    connect(col, broker.port)
    subscribe(col, "laocai/+/queue/#")
    col.disconnect()
    col.loop_stop()

    publish_as_device(broker.port, [f"laocai/s/queue/aq-0001/{i % 10}" for i in range(n)])
    broker.stop()  # SIGTERM: mosquitto writes its snapshot
    broker.start()

    col = mqtt_client("test-queue", "fansipan.collector", clean_session=False)
    connect(col, broker.port)
    try:
        wait_for(lambda: len(col.received) >= n, 30)
        assert len(col.received) == n
    finally:
        col.disconnect()
        col.loop_stop()
