"""The deployment files: compose.yaml, .env.example, the Dockerfile and the Mosquitto configs.

Docker is not available here, so compose.yaml is checked two ways:

* against the Compose specification's JSON schema, shipped with check-jsonschema
  (``--builtin-schema vendor.compose-spec``); a negative test proves the check
  is not a no-op;
* by structure: secrets only as ``${VAR:?...}``, every dependency waits for
  health, every long-running service has a health check, and the health
  checks and the one-shot DBRP script actually work when run by ``sh``.

The production broker config (deploy/mosquitto/mosquitto.conf) is run on a
real mosquitto. Only its listener and file paths are changed. The tests check
authentication, the ACL, the in-flight window and a queue that survives a
broker restart, with the shipped settings.
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

import servers
from fansipan.config import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
MOSQUITTO_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto.conf"
MOSQUITTO_DEV_CONF = ROOT / "deploy" / "mosquitto" / "mosquitto-dev.conf"
ACL_EXAMPLE = ROOT / "deploy" / "mosquitto" / "acl.example"

SECRET_NAME = re.compile(r"PASSWORD|PASSWD|TOKEN|SECRET|(^|_)KEY$")
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}")
REQUIRED = re.compile(r"^\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*):\?(?P<msg>[^}]+)\}$")

# Sizing rule in mosquitto.conf: devices x messages per device per second x seconds of outage.
PROVINCE_DEVICES = 2_000
MESSAGES_PER_DEVICE_PER_S = 1 / 10
OUTAGE_S = 3_600
PAHO_MAX_UNACKED = 65_535
DEFAULT_BATCH_SIZE = Settings().batch_size  # the collector's default FANSIPAN_BATCH_SIZE
# (the collector's own window is 4 batches: ingest/collector.py max_pending)


# ----------------------------------------------------------------------------------- helpers


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def services() -> dict[str, dict]:
    return compose()["services"]


def compose_code() -> str:
    """compose.yaml without its comment lines (comments may show ${VAR:?...} as an example)."""
    return "\n".join(ln for ln in COMPOSE.read_text().splitlines() if not ln.lstrip().startswith("#"))


def interpolated_name(value: str) -> str:
    m = INTERPOLATION.fullmatch(value)
    assert m, f"expected a single ${{VAR...}}, got {value!r}"
    return m.group("name")


def check_compose_schema(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True, text=True, timeout=120,
    )


def parse_mosquitto_conf(path: Path) -> dict[str, list[str]]:
    """``option -> [values]`` (options such as listener and log_type repeat)."""
    conf: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        conf.setdefault(key, []).append(value.strip())
    return conf


def one(conf: dict[str, list[str]], key: str) -> str:
    values = conf.get(key)
    assert values and len(values) == 1, f"{key}: expected exactly one setting, found {values}"
    return values[0]


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def unescape_dollars(s: str) -> str:
    """What compose hands the container for a string with no ${VAR}: ``$$`` becomes ``$``."""
    assert "${" not in s.replace("$$", ""), f"unexpected compose interpolation in {s!r}"
    return s.replace("$$", "$")


def shell_of(test: list[str] | str) -> str:
    """The shell command of a CMD-SHELL health check."""
    assert isinstance(test, list) and test[0] == "CMD-SHELL" and len(test) == 2, test
    return unescape_dollars(test[1])


def env_example() -> tuple[dict[str, str], dict[str, str], set[str]]:
    """(assignments, the comment block just above each, every name mentioned, even commented out)."""
    values: dict[str, str] = {}
    above: dict[str, str] = {}
    mentioned: set[str] = set()
    comments: list[str] = []
    for raw in ENV_EXAMPLE.read_text().splitlines():
        line = raw.strip()
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if m:
            mentioned.add(m.group(1))
        if line.startswith("#"):
            comments.append(line)
            continue
        if line:
            name, sep, value = line.partition("=")
            assert sep, f".env.example: not NAME=value: {raw!r}"
            values[name] = value
            above[name] = "\n".join(comments)
        comments = []
    return values, above, mentioned


# ------------------------------------------------------------------------- compose: schema


def test_compose_validates_against_the_compose_spec_schema():
    r = check_compose_schema(COMPOSE)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok -- validation done" in r.stdout


def test_schema_check_rejects_a_misspelled_key(tmp_path):
    text = COMPOSE.read_text()
    assert "    healthcheck:\n" in text
    bad = tmp_path / "compose.yaml"
    bad.write_text(text.replace("    healthcheck:\n", "    helthcheck:\n", 1))
    r = check_compose_schema(bad)
    assert r.returncode != 0, "the schema check accepted a misspelled key: it is a no-op"
    assert "helthcheck" in r.stdout + r.stderr


def test_schema_check_rejects_a_wrong_type(tmp_path):
    doc = compose()
    doc["services"]["collector"]["depends_on"]["mosquitto"]["condition"] = "service_happy"
    bad = tmp_path / "compose.yaml"
    bad.write_text(yaml.safe_dump(doc))
    r = check_compose_schema(bad)
    assert r.returncode != 0
    assert "service_happy" in r.stdout + r.stderr


# ---------------------------------------------------------------------- compose: structure


def test_every_dollar_is_escaped_or_an_interpolation():
    """A bare ``$id`` in a command would be replaced by compose (with nothing), not by the shell."""
    for n, line in enumerate(COMPOSE.read_text().splitlines(), 1):
        if line.lstrip().startswith("#"):
            continue
        rest = INTERPOLATION.sub("", line.replace("$$", ""))
        assert "$" not in rest, f"compose.yaml:{n}: unescaped $ (write $$ for the shell): {line.strip()}"


def test_secrets_are_required_interpolations_never_literals():
    text = compose_code()
    seen = set()
    for m in INTERPOLATION.finditer(text):
        if SECRET_NAME.search(m.group("name")):
            seen.add(m.group("name"))
            assert m.group("op") == ":?" and m.group("arg").strip(), (
                f"${{{m.group('name')}...}} must be written ${{{m.group('name')}:?message}}: "
                "compose then refuses to start without it"
            )
    assert {"FANSIPAN_MQTT_PASSWORD", "FANSIPAN_INFLUX_TOKEN", "INFLUXDB_ADMIN_PASSWORD",
            "MOSQUITTO_HEALTHCHECK_PASSWORD"} <= seen

    for name, svc in services().items():
        for key, value in environment(svc).items():
            refs = [r.group("name") for r in INTERPOLATION.finditer(value)]
            if SECRET_NAME.search(key) or any(SECRET_NAME.search(r) for r in refs):
                assert REQUIRED.match(value), f"{name}: {key}={value!r}: a secret must be exactly ${{VAR:?message}}"

    # passwords and tokens on command lines come from the container's environment
    for m in re.finditer(r"(?:\s-P|--password|--token)\s+(\S+)", text):
        assert m.group(1).lstrip("\"'").startswith(("$$", "${")), f"literal credential on a command line: {m.group(0)}"


def test_every_dependency_waits_for_health():
    svcs = services()
    for name, svc in svcs.items():
        deps = svc.get("depends_on")
        if deps is None:
            continue
        assert isinstance(deps, dict), f"{name}: use the long depends_on form, with a condition"
        for dep, spec in deps.items():
            assert dep in svcs, f"{name} depends on an unknown service {dep}"
            if svcs[dep].get("restart") == "no":  # a one-shot job
                assert spec.get("condition") == "service_completed_successfully", (name, dep)
            else:
                assert spec.get("condition") == "service_healthy", f"{name} -> {dep}: {spec}"
                assert "healthcheck" in svcs[dep], f"{name} waits for {dep} to be healthy, which has no health check"


def test_every_long_running_service_has_a_healthcheck_and_a_restart_policy():
    for name, svc in services().items():
        restart = svc.get("restart")
        assert restart in ("no", "unless-stopped", "always", "on-failure"), f"{name}: restart {restart!r}"
        if restart == "no":
            continue
        hc = svc.get("healthcheck")
        assert hc and not hc.get("disable") and hc.get("test") and hc["test"] != ["NONE"], name
        for key in ("interval", "timeout", "retries"):
            assert key in hc, f"{name}: healthcheck without {key}"


def test_the_dbrp_job_is_one_shot_and_waits_for_influxdb():
    job = services()["influxdb-dbrp"]
    assert job["restart"] == "no"
    assert job["depends_on"] == {"influxdb": {"condition": "service_healthy"}}
    assert job["image"] == services()["influxdb"]["image"]


def test_the_collector_service():
    svc = services()["collector"]
    assert svc["build"] == "."
    assert svc["command"][0] == "collect"
    env = environment(svc)
    assert env["FANSIPAN_ENV"] == "production"
    assert env["FANSIPAN_STORE"] == "influx2"
    assert env["FANSIPAN_INFLUX_URL"] == "http://influxdb:8086"
    assert env["FANSIPAN_MQTT_URL"] == "mqtt://mosquitto:1883"
    # token/org/bucket: the same variables that initialise InfluxDB
    influx_env = environment(services()["influxdb"])
    for ours, theirs in [("FANSIPAN_INFLUX_TOKEN", "DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"),
                         ("FANSIPAN_INFLUX_ORG", "DOCKER_INFLUXDB_INIT_ORG"),
                         ("FANSIPAN_INFLUX_BUCKET", "DOCKER_INFLUXDB_INIT_BUCKET")]:
        assert interpolated_name(env[ours]) == interpolated_name(influx_env[theirs]) == ours
    # every variable is one the settings module reads (a typo would be silently ignored)
    known = {"FANSIPAN_" + f.name.upper() for f in dataclasses.fields(Settings)}
    assert set(env) <= known, f"unknown settings: {sorted(set(env) - known)}"
    assert svc.get("init") is True, "without an init, SIGTERM to PID 1 python is ignored and the batch in hand is lost"
    assert any(str(v).endswith(":/var/lib/fansipan") for v in svc["volumes"]), "a volume for the collector's state"


def test_the_collector_healthcheck_watches_the_file_its_command_touches():
    svc = services()["collector"]
    cmd = svc["command"]
    heartbeat = cmd[cmd.index("--heartbeat-file") + 1]
    assert heartbeat == "/tmp/fansipan-collector.alive"
    assert heartbeat in shell_of(svc["healthcheck"]["test"])


def test_the_collector_healthcheck_runs(tmp_path):
    """The health check, as the container's /bin/sh runs it: fresh file ok; stale or missing file fails."""
    alive = tmp_path / "alive"
    cmd = shell_of(services()["collector"]["healthcheck"]["test"]).replace("/tmp/fansipan-collector.alive", str(alive))

    def check() -> int:
        return subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, timeout=10).returncode

    assert check() != 0  # no file yet
    alive.touch()
    assert check() == 0
    old = time.time() - 60
    os.utime(alive, (old, old))
    assert check() != 0


