"""Per-device MQTT credentials and ACLs for mosquitto 2.0, generated from the site registry.

``fansipan mqtt-acl --out DIR`` writes four kinds of file into DIR, each mode 0600:

``passwd``
    mosquitto's password file, in the format ``mosquitto_passwd`` 2.0 writes:
    ``user:$7$<iterations>$<base64 salt>$<base64 PBKDF2-HMAC-SHA512>`` (12-byte
    salt, 101 iterations, 64-byte key).  Only hashes: no secret in it.
``acl``
    mosquitto's ``acl_file``.  Each device ``user <id>`` gets ``topic write
    <its exact topic>`` and no read at all; the collector reads ``laocai/#``;
    the broker health check reads ``$SYS/broker/uptime`` only.
``device-credentials.csv``
    SECRETS: device, kind, site, username (= the device id), password, topic.
    Hand each line to the field team that configures the device, over a secure
    channel; never commit it.
``collector-credentials``, ``healthcheck-credentials``
    SECRETS, as ``VAR=value`` lines ready for ``.env``; only written when the
    password was generated here (see below).

Re-running keeps every existing password (read back from the credentials
files), so adding a device does not rotate anyone else's.  ``rotate=True``
(``--rotate``) gives every generated account a new password;
``--rotate-user NAME`` only that one (a stolen device).  A service account
whose password is in the environment (``FANSIPAN_MQTT_PASSWORD`` for the
collector, ``MOSQUITTO_HEALTHCHECK_PASSWORD`` for the health check) takes it
from there instead: rotate it by changing the variable.  Devices no longer in
the registry lose their account.

mosquitto re-reads ``passwd`` and ``acl`` on SIGHUP; a client still connected
with a password that no longer matches is disconnected at once.
"""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import os
import secrets
import subprocess
import sys
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from device_profiles import Registry, load_registry

PASSWD = "passwd"
ACL = "acl"
DEVICE_CREDENTIALS = "device-credentials.csv"
DEVICE_COLUMNS = ("device", "kind", "site", "username", "password", "topic")

# mosquitto_passwd 2.0 (checked against 2.0.11): "$7$" = PBKDF2-HMAC-SHA512, 101 iterations,
# a 12-byte salt and a 64-byte key, both base64 with padding.
PW_SHA512_PBKDF2 = 7
PW_ITERATIONS = 101
SALT_BYTES = 12
KEY_BYTES = 64


def mosquitto_hash(password: str, salt: bytes | None = None, iterations: int = PW_ITERATIONS) -> str:
    """The password-file hash mosquitto 2.0 writes for ``password`` (without the ``user:`` prefix)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    key = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, KEY_BYTES)
    return f"${PW_SHA512_PBKDF2}${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(key).decode()}"


def check_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches a ``$7$`` hash from a mosquitto 2.0 password file."""
    try:
        _, kind, iterations, salt, key = hashed.split("$")
        if kind != str(PW_SHA512_PBKDF2):
            return False
        want = base64.b64decode(key)
        got = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations), len(want))
    except ValueError:
        return False
    return secrets.compare_digest(got, want)


@dataclass(frozen=True)
class ServiceUser:
    """A broker account that is not a device.

    ``rules``: ``(access, topic)`` pairs, access one of read, write, readwrite.
    ``credentials_file``: where a generated password goes (in ``out_dir``), as
    ``username_var=name`` (if any) and ``password_var=password`` lines.
    ``from_env``: take the password from ``environ[password_var]`` when it is
    set (and ``environ[username_var]``, if set, names this account).
    """

    name: str
    rules: tuple[tuple[str, str], ...]
    credentials_file: str
    password_var: str
    username_var: str | None = None
    from_env: bool = True


HEALTHCHECK = ServiceUser("fansipan.healthcheck", (("read", "$SYS/broker/uptime"),),
                          "healthcheck-credentials", "MOSQUITTO_HEALTHCHECK_PASSWORD")
# Opt-in (--simulator): the simulator publishes for every device over one connection.
# For a test or staging broker only: with it, one password can write every device's topic.
SIMULATOR = ServiceUser("fansipan.simulator", (("write", "laocai/#"),), "simulator-credentials",
                        "FANSIPAN_MQTT_PASSWORD", "FANSIPAN_MQTT_USERNAME", from_env=False)


@dataclass(frozen=True)
class Paths:
    """What :func:`write_acl` wrote, and what changed."""

    out_dir: Path
    passwd: Path
    acl: Path
    device_credentials: Path
    service_credentials: dict[str, Path] = field(default_factory=dict)  # username -> file, generated passwords only
    from_env: dict[str, str] = field(default_factory=dict)  # username -> variable its password came from
    devices: int = 0
    added: tuple[str, ...] = ()  # accounts that got a first password
    rotated: tuple[str, ...] = ()  # accounts that got a new password
    removed: tuple[str, ...] = ()  # devices in the old credentials file, gone from the registry


