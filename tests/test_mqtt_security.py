"""MQTT security against a real mosquitto 2.0: per-device credentials and ACLs.

The broker runs with ``allow_anonymous false`` and the ``passwd`` and ``acl``
files that ``fansipan mqtt-acl`` (fansipan/mqtt_security.py) writes for the
shipped registry:

* a device publishes to its own topic and the collector gets it (plain and $share);
* a device publishing to another device's topic, another kind or site, or a
  sub-topic of its own, is dropped (mosquitto says nothing to an MQTT 3.1.1
  client; MQTT 5 clients get PUBACK 0x87), while a control message gets through;
* a device reads nothing, not even its own topic;
* wrong passwords, unknown users and anonymous clients are refused;
* re-running keeps passwords, rotation changes them, files are 0600, and a
  rotated password kicks the connected client once the broker gets SIGHUP.

TLS is in test_mqtt_tls.py; the clients and brokers both use are in mqtt_clients.py.
"""


import dataclasses
import os
import shutil
import signal
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest
import servers
from mqtt_clients import (
    COLLECTOR,
    REGISTRY,
    SILENCE_S,
    Client,
    _private_dir,
    _skip_without_servers,
    broker_with,
    read_credentials,
    refused,
)

from fansipan import mqtt_security
from fansipan.mqtt_security import (
    HEALTHCHECK,
    check_password,
    device_topic,
    mosquitto_hash,
    write_acl,
)

pytestmark = pytest.mark.servers



# ---------------------------------------------------------------- the broker with the generated ACL


@pytest.fixture(scope="module")
def acl_broker():
    _skip_without_servers()
    d = _private_dir("fansipan-acl-")
    try:
        paths = write_acl(REGISTRY, d / "conf", environ={})
        server = broker_with(d, paths)
        yield server, read_credentials(paths)
        server.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


def two_devices(same_kind_and_site: bool):
    """(a device, another device) of the same kind at the same site, or of another kind at another site."""
    devs = sorted(REGISTRY.devices.values(), key=lambda d: d.id)
    a = next(d for d in devs if any((d.kind, d.site) == (o.kind, o.site) and o.id != d.id for o in devs))
    for b in devs:
        if b.id == a.id:
            continue
        if same_kind_and_site and (a.kind, a.site) == (b.kind, b.site):
            return a.id, b.id
        if not same_kind_and_site and a.kind != b.kind and a.site != b.site:
            return a.id, b.id
    raise AssertionError("the registry has no such pair")


@pytest.fixture()
def collector(acl_broker):
    server, creds = acl_broker
    c = Client(server.port, COLLECTOR, creds[COLLECTOR])
    assert not c.connack.is_failure, c.connack
    c.subscribe("laocai/#")
    yield c
    c.close()


def test_a_device_publishes_to_its_own_topic_and_the_collector_gets_it(acl_broker, collector):
    server, creds = acl_broker
    dev, _ = two_devices(True)
    shared = Client(server.port, COLLECTOR, creds[COLLECTOR])
    kind = REGISTRY.kinds[REGISTRY.devices[dev].kind]
    shared.subscribe(f"$share/fansipan/{kind.subscription}")  # several collectors splitting the stream
    health = Client(server.port, HEALTHCHECK.name, creds[HEALTHCHECK.name])
    health.subscribe("$SYS/broker/uptime")
    health.subscribe("laocai/#")  # the health check reads the uptime and nothing else
    device = Client(server.port, dev, creds[dev])
    try:
        assert not device.connack.is_failure
        rc = device.publish(device_topic(REGISTRY, dev), b'{"ok": 1}')
        assert not rc.is_failure
        assert collector.first(3) == [(device_topic(REGISTRY, dev), b'{"ok": 1}')]
        assert shared.first(3) == [(device_topic(REGISTRY, dev), b'{"ok": 1}')]
        got = health.first(3)
        assert got and {t for t, _ in got} == {"$SYS/broker/uptime"}, got
    finally:
        for c in (shared, health, device):
            c.close()


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["mqtt5", "mqtt311"])
def test_a_device_cannot_publish_as_another_device_kind_or_site(acl_broker, collector, protocol):
    server, creds = acl_broker
    dev, neighbour = two_devices(True)  # same kind, same site
    _, elsewhere = two_devices(False)
    own = device_topic(REGISTRY, dev)
    forged = [
        device_topic(REGISTRY, neighbour),  # a neighbour's topic
        device_topic(REGISTRY, elsewhere),  # another kind at another site
        own.replace(f"/{REGISTRY.devices[dev].kind}/", f"/{REGISTRY.devices[elsewhere].kind}/"),  # itself as another kind
        own.replace(f"/{REGISTRY.devices[dev].site}/", f"/{REGISTRY.devices[elsewhere].site}/"),  # itself at another site
        own + "/status",  # below its own topic
        "fansipan/commands",  # outside the telemetry tree
    ]
    device = Client(server.port, dev, creds[dev], protocol=protocol)
    try:
        t0 = time.monotonic()
        for topic in forged:
            rc = device.publish(topic, b"forged")
            if protocol == mqtt.MQTTv5:
                assert rc.is_failure and rc.value == 0x87, (topic, rc)  # "Not authorized" in the PUBACK
            # MQTT 3.1.1 has no way to say no: a normal PUBACK, and the message is gone.
        assert not device.publish(own, b"control").is_failure
        got = collector.received(max(0.0, SILENCE_S - (time.monotonic() - t0)) + 0.5)
        assert got == [(own, b"control")], got
    finally:
        device.close()


