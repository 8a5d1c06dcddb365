"""The status page, opened in a real headless Chromium (Debian's ``chromium``), checked for what a person sees.

The API runs under uvicorn on a free port over the seeded world (FANSIPAN_STATUS_PUBLIC on, since
a browser sends no API key); Chromium loads /status and dumps the DOM it rendered, and takes a
screenshot.  Without the binary the test is skipped with the reason, except under CI=true, where
a missing browser is a failure (scripts/test installs the Debian package ``chromium``).
"""

from __future__ import annotations

import html
import os
import re
import shutil
import socket
import subprocess
import threading
import time

import pytest
import uvicorn

from test_api import REGISTRY, TestClient, shared_world

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]


@pytest.fixture(scope="session")
def world(tmp_path_factory, request):
    return shared_world(tmp_path_factory, request)


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("CI=true but chromium is not installed: apt-get install -y chromium")
        pytest.skip("chromium is not installed (Debian: apt-get install -y chromium); set CI=true to make this fail")
    return path


@pytest.fixture(scope="module")
def served(world):
    """The API over the seeded world under a real uvicorn, in a thread, on a free port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(world.app(status_public=True), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("uvicorn did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def browse(url: str, tmp_path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *extra, url],
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)


def visible_text(dom: str) -> str:
    body = re.sub(r"(?s)<(script|style|title)[^>]*>.*?</\1>", " ", dom)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def test_status_page_in_chromium(served, tmp_path):
    run = browse(f"{served}/status", tmp_path, "--dump-dom")
    assert run.returncode == 0 and "</html>" in run.stdout, run.stderr[-2000:]
    text = visible_text(run.stdout)
    for heading in ("Trạng thái hệ thống tỉnh Lào Cai / Lào Cai province system status",
                    "Xã theo trạng thái / Communes by status", "Sự cố đang mở / Open incidents",
                    "Một giờ qua: Độ trễ đường truyền xã / Last hour: Commune uplink latency (ms)"):
        assert heading in text, heading
    for name in ("Xã Y Tý", "Xã A Lù", "Phường Cốc Lếu", "Huyện Bát Xát", "Trung tâm dữ liệu tỉnh Lào Cai"):
        assert name in text, name
    assert re.search(r"Mất kết nối / Uplink down at Xã Y Tý \(Huyện Bát Xát\): \d+ devices unreachable", text), text[:3000]
    assert "Nghiêm trọng / Critical" in text
    # Y Tý's tile says it is down, in both languages
    tile = re.search(r'<div class="site (\w+)" title="y_ty">Xã Y Tý<small>([^<]*)</small>', run.stdout)
    assert tile and tile.group(1) == "down" and html.unescape(tile.group(2)) == "Mất kết nối / Down"
    communes = sum(1 for s in REGISTRY.sites.values() if s.type == "commune")
    assert run.stdout.count('class="site ') == communes + 1  # and the data center
    assert run.stdout.count("<polyline") > 50  # a sparkline per commune router and server
    assert "<script" not in run.stdout


def test_status_page_screenshot(served, tmp_path):
    run = browse(f"{served}/status", tmp_path, "--screenshot=page.png", "--window-size=1280,2000",
                 "--hide-scrollbars")
    shot = tmp_path / "page.png"
    assert shot.exists() and shot.stat().st_size > 20_000, run.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_status_page_needs_a_key_unless_public(world):
    closed = TestClient(world.app(), raise_server_exceptions=False)
    assert closed.get("/status").status_code == 401
    page = closed.get("/status", headers={"X-API-Key": world.tokens["viewer"]})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'http-equiv="refresh"' in page.text and 'lang="vi"' in page.text
