"""Start and stop real servers (influxd, victoria-metrics, mosquitto) for the tests.

Every server listens on 127.0.0.1 only, on free ports, keeps all its state in
a directory of the caller's choosing, and logs to ``<dir>/server.log``.  The
returned :class:`Server` can be stopped (SIGTERM, then SIGKILL after 10 s),
killed outright (SIGKILL, as a power cut would) and started again on the same
port with the same data, which is what the fault-injection tests need.

The servers come from Debian packages; a missing binary raises
:class:`ServerUnavailable` naming the package to install.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class ServerUnavailable(RuntimeError):
    """A server binary is not installed, or the server did not come up."""


def wait_for(cond, timeout: float, what: str, every: float = 0.05) -> None:
    """Poll ``cond`` until it is true; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for: {what}")
        time.sleep(every)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_binary(name: str, package: str, *extra_dirs: str) -> str:
    path = shutil.which(name) or next(
        (str(Path(d) / name) for d in extra_dirs if (Path(d) / name).is_file()), None
    )
    if path is None:
        raise ServerUnavailable(
            f"{name} is not installed: install the Debian package {package!r} "
            f"(apt-get update && apt-get install -y {package}), "
            "or set FANSIPAN_SKIP_SERVERS=1 to skip the tests that need real servers"
        )
    return path


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Ask Linux to SIGKILL the server if the test process dies without stopping it."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _http_ok(url: str, status: int) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == status
    except (urllib.error.URLError, OSError):
        return False


def _tcp_ok(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


class Server:
    """One server process, restartable on the same port and data directory."""

    def __init__(self, name: str, argv: list[str], workdir: Path, port: int, url: str,
                 ready: Callable[[], bool]):
        self.name = name
        self.argv = argv
        self.workdir = workdir
        self.port = port
        self.url = url
        self.log_path = workdir / "server.log"
        self._ready = ready
        self.proc: subprocess.Popen | None = None

    def __repr__(self) -> str:
        return f"<{self.name} {self.url} pid={self.proc.pid if self.proc else None}>"

    def __iter__(self):
        """``url, stop = start_influxd(tmp)`` also works."""
        return iter((self.url, self.stop))

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout_s: float = START_TIMEOUT_S) -> Server:
        """Start the server (again) and wait until it answers; raise with its log tail if it does not."""
        if self.running:
            return self
        with self.log_path.open("ab") as log:
            log.write(f"\n=== start {' '.join(self.argv)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                self.argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServerUnavailable(
                    f"{self.name} exited with status {self.proc.returncode} while starting; "
                    f"last lines of {self.log_path}:\n{self.log_tail()}"
                )
            if self._ready():
                return self
            time.sleep(0.05)
        self.kill()
        raise ServerUnavailable(
            f"{self.name} did not answer on {self.url} within {timeout_s:.0f} s; "
            f"last lines of {self.log_path}:\n{self.log_tail()}"
        )

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM, then SIGKILL if it has not exited after ``timeout_s``."""
        if not self.running:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to flush anything."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> Server:
        self.stop()
        return self.start()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _workdir(tmpdir: Path | str, name: str) -> Path:
    d = Path(tmpdir) / name
    d.mkdir(parents=True, exist_ok=True)
    return d


# ---------------------------------------------------------------- InfluxDB 1.x

def start_influxd(tmpdir: Path | str) -> Server:
    """InfluxDB 1.x (Debian package ``influxdb``): HTTP API at ``.url``, no auth, no reporting."""
    binary = find_binary("influxd", "influxdb")
    work = _workdir(tmpdir, "influxd")
    port, rpc_port = free_port(), free_port()
    conf = work / "influxdb.conf"
    conf.write_text(
        f"""\
reporting-disabled = true
reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{work / 'meta'}"
  logging-enabled = false

[data]
  dir = "{work / 'data'}"
  wal-dir = "{work / 'wal'}"
  wal-fsync-delay = "0s"
  query-log-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{port}"
  auth-enabled = false
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "warn"
  suppress-logo = true

[[graphite]]
  enabled = false