def test_a_sparkplug_edge_node_speaks_in_its_own_namespace_and_hears_its_commands(acl_broker):
    """Sparkplug B on the secured broker: an edge node publishes its births and data (and its devices'),
    not another node's; the collector reads the group and sends the node a rebirth command; a device
    that is not a Sparkplug edge node cannot publish in the namespace at all."""
    server, creds = acl_broker
    nodes = sorted(d for d, dev in REGISTRY.devices.items() if REGISTRY.kinds[dev.kind].format == "sparkplug_b"
                   and mqtt_security.sparkplug_rules(REGISTRY, d))
    assert len(nodes) >= 2, "the shipped registry has two Sparkplug edge nodes"
    node, other = nodes[:2]
    group = REGISTRY.kinds[REGISTRY.devices[node].kind].sparkplug.group
    plain = next(d for d, dev in REGISTRY.devices.items() if REGISTRY.kinds[dev.kind].format == "json")
    host = Client(server.port, COLLECTOR, creds[COLLECTOR])
    host.subscribe(f"spBv1.0/{group}/#")
    edge = Client(server.port, node, creds[node])
    edge.subscribe(f"spBv1.0/{group}/NCMD/{node}")
    stranger = Client(server.port, plain, creds[plain])
    try:
        assert not edge.publish(f"spBv1.0/{group}/NBIRTH/{node}", b"birth").is_failure
        assert not edge.publish(f"spBv1.0/{group}/DDATA/{node}/some-device", b"ddata").is_failure
        assert edge.publish(f"spBv1.0/{group}/NDATA/{other}", b"forged").value == 0x87  # another node's
        assert edge.publish(f"spBv1.0/{group}/NCMD/{other}", b"forged").value == 0x87  # commands are the host's
        assert stranger.publish(f"spBv1.0/{group}/NBIRTH/{plain}", b"forged").value == 0x87
        got = host.received(SILENCE_S)
        assert got == [(f"spBv1.0/{group}/NBIRTH/{node}", b"birth"),
                       (f"spBv1.0/{group}/DDATA/{node}/some-device", b"ddata")], got
        assert not host.publish(f"spBv1.0/{group}/NCMD/{node}", b"rebirth").is_failure
        assert edge.first(3) == [(f"spBv1.0/{group}/NCMD/{node}", b"rebirth")]
        assert not host.publish(f"spBv1.0/STATE/{COLLECTOR}", b"online").is_failure
    finally:
        for c in (host, edge, stranger):
            c.close()