def device_topic(registry: Registry, device_id: str) -> str:
    d = registry.devices[device_id]
    return registry.kinds[d.kind].topic.format(site=d.site, device=d.id)


def collector_account(registry: Registry, name: str = "fansipan.collector", credentials_file: str = "collector-credentials",
                      from_env: bool = True) -> ServiceUser:
    """A collector: reads every telemetry topic (the first level of each profile topic, ``laocai/#``).

    With ``use_username_as_clientid true`` (docs/mqtt-security.md) each collector of a
    share group needs its own account: add them with ``from_env=False`` to ``extra_users``.
    """
    roots = sorted({p.topic.split("/", 1)[0] for p in registry.kinds.values()}) or ["laocai"]
    rules = [("read", f"{r}/#") for r in roots]
    for g in sparkplug_groups(registry):  # Sparkplug B host: reads the group, asks nodes to rebirth
        rules += [("read", f"{SPB}/{g}/#"), ("write", f"{SPB}/{g}/NCMD/+"), ("write", f"{SPB}/{g}/DCMD/+/+")]
    if sparkplug_groups(registry):
        rules += [("readwrite", f"{SPB}/STATE/+")]  # the host's own online/offline state (retained, and its will)
    return ServiceUser(name, tuple(rules), credentials_file,
                       "FANSIPAN_MQTT_PASSWORD", "FANSIPAN_MQTT_USERNAME", from_env=from_env)


SPB = "spBv1.0"


def sparkplug_groups(registry: Registry) -> list[str]:
    return sorted({k.sparkplug.group for k in registry.kinds.values() if k.format == "sparkplug_b" and k.sparkplug})


def sparkplug_rules(registry: Registry, device_id: str) -> list[str]:
    """ACL lines of a Sparkplug B edge node: its own births, data and deaths (its will), its devices',
    the commands addressed to it, and the host's STATE. A Sparkplug device behind a node gets none: the
    node speaks for it (and the collector checks that the device is behind that node)."""
    d = registry.devices[device_id]
    kind = registry.kinds[d.kind]
    up = registry.devices.get(d.uplink) if d.uplink else None
    if kind.format != "sparkplug_b" or kind.sparkplug is None or (
            up is not None and registry.kinds[up.kind].format == "sparkplug_b"):
        return []
    g, n = kind.sparkplug.group, d.id
    return ([f"topic write {SPB}/{g}/{t}/{n}" for t in ("NBIRTH", "NDATA", "NDEATH")]
            + [f"topic write {SPB}/{g}/{t}/{n}/+" for t in ("DBIRTH", "DDATA", "DDEATH")]
            + [f"topic read {SPB}/{g}/NCMD/{n}", f"topic read {SPB}/{g}/DCMD/{n}/+", f"topic read {SPB}/STATE/+"])


def _new_password() -> str:
    return secrets.token_urlsafe(24)


