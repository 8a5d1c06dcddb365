"""The `fansipan` command as an operator runs it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from device_profiles import DEFAULT_DIR

FANSIPAN = [sys.executable, "-m", "fansipan"]


def run(*args, timeout=120, **kw):
    return subprocess.run([*FANSIPAN, *args], capture_output=True, text=True, timeout=timeout, **kw)


def test_profiles_check_ok():
    r = run("profiles", "check")
    assert r.returncode == 0, r.stderr
    kinds = len(list((DEFAULT_DIR / "kinds").glob("*.yaml")))
    assert f"ok: {kinds} device kinds" in r.stdout


def test_profiles_check_names_file_key_and_reason(tmp_path):
    shutil.copytree(DEFAULT_DIR, tmp_path / "p", ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    crac = tmp_path / "p" / "kinds" / "crac.yaml"
    crac.write_text(crac.read_text().replace("unit:", "unti:", 1))
    r = run("profiles", "check", "--dir", str(tmp_path / "p"))
    assert r.returncode == 1
    assert "kinds/crac.yaml: fields." in r.stderr and ".unti: unknown key" in r.stderr


def test_bad_setting_stops_the_start_with_the_variable_named():
    r = run("collect", env={"FANSIPAN_STORE": "mongodb", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 2
    assert "FANSIPAN_STORE: 'mongodb' is not one of sqlite, influx1, influx2" in r.stderr


def test_demo_on_the_embedded_default(tmp_path):
    """The main job: in-process broker (no server installed), collector, SQLite, simulator with faults."""
    summary = tmp_path / "summary.json"
    r = run("demo", "--duration", "14", "--speed", "30", "--broker", "amqtt", "--store-path", str(tmp_path / "demo.sqlite"),
            "--fault", "uplink_cut:y_ty:60", "--fault", "clock_skew:cocleu-cam-1", "--fault", "malformed:0.01",
            "--summary-json", str(summary), timeout=120)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    s = json.loads(summary.read_text())
    assert s["all_accounted_for"] is True
    assert s["readings_published"] > 500
    assert s["readings_stored"] == s["readings_published"]
    assert s["quarantined_by_reason"] == s["malformed_published_by_reason"]
    assert s["quarantined_by_reason"].get("bad_timestamp", 0) > 0  # the camera with the wrong clock
    assert s["devices_seen"] > 150  # loudspeakers report only in their broadcast windows
    assert "quarantined" in r.stdout and "stored" in r.stdout  # live progress was shown
    # the detector ran on simulated time: Y Tý's cut uplink is one incident, its devices unreachable
    cut = [i for i in s["incidents"] if i["kind"] == "uplink_down"]
    assert [(i["site"], i["device"]) for i in cut] == [("y_ty", "yty-router")], s["incidents"]
    assert "yty-ups" in cut[0]["unreachable"]
    assert not any(i["site"] == "y_ty" and i["kind"] == "silence" for i in s["incidents"]), s["incidents"]