def test_a_device_reads_nothing(acl_broker, collector):
    server, creds = acl_broker
    dev, neighbour = two_devices(True)
    spy = Client(server.port, dev, creds[dev])
    talker = Client(server.port, neighbour, creds[neighbour])
    try:
        subacks = {t: spy.subscribe(t) for t in ("laocai/#", device_topic(REGISTRY, neighbour),
                                                  device_topic(REGISTRY, dev), "#", "$SYS/#")}
        # mosquitto 2.0.11 grants every SUBSCRIBE (QoS 1) and filters deliveries instead; a later
        # broker may refuse at SUBSCRIBE. Either way the device must get nothing.
        assert all(len(rcs) == 1 for rcs in subacks.values())
        talker.publish(device_topic(REGISTRY, neighbour), b"neighbour")
        spy.publish(device_topic(REGISTRY, dev), b"own")  # not even its own topic echoes back
        assert sorted(p for _, p in collector.received(SILENCE_S)) == [b"neighbour", b"own"]  # control
        assert spy.received(0.2) == []
    finally:
        spy.close()
        talker.close()


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311], ids=["mqtt5", "mqtt311"])
def test_wrong_passwords_unknown_users_and_anonymous_are_refused(acl_broker, protocol):
    server, creds = acl_broker
    dev, neighbour = two_devices(True)
    cases = {
        "wrong password": (dev, creds[dev] + "x"),
        "another device's password": (dev, creds[neighbour]),
        "empty password": (dev, ""),
        "no password": (dev, None),
        "unknown user": ("ghost-device", creds[dev]),
        "the collector without its password": (COLLECTOR, creds[dev]),
        "anonymous": (None, None),
    }
    for why, (user, password) in cases.items():
        rc = refused(server.port, user, password, protocol)
        assert rc is not None and rc.is_failure, why
        # what the collector looks for to hint at FANSIPAN_MQTT_USERNAME / _PASSWORD
        assert "authori" in str(rc).lower() or "password" in str(rc).lower(), (why, str(rc))
    ok = Client(server.port, dev, creds[dev], protocol=protocol)
    assert not ok.connack.is_failure
    ok.close()


def test_use_username_as_clientid_keeps_a_device_off_the_collectors_session():
    """Client ids are not tied to accounts: without ``use_username_as_clientid true``, any device
    password can connect as the collector's client id, take over its persistent session and so
    drop what is queued for it (measured on 2.0.11: the queued messages are delivered to the
    device's connection, refused by the ACL, and gone). With it, the broker keys sessions by account."""
    _skip_without_servers()
    d = _private_dir("fansipan-cid-")
    try:
        paths = write_acl(REGISTRY, d / "conf", environ={})
        server = broker_with(d, paths, "use_username_as_clientid true")
        try:
            creds = read_credentials(paths)
            attacker, talker = two_devices(True)
            col = Client(server.port, COLLECTOR, creds[COLLECTOR], client_id="fansipan-collector", session_expiry_s=600)
            col.subscribe("laocai/#")
            col.close()  # away: the broker queues for it
            t = Client(server.port, talker, creds[talker])
            for i in range(3):
                t.publish(device_topic(REGISTRY, talker), b"q%d" % i)
            t.close()
            evil = Client(server.port, attacker, creds[attacker], client_id="fansipan-collector", session_expiry_s=600)
            assert not evil.connack.is_failure
            evil.close()
            col = Client(server.port, COLLECTOR, creds[COLLECTOR], client_id="fansipan-collector", session_expiry_s=600)
            try:
                assert [p for _, p in col.first(3)] == [b"q0", b"q1", b"q2"]
                evil = Client(server.port, attacker, creds[attacker], client_id="fansipan-collector")
                evil.close()
                assert not col.disconnected.wait(0.5), "a device account kicked the collector off"
            finally:
                col.close()
        finally:
            server.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ----------------------------------------------------------------------- files, reruns, rotation


