"""A throw-away local MQTT broker for ``fansipan demo``.

Mosquitto when it is on the PATH (MQTT 5, the broker Fansipan is deployed
with); otherwise amqtt, a pure-Python broker from PyPI, started in-process
(MQTT 3.1.1 only, a few thousand messages a second: enough for a demo).
Both listen on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("fansipan.broker")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start listening on 127.0.0.1:{port} within {timeout:.0f} s")


MOSQUITTO_DEMO_CONF = """\
# Written by `fansipan demo`: a local broker for the demo only (anonymous, loopback).
listener {port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {dir}/
# The collector acknowledges a message only after its batch is durably written,
# so the broker must let a whole batch be in flight (see deploy/mosquitto/mosquitto.conf).
max_inflight_messages 20000
max_queued_messages 1000000
log_dest file {dir}/mosquitto.log
"""


@dataclass
class LocalBroker:
    host: str = "127.0.0.1"
    port: int = 0
    protocol: str = "5"
    name: str = ""
    _proc: subprocess.Popen | None = None
    _amqtt_loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _dir: tempfile.TemporaryDirectory | None = None

    @classmethod
    def start(cls, prefer: str = "auto") -> LocalBroker:
        """``prefer``: "auto" (mosquitto if on the PATH), "mosquitto" or "amqtt"."""
        b = cls(port=free_port())
        exe = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
        if prefer == "mosquitto" and not exe:
            raise RuntimeError("mosquitto is not installed (Debian: apt-get install mosquitto)")
        if exe and prefer != "amqtt":
            b._start_mosquitto(exe)
        else:
            b._start_amqtt()
        return b

    def _start_mosquitto(self, exe: str) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="fansipan-mosquitto-")
        d = Path(self._dir.name)
        if os.geteuid() == 0:  # mosquitto started as root drops to user 'mosquitto'
            try:
                shutil.chown(d, user="mosquitto")
            except (LookupError, PermissionError):
                pass
        conf = d / "mosquitto.conf"
        conf.write_text(MOSQUITTO_DEMO_CONF.format(port=self.port, dir=d))
        self._proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_for_port(self.port, 10, f"mosquitto ({exe})")
        except RuntimeError:
            self._proc.kill()
            err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
            raise RuntimeError(f"mosquitto failed to start: {err.strip()[-500:]}") from None
        self.protocol, self.name = "5", f"mosquitto ({exe})"

    def _start_amqtt(self) -> None:
        from amqtt.broker import Broker

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}", "max_connections": 100}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        loop = asyncio.new_event_loop()
        started = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                broker = Broker(config, loop=loop)
                loop.run_until_complete(broker.start())
                self._amqtt_broker = broker
            except BaseException as exc:  # surfaced to the caller below
                errors.append(exc)
                started.set()
                return
            started.set()
            loop.run_forever()

        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._thread = threading.Thread(target=run, name="amqtt-broker", daemon=True)
        self._thread.start()
        started.wait(15)
        if errors:
            raise RuntimeError(f"the in-process amqtt broker failed to start: {errors[0]!r}")
        wait_for_port(self.port, 10, "amqtt")
        self._amqtt_loop = loop
        self.protocol, self.name = "3.1.1", "amqtt (in-process, MQTT 3.1.1)"

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        if self._amqtt_loop is not None:
            loop = self._amqtt_loop
            fut = asyncio.run_coroutine_threadsafe(self._amqtt_broker.shutdown(), loop)
            try:
                fut.result(10)
            except Exception:  # shutting down a demo broker: nothing left to save
                pass
            loop.call_soon_threadsafe(loop.stop)
        if self._dir is not None:
            self._dir.cleanup()
