"""Shared fixtures: real servers for the whole session (helpers live in tests/servers.py).

A missing server binary makes the fixture ERROR, naming the Debian package to
install; set FANSIPAN_SKIP_SERVERS=1 to skip the tests that need servers instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers  # noqa: E402


def _server(tmp_path_factory, start, name):
    if os.environ.get("FANSIPAN_SKIP_SERVERS") == "1":
        pytest.skip(f"FANSIPAN_SKIP_SERVERS=1: not starting {name}")
    server = start(tmp_path_factory.mktemp(name))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def influxd(tmp_path_factory):
    """A real InfluxDB 1.x on 127.0.0.1 (servers.Server: .url, .stop(), .kill(), .start())."""
    yield from _server(tmp_path_factory, servers.start_influxd, "influxd")


@pytest.fixture(scope="session")
def victoria(tmp_path_factory):
    """A real VictoriaMetrics single node on 127.0.0.1."""
    yield from _server(tmp_path_factory, servers.start_victoria, "victoria")


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory):
    """A real Mosquitto broker on 127.0.0.1 with persistence and the production queue limits (.port)."""
    yield from _server(tmp_path_factory, servers.start_mosquitto, "mosquitto")