def test_rerun_keeps_passwords_rotate_changes_them_and_files_are_private(tmp_path):
    out = tmp_path / "mq"
    first = write_acl(REGISTRY, out, environ={})
    for p in (first.passwd, first.acl, first.device_credentials, *first.service_credentials.values()):
        assert p.stat().st_mode & 0o777 == 0o600, p
    assert set(first.service_credentials) == {COLLECTOR, HEALTHCHECK.name}
    assert len(first.added) == len(REGISTRY.devices) + 2 and not first.rotated
    creds = read_credentials(first)
    assert len(set(creds.values())) == len(creds) == len(REGISTRY.devices) + 2
    assert all(len(p) == 32 for p in creds.values())  # secrets.token_urlsafe(24)
    hashes = dict(line.split(":", 1) for line in first.passwd.read_text().splitlines())
    assert set(hashes) == set(creds)
    assert all(check_password(creds[u], h) and not check_password(creds[u] + "x", h) for u, h in hashes.items())

    again = write_acl(REGISTRY, out, environ={})
    assert read_credentials(again) == creds and not again.added and not again.rotated

    # a device added to the registry: it gets a password, nobody else's changes; one removed loses its account
    dev_ids = sorted(REGISTRY.devices)
    smaller = dataclasses.replace(REGISTRY, devices={k: REGISTRY.devices[k] for k in dev_ids[1:]})
    shrunk = write_acl(smaller, out, environ={})
    assert shrunk.removed == (dev_ids[0],) and dev_ids[0] not in read_credentials(shrunk)
    grown = write_acl(REGISTRY, out, environ={})
    new = read_credentials(grown)
    assert grown.added == (dev_ids[0],) and new[dev_ids[0]] != creds[dev_ids[0]]
    assert {u: p for u, p in new.items() if u != dev_ids[0]} == {u: p for u, p in creds.items() if u != dev_ids[0]}
    creds = new

    one = write_acl(REGISTRY, out, rotate={dev_ids[5]}, environ={})
    after = read_credentials(one)
    assert one.rotated == (dev_ids[5],) and after[dev_ids[5]] != creds[dev_ids[5]]
    assert sum(after[u] != creds[u] for u in creds) == 1

    rotated = write_acl(REGISTRY, out, rotate=True, environ={})
    after_all = read_credentials(rotated)
    assert all(after_all[u] != after[u] for u in after)
    assert len(rotated.rotated) == len(after)

    # a service password from the environment wins, and is not written to a file
    env = write_acl(REGISTRY, tmp_path / "env", environ={"FANSIPAN_MQTT_PASSWORD": "p" * 30,
                                                         "MOSQUITTO_HEALTHCHECK_PASSWORD": "h" * 30})
    assert env.from_env == {COLLECTOR: "FANSIPAN_MQTT_PASSWORD", HEALTHCHECK.name: "MOSQUITTO_HEALTHCHECK_PASSWORD"}
    assert not env.service_credentials and not (tmp_path / "env" / "collector-credentials").exists()
    line = next(x for x in env.passwd.read_text().splitlines() if x.startswith(COLLECTOR + ":"))
    assert check_password("p" * 30, line.split(":", 1)[1])
    # ... unless it names another account
    other = write_acl(REGISTRY, tmp_path / "other", environ={"FANSIPAN_MQTT_USERNAME": "someone.else",
                                                             "FANSIPAN_MQTT_PASSWORD": "p" * 30})
    assert COLLECTOR in other.service_credentials
    with pytest.raises(ValueError, match="CHANGE_ME"):
        write_acl(REGISTRY, tmp_path / "bad", environ={"FANSIPAN_MQTT_PASSWORD": "CHANGE_ME"})


def test_the_acl_file_grants_each_device_its_own_topics_only(tmp_path):
    paths = write_acl(REGISTRY, tmp_path, environ={})
    blocks: dict[str, list[str]] = {}
    user = None
    for line in paths.acl.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        assert not line.startswith("pattern"), "a pattern line applies to every user"
        if line.startswith("user "):
            user = line[5:]
            assert user not in blocks, f"user {user} twice"
            blocks[user] = []
        else:
            assert user is not None, "a topic line before the first user line applies to anonymous clients"
            blocks[user].append(line)
    assert blocks.pop(COLLECTOR) == ["topic read laocai/#", "topic read spBv1.0/laocai/#",
                                     "topic write spBv1.0/laocai/NCMD/+", "topic write spBv1.0/laocai/DCMD/+/+",
                                     "topic readwrite spBv1.0/STATE/+"]
    assert blocks.pop(HEALTHCHECK.name) == ["topic read $SYS/broker/uptime"]
    assert set(blocks) == set(REGISTRY.devices)
    nodes = []
    for dev, rules in blocks.items():
        assert rules[0] == f"topic write {device_topic(REGISTRY, dev)}"
        if len(rules) > 1:  # a Sparkplug B edge node: its own namespace, nothing of another node's
            nodes.append(dev)
            assert all(r.endswith(f"/{dev}") or r.endswith(f"/{dev}/+") or r == "topic read spBv1.0/STATE/+"
                       for r in rules[1:]), rules
    assert nodes and all(REGISTRY.kinds[REGISTRY.devices[n].kind].format == "sparkplug_b" for n in nodes)