def test_the_dbrp_script_creates_the_mapping_once(tmp_path):
    """The one-shot DBRP script run by sh against a fake ``influx`` that mimics the 2.7 CLI output."""
    job = services()["influxdb-dbrp"]
    assert job["entrypoint"] == ["/bin/sh", "-euc"]
    script = unescape_dollars(job["command"][0])
    bucket_id = "0a1b2c3d4e5f6071"
    fake = tmp_path / "bin" / "influx"
    fake.parent.mkdir()
    fake.write_text(
        "#!/bin/sh\n"
        'echo "$*" >> "$CALLS"\n'
        'case "$1 $2 $3" in\n'
        f'  "bucket list "*) [ -n "$HAVE_BUCKET" ] && printf \'{bucket_id}\\t%s\\tinfinite\\t168h0m0s\\torg1\\timplicit\\n\' "$BUCKET" ;;\n'
        '  "v1 dbrp list") cat "$MAPPINGS" ;;\n'
        f'  "v1 dbrp create") printf \'m2\\t%s\\t{bucket_id}\\tautogen\\ttrue\\tfalse\\torg1\\n\' "$BUCKET" >> "$MAPPINGS" ;;\n'
        '  *) echo "unexpected: $*" >&2; exit 2 ;;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    mappings = tmp_path / "mappings"
    # InfluxDB 2.7 lists a read-only virtual mapping for every bucket: it must not count as done
    mappings.write_text(f"v1\tfansipan\t{bucket_id}\tautogen\tfalse\ttrue\torg1\n")
    calls = tmp_path / "calls"
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "BUCKET": "fansipan", "HAVE_BUCKET": "1",
           "MAPPINGS": str(mappings), "CALLS": str(calls)}

    def run(**extra) -> subprocess.CompletedProcess:
        return subprocess.run(["/bin/sh", "-euc", script], env={**env, **extra}, capture_output=True, text=True, timeout=10)

    first = run()
    assert first.returncode == 0, first.stderr
    creates = [c for c in calls.read_text().splitlines() if c.startswith("v1 dbrp create")]
    assert creates == [f"v1 dbrp create --db fansipan --rp autogen --bucket-id {bucket_id} --default"]
    second = run()
    assert second.returncode == 0, second.stderr
    assert "already exists" in second.stdout
    assert len([c for c in calls.read_text().splitlines() if c.startswith("v1 dbrp create")]) == 1
    missing = run(HAVE_BUCKET="")
    assert missing.returncode != 0 and "not found" in missing.stderr