[[collectd]]
  enabled = false
[[opentsdb]]
  enabled = false
[[udp]]
  enabled = false
[continuous_queries]
  enabled = false
"""
    )
    url = f"http://127.0.0.1:{port}"
    server = Server("influxd", [binary, "run", "-config", str(conf)], work, port, url,
                    lambda: _http_ok(url + "/ping", 204))
    return server.start()


# ---------------------------------------------------------------- VictoriaMetrics

def start_victoria(tmpdir: Path | str) -> Server:
    """VictoriaMetrics single node (Debian package ``victoria-metrics``): line protocol in, export out."""
    binary = find_binary("victoria-metrics", "victoria-metrics")
    work = _workdir(tmpdir, "victoria")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        binary,
        f"-storageDataPath={work / 'data'}",
        f"-httpListenAddr=127.0.0.1:{port}",
        "-retentionPeriod=100y",  # the tests write fixed historical times
        "-loggerLevel=WARN",
        "-search.disableCache",  # a test reads right after it writes
    ]
    server = Server("victoria-metrics", argv, work, port, url, lambda: _http_ok(url + "/health", 200))
    return server.start()


# ---------------------------------------------------------------- Mosquitto

def _reachable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether user ``uid`` can traverse every directory down to ``path`` (so it can write inside it)."""
    for d in [path, *path.parents]:
        st = d.stat()
        if st.st_uid == uid:
            ok = st.st_mode & 0o100
        elif st.st_gid == gid:
            ok = st.st_mode & 0o010
        else:
            ok = st.st_mode & 0o001
        if not ok:
            return False
    return True


PRODUCTION_BROKER_CONF = Path(__file__).resolve().parent.parent / "deploy" / "mosquitto" / "mosquitto.conf"


def production_broker_limits() -> list[str]:
    """The in-flight and queue settings of the shipped broker config: tests run with the same limits."""
    keys = ("max_inflight_messages", "max_queued_messages", "max_queued_bytes", "persistent_client_expiration")
    return [line.strip() for line in PRODUCTION_BROKER_CONF.read_text().splitlines() if line.split(" ")[0] in keys]


def start_mosquitto(tmpdir: Path | str, port: int | None = None, persistence: bool = True,
                    extra_conf: str = "", anonymous: bool = True) -> Server:
    """Mosquitto 2.x (Debian package ``mosquitto``) on 127.0.0.1, anonymous, with the production queue limits.

    ``anonymous=False`` writes ``allow_anonymous false``: give ``password_file``
    (and ``acl_file``) in ``extra_conf``.  Lines of ``extra_conf`` that are
    listener options (cafile, certfile, ...) apply to the listener on ``port``
    unless ``extra_conf`` opens another ``listener`` first.

    Started as root, mosquitto drops to user ``mosquitto``, so its persistence
    directory is handed to that user.  If that user cannot even reach the
    directory (pytest's temp root is private to root), the broker keeps running
    as root instead (``user root``): this is a test broker on loopback only.
    """
    binary = find_binary("mosquitto", "mosquitto", "/usr/sbin")
    work = _workdir(tmpdir, "mosquitto")
    data = work / "data"
    data.mkdir(exist_ok=True)
    port = port or free_port()
    user_line = ""
    if os.geteuid() == 0:
        try:
            pw = pwd.getpwnam("mosquitto")
        except KeyError:
            user_line = "user root"
        else:
            os.chown(data, pw.pw_uid, pw.pw_gid)
            if not _reachable_by(data, pw.pw_uid, pw.pw_gid):
                user_line = "user root"
    conf = work / "mosquitto.conf"
    conf.write_text(
        "\n".join([
            f"listener {port} 127.0.0.1",
            f"allow_anonymous {'true' if anonymous else 'false'}",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {data}/",
            *production_broker_limits(),
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            user_line,
            extra_conf,
            "",
        ])
    )
    server = Server("mosquitto", [binary, "-c", str(conf)], work, port, f"mqtt://127.0.0.1:{port}",
                    lambda: _tcp_ok(port))
    return server.start()