def test_password_hashes_are_what_mosquitto_passwd_writes(tmp_path):
    tool = servers.find_binary("mosquitto_passwd", "mosquitto", "/usr/sbin")
    f = tmp_path / "passwd"
    subprocess.run([tool, "-c", "-b", str(f), "someone", "s3cret pass"], check=True, capture_output=True, timeout=30)
    theirs = f.read_text().strip().split(":", 1)[1]
    assert check_password("s3cret pass", theirs) and not check_password("s3cret pas", theirs)
    _, kind, iterations, salt, _ = theirs.split("$")
    import base64
    ours = mosquitto_hash("s3cret pass", base64.b64decode(salt), int(iterations))
    assert ours == theirs  # same salt and iterations: byte for byte the same line


def test_the_command_line(tmp_path, capsys, monkeypatch):
    for var in ("FANSIPAN_MQTT_USERNAME", "FANSIPAN_MQTT_PASSWORD", "MOSQUITTO_HEALTHCHECK_PASSWORD", "FANSIPAN_PROFILES_DIR"):
        monkeypatch.delenv(var, raising=False)
    assert mqtt_security.main(["--out", str(tmp_path / "o"), "--simulator", "--extra-collector", "fansipan.collector-2"]) == 0
    out = capsys.readouterr().out
    assert "device-credentials.csv" in out and "secure" in out and "SIGHUP" in out
    assert (tmp_path / "o" / "simulator-credentials").exists()
    assert "FANSIPAN_MQTT_USERNAME=fansipan.collector-2" in (tmp_path / "o" / "fansipan.collector-2-credentials").read_text()
    acl = (tmp_path / "o" / "acl").read_text()
    assert "user fansipan.collector-2\ntopic read laocai/#\n" in acl and "user fansipan.simulator\ntopic write laocai/#\n" in acl
    dev = sorted(REGISTRY.devices)[0]
    assert mqtt_security.main(["--out", str(tmp_path / "o"), "--rotate-user", dev]) == 0
    assert "1 new passwords" in capsys.readouterr().out
    assert mqtt_security.main(["--out", str(tmp_path / "o"), "--rotate-user", "nobody"]) == 2
    if os.geteuid() == 0:
        assert mqtt_security.main(["--out", str(tmp_path / "o"), "--broker-owner", "1883:1883"]) == 0
        assert {((tmp_path / "o" / f).stat().st_uid, (tmp_path / "o" / f).stat().st_gid) for f in ("passwd", "acl")} \
            == {(1883, 1883)}
        assert (tmp_path / "o" / "device-credentials.csv").stat().st_uid == 0  # secrets stay with the operator
        # a later run as root keeps the broker's ownership
        assert mqtt_security.main(["--out", str(tmp_path / "o"), "--rotate-user", dev]) == 0
        assert (tmp_path / "o" / "passwd").stat().st_uid == 1883


def test_a_rotated_password_kicks_the_connected_device_after_sighup():
    _skip_without_servers()
    d = _private_dir("fansipan-rot-")
    try:
        paths = write_acl(REGISTRY, d / "conf", environ={})
        server = broker_with(d, paths)
        try:
            old = read_credentials(paths)
            dev = sorted(REGISTRY.devices)[3]
            victim = Client(server.port, dev, old[dev])
            bystander_id = sorted(REGISTRY.devices)[4]
            bystander = Client(server.port, bystander_id, old[bystander_id])
            assert not victim.connack.is_failure and not bystander.connack.is_failure
            new = read_credentials(write_acl(REGISTRY, d / "conf", rotate={dev}, environ={}))
            assert (paths.passwd.stat().st_uid, paths.passwd.stat().st_mode & 0o777) == \
                (paths.out_dir.stat().st_uid, 0o600), "a rewritten file keeps the owner the broker reads it as"
            server.proc.send_signal(signal.SIGHUP)
            assert victim.disconnected.wait(5), "the broker kept a client whose password changed"
            victim.close()
            assert not bystander.disconnected.is_set()
            assert refused(server.port, dev, old[dev]).is_failure
            ok = Client(server.port, dev, new[dev])
            assert not ok.connack.is_failure
            ok.close()
            bystander.close()
        finally:
            server.stop()
    finally:
        shutil.rmtree(d, ignore_errors=True)