def test_the_broker_service_mounts_what_its_config_names():
    svc = services()["mosquitto"]
    assert svc["image"].startswith("eclipse-mosquitto:2.0")
    targets = {}
    for v in svc["volumes"]:
        assert isinstance(v, dict), "use the long volume syntax (create_host_path: false for files)"
        targets[v["target"]] = v
        if v["type"] == "bind":
            assert v.get("read_only") is True, v
            assert v.get("bind", {}).get("create_host_path") is False, f"{v['source']}: a missing file must fail, not become a directory"
    assert targets["/mosquitto/config/mosquitto.conf"]["source"] == "./deploy/mosquitto/mosquitto.conf"
    conf = parse_mosquitto_conf(MOSQUITTO_CONF)
    for key in ("password_file", "acl_file"):
        assert one(conf, key) in targets, f"{key} {one(conf, key)} is not mounted"
    data = one(conf, "persistence_location").rstrip("/")
    assert targets[data]["type"] == "volume", "persistence must outlive the container"
    assert data.lstrip("/") and compose()["volumes"].keys() >= {targets[data]["source"]}


def test_env_example_lists_every_variable_with_secrets_left_empty():
    values, above, mentioned = env_example()
    used = {m.group("name") for m in INTERPOLATION.finditer(compose_code())}
    assert used <= set(values), f"compose.yaml uses variables missing from .env.example: {sorted(used - set(values))}"
    settings_vars = {"FANSIPAN_" + f.name.upper() for f in dataclasses.fields(Settings)}
    assert settings_vars <= mentioned, f".env.example does not mention {sorted(settings_vars - mentioned)}"
    for name, value in values.items():
        if SECRET_NAME.search(name):
            assert value == "", f".env.example: {name} must be empty (an unedited copy must not start)"
            assert "CHANGE_ME" in above[name], f".env.example: mark {name} with a CHANGE_ME comment"
        else:
            assert "CHANGE_ME" not in value


# ------------------------------------------------------------------------------ Dockerfile


def test_dockerfile_installs_the_package_and_runs_as_non_root():
    text = DOCKERFILE.read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms and all(f == "python:3.11-slim" for f in froms), froms
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert re.search(r'^ENTRYPOINT \["fansipan"\]$', text, re.M)
    assert re.search(r"^RUN pip (wheel|install)\b.*\s\.$", text, re.M), "the image installs the project with pip"


def test_dockerignore_keeps_secrets_out_and_the_package_in():
    patterns = {p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")}
    assert {".env", "deploy/mosquitto/passwd", ".git", ".venv"} <= patterns
    needed = {"pyproject.toml", "README.md", "fansipan", "ingest", "device_profiles", "storage"}
    assert not needed & patterns, f".dockerignore drops what pip install . needs: {needed & patterns}"
    assert not any(p.startswith("!") for p in patterns)


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