def _read_device_credentials(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    out: dict[str, str] = {}
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"username", "password"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: not a device credentials file (expected the columns {', '.join(DEVICE_COLUMNS)})")
        for row in reader:
            if row.get("username") and row.get("password"):
                out[row["username"]] = row["password"]
    return out


def _read_env_file(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


def _write_secret(path: Path, text: str) -> None:
    """Write atomically with mode 0600; a file being replaced keeps its owner (e.g. mosquitto's uid 1883)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o600)
        try:
            st = path.stat()
        except FileNotFoundError:
            pass
        else:
            if (st.st_uid, st.st_gid) != (os.geteuid(), os.getegid()):
                try:
                    os.chown(tmp, st.st_uid, st.st_gid)
                except PermissionError:
                    print(f"warning: could not give {path} back to uid {st.st_uid}: the broker may not be able "
                          "to read it (chown it, then send SIGHUP)", file=sys.stderr)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _check_name(name: str) -> None:
    if not name or any(c in name for c in ":\n\r") or name != name.strip():
        raise ValueError(f"MQTT username {name!r}: must be non-empty, without ':', newlines or surrounding spaces")


def write_acl(registry: Registry, out_dir: str | Path, collector_user: str = "fansipan.collector",
              extra_users: Iterable[ServiceUser] = (HEALTHCHECK,), rotate: bool | Collection[str] = False,
              environ: Mapping[str, str] | None = None) -> Paths:
    """Write ``passwd``, ``acl`` and the credentials files for ``registry`` into ``out_dir`` (see the module doc).

    ``rotate``: True for new passwords everywhere, or a collection of usernames.
    ``environ``: where service passwords may come from (default ``os.environ``).
    """
    environ = os.environ if environ is None else environ
    if isinstance(rotate, str):
        rotate = {rotate}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True, mode=0o700)
    services = [collector_account(registry, collector_user), *extra_users]
    names = [s.name for s in services]
    for n in names:
        _check_name(n)
    clash = (set(names) & set(registry.devices)) | {n for n in names if names.count(n) > 1}
    if clash:
        raise ValueError(f"MQTT usernames used twice (a service account named like a device?): {sorted(clash)}")

    def rotating(name: str) -> bool:
        return rotate is True or (not isinstance(rotate, bool) and name in rotate)

    added: list[str] = []
    rotated: list[str] = []
    passwords: dict[str, str] = {}  # username -> password, services first
    service_files: dict[str, Path] = {}
    from_env: dict[str, str] = {}
    for s in services:
        env_pw = environ.get(s.password_var, "") if s.from_env else ""
        env_user = environ.get(s.username_var, s.name) if s.username_var else s.name
        if env_pw and env_user == s.name:
            if "CHANGE_ME" in env_pw:
                raise ValueError(f"{s.password_var} is still the CHANGE_ME placeholder")
            passwords[s.name] = env_pw
            from_env[s.name] = s.password_var
            continue
        path = out / s.credentials_file
        old = _read_env_file(path).get(s.password_var, "")
        if old and not rotating(s.name):
            passwords[s.name] = old
        else:
            passwords[s.name] = _new_password()
            (rotated if old else added).append(s.name)
        lines = [f"# MQTT account {s.name}: a secret. Keep out of git; put these lines in .env.\n"]
        if s.username_var:
            lines.append(f"{s.username_var}={s.name}\n")
        lines.append(f"{s.password_var}={passwords[s.name]}\n")
        _write_secret(path, "".join(lines))
        service_files[s.name] = path

    cred_path = out / DEVICE_CREDENTIALS
    old_devices = _read_device_credentials(cred_path)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(DEVICE_COLUMNS)
    device_ids = sorted(registry.devices)
    for dev_id in device_ids:
        old = old_devices.get(dev_id)
        if old and not rotating(dev_id):
            pw = old
        else:
            pw = _new_password()
            (rotated if old else added).append(dev_id)
        passwords[dev_id] = pw
        d = registry.devices[dev_id]
        w.writerow([dev_id, d.kind, d.site, dev_id, pw, device_topic(registry, dev_id)])
    _write_secret(cred_path, buf.getvalue())
    removed = tuple(sorted(set(old_devices) - set(registry.devices)))

    _write_secret(out / PASSWD, "".join(f"{user}:{mosquitto_hash(pw)}\n" for user, pw in passwords.items()))
    _write_secret(out / ACL, _acl_text(registry, services, device_ids))
    return Paths(out, out / PASSWD, out / ACL, cred_path, service_files, from_env, len(device_ids),
                 tuple(added), tuple(rotated), removed)


def _acl_text(registry: Registry, services: list[ServiceUser], device_ids: list[str]) -> str:
    lines = [
        f"# Generated by `fansipan mqtt-acl` from {registry.source}. Do not edit: change the registry and re-run.",
        "# mosquitto 2.0 acl_file. Anonymous clients are refused (allow_anonymous false), so nothing",
        "# comes before the first `user` line, and there are no `pattern` lines (they would apply to",
        "# every user). mosquitto 2.0 grants every SUBSCRIBE and filters each delivery by `topic read`",
        "# (for $share/<group>/<filter> against the message's topic), so a refused subscription is",
        "# silence, not an error. A refused PUBLISH is dropped: MQTT 5 clients get PUBACK 0x87",
        "# (not authorized), MQTT 3.1.1 clients a normal PUBACK.",
        "",
    ]
    for s in services:
        lines.append(f"user {s.name}")
        lines += [f"topic {access} {topic}" for access, topic in s.rules]
        lines.append("")
    lines.append(f"# {len(device_ids)} devices: each may publish to its own topic only, and read nothing; a Sparkplug B")
    lines.append("# edge node also to its own births, data and deaths, and reads the commands addressed to it.")
    for dev_id in device_ids:
        lines += [f"user {dev_id}", f"topic write {device_topic(registry, dev_id)}", *sparkplug_rules(registry, dev_id), ""]
    return "\n".join(lines)


def _git_unignored(paths: Iterable[Path]) -> list[Path]:
    """Those of ``paths`` inside a git work tree and not ignored (they could be committed by mistake)."""
    bad = []
    for p in paths:
        try:
            r = subprocess.run(["git", "-C", str(p.parent), "check-ignore", "-q", p.name],
                               capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return []
        if r.returncode == 1:  # 0: ignored; 128: not a git work tree
            bad.append(p)
    return bad


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR",
                   help="where to write passwd, acl and the credentials files (e.g. deploy/mosquitto)")
    p.add_argument("--rotate", action="store_true", help="new passwords for every device and generated service account")
    p.add_argument("--rotate-user", action="append", default=[], metavar="NAME",
                   help="new password for this account only, e.g. a stolen device (repeatable)")
    p.add_argument("--profiles-dir", help="device profiles and site registry (default: FANSIPAN_PROFILES_DIR or the shipped ones)")
    p.add_argument("--collector-user", default="fansipan.collector", help="the collector's broker account")
    p.add_argument("--broker-owner", metavar="UID[:GID]",
                   help="chown passwd and acl to the broker's user, e.g. 1883:1883 for the eclipse-mosquitto image "
                        "(needs root; the broker drops root before it reads them)")
    p.add_argument("--extra-collector", action="append", default=[], metavar="NAME",
                   help="one more collector account, e.g. fansipan.collector-2 for a second collector of a "
                        "share group (repeatable; its password goes to NAME-credentials)")
    p.add_argument("--simulator", action="store_true",
                   help="also an account fansipan.simulator that may write every device topic (test brokers only)")


def run(args: argparse.Namespace) -> int:
    profiles = args.profiles_dir or os.environ.get("FANSIPAN_PROFILES_DIR")
    registry = load_registry(profiles) if profiles else load_registry()
    extra = [HEALTHCHECK, *(collector_account(registry, n, f"{n}-credentials", from_env=False)
                            for n in args.extra_collector)]
    if args.simulator:
        extra.append(SIMULATOR)
    unknown = set(args.rotate_user) - set(registry.devices) - {args.collector_user, *(s.name for s in extra)}
    if unknown:
        print(f"fansipan mqtt-acl: --rotate-user: no such account: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    rotate: bool | set[str] = True if args.rotate else set(args.rotate_user)
    owner = None
    if args.broker_owner:
        try:
            uid, _, gid = args.broker_owner.partition(":")
            owner = (int(uid), int(gid) if gid else -1)
        except ValueError:
            print(f"fansipan mqtt-acl: --broker-owner {args.broker_owner!r}: expected UID or UID:GID (numbers)",
                  file=sys.stderr)
            return 2
    try:
        paths = write_acl(registry, args.out, collector_user=args.collector_user, extra_users=extra, rotate=rotate)
        if owner is not None:
            for p in (paths.passwd, paths.acl):
                os.chown(p, *owner)
    except ValueError as exc:
        print(f"fansipan mqtt-acl: {exc}", file=sys.stderr)
        return 2
    except PermissionError as exc:
        print(f"fansipan mqtt-acl: --broker-owner needs root: {exc}", file=sys.stderr)
        return 2
    print(f"{paths.devices} devices from {registry.source}: {len(paths.added)} new accounts, "
          f"{len(paths.rotated)} new passwords, {len(paths.removed)} devices removed"
          + (f" ({', '.join(paths.removed)})" if paths.removed else ""))
    print(f"broker files (mode 0600): {paths.passwd}  {paths.acl}")
    print(f"SECRETS written (mode 0600): {paths.device_credentials}"
          + "".join(f"  {p}" for p in paths.service_credentials.values()))
    for user, var in paths.from_env.items():
        print(f"  {user}: password taken from ${var}")
    print("Hand each device's line to its field team over a secure channel (not e-mail or chat in clear),")
    print("keep the credentials files out of git and off shared drives, and delete copies you do not need.")
    if owner is None:
        print("Deploy: chown 1883:1883 passwd acl (the broker's user; keep 0600), then reload the broker with SIGHUP.")
    else:
        print(f"passwd and acl now owned by {args.broker_owner}: reload the broker with SIGHUP.")
    print("After SIGHUP check the broker's log: if it says 'Unable to open pwfile' it now refuses every login.")
    if paths.rotated:
        print(f"{len(paths.rotated)} password(s) changed: after SIGHUP the broker disconnects those clients until "
              "they use the new password (the collector and health check too, if rotated: update .env first).")
    unignored = _git_unignored([paths.device_credentials, *paths.service_credentials.values()])
    if unignored:
        print("WARNING: these secret files are inside a git work tree and NOT ignored; add them to .gitignore: "
              + " ".join(str(p) for p in unignored), file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="fansipan mqtt-acl",
                                description="mosquitto password file, ACL and per-device credentials from the registry")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
