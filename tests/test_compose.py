"""The deployment files: compose.yaml, .env.example and the Dockerfile.

Docker is not available here, so compose.yaml is checked two ways:

* against the Compose specification's JSON schema, shipped with check-jsonschema
  (``--builtin-schema vendor.compose-spec``); a negative test proves the check
  is not a no-op;
* by structure: secrets only as ``${VAR:?...}``, every dependency waits for
  health, every long-running service has a health check, and the health
  checks and the one-shot DBRP script actually work when run by ``sh``.

The Mosquitto configs, and the production one on a real broker, are in
test_mosquitto_config.py.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

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
