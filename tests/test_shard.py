"""Sharded detectors: the split is stable and complete, and three detector processes over one store
and one incidents database raise exactly what one detector raises, each incident once."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pytest

from analytics.incidents import Condition, IncidentStore
from analytics.service import DetectionService
from analytics.shard import Shard
from device_profiles import load_registry
from fansipan.config import ConfigError, Settings
from ingest.validate import Validator
from simulator.core import Simulation
from storage.sqlite import SQLiteStore

REGISTRY = load_registry()
ROOT = Path(__file__).resolve().parent.parent
MIN = 60 * 10**9
N = 3
# Pinned, not "now": the loudspeakers report only in broadcast windows (11:00-12:00 local is one), so
# which devices fall silent behind the cut uplink depends on the time of day.
END = datetime(2026, 7, 15, 4, 55, tzinfo=timezone.utc)


# ---------------------------------------------------------------- the split

@pytest.mark.parametrize("text, named", [("3/3", "0 <= I < N"), ("1", "expected I/N"), ("-1/3", "expected I/N"),
                                         ("a/b", "expected I/N"), ("0/0", "N from 1")])
def test_bad_shards_are_refused_naming_the_value(text, named):
    with pytest.raises(ValueError, match=named) as exc:
        Shard.parse(text)
    assert text.split("/")[0] in str(exc.value)
    with pytest.raises(ConfigError, match="FANSIPAN_DETECT_SHARD"):
        Settings.from_env({"FANSIPAN_DETECT_SHARD": text}, mqtt=False)


def test_every_device_has_exactly_one_owner_and_the_split_is_even():
    shards = [Shard(i, N) for i in range(N)]
    owned = [set(s.select(REGISTRY.devices)) for s in shards]
    assert set().union(*owned) == set(REGISTRY.devices)
    assert sum(map(len, owned)) == len(REGISTRY.devices)  # pairwise disjoint
    assert all(0.25 * len(REGISTRY.devices) < len(o) < 0.42 * len(REGISTRY.devices) for o in owned)
    # SHA-1 of the id, not Python's per-process randomized hash(): the same owner in every process
    d = "yty-router"
    assert shards[0].owner(d) == int.from_bytes(hashlib.sha1(d.encode()).digest()[:8], "big") % N
    assert Shard(0, 1).owns(d) and Shard.parse(" 2/3 ") == Shard(2, 3) and str(Shard(2, 3)) == "2/3"


def test_condition_owners():
    s = [Shard(i, N) for i in range(N)]

    def c(kind, device="", site="y_ty"):
        return Condition(key=f"{kind}:{device or site}", kind=kind, severity="warning", title="t", cause="c",
                         site=site, district="bat_xat", device=device, started_ns=0)

    for cond in (c("uplink_down", "yty-router"), c("spike", "dc-srv-01"), c("limit", "banvuoc-wl-1", "ban_vuoc"),
                 c("ingest_stalled")):
        assert sum(x.owns_condition(cond) for x in s) == 1, cond
    assert s[0].owns_condition(c("ingest_stalled"))
    # a site-wide limit incident belongs to the owner of the site, whichever device is worst
    owner = s[0].owner("ban_vuoc")
    assert all(s[owner].owns_condition(c("limit", d, "ban_vuoc")) for d in REGISTRY.devices)


def test_the_incidents_database_takes_concurrent_writers(tmp_path):
    """What the shards rely on: WAL (readers never block the writer) and a busy timeout (a writer waits
    for another's transaction instead of failing with 'database is locked')."""
    db = IncidentStore(tmp_path / "i.sqlite")
    try:
        assert db._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db._db.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    finally:
        db.close()


# ---------------------------------------------------------------- three processes, one store

def _seed(path: Path, end_ns: int, minutes: int = 40, cut_s: int = 900) -> None:
    """``minutes`` of the whole registry up to ``end_ns``; Y Tý's uplink cut after ``cut_s``, a flood at Bản Vược."""
    start = end_ns - minutes * MIN
    store = SQLiteStore(path, REGISTRY)
    sim = Simulation(REGISTRY, faults=[f"uplink_cut:y_ty:{cut_s}", "flood:banvuoc-wl-1:0"], seed=3, speed=0,
                     start=datetime.fromtimestamp(start / 1e9, timezone.utc))
    validator = Validator(REGISTRY)
    for minute in range(minutes):
        arrived = start + (minute + 1) * MIN
        points = []
        for topic, payload, _ in sim.messages(1, step_s=60):
            points += validator.message(topic, payload, arrived)[0]
        store.write(points)
    store.close()


def _incidents(path: Path) -> tuple[set, Counter]:
    db = IncidentStore(path)
    try:
        incs = db.all()
        got = {(i.key, i.kind, i.severity, i.status, tuple(sorted(i.members))) for i in incs}
        opened = Counter(db.get(iid).key for iid, _, event, _ in db.events() if event == "opened")
        return got, opened + Counter(i.key for i in incs)
    finally:
        db.close()


def test_three_detector_processes_split_the_work_and_find_topology_across_shards(tmp_path):
    yty = sorted(d.id for d in REGISTRY.devices.values() if d.site == "y_ty")
    owner = Shard(0, N).owner
    assert {owner(d) for d in yty if d != "yty-router"} - {owner("yty-router")}, \
        "precondition: some of Y Tý's devices fall in another shard than their router"

    telemetry = tmp_path / "telemetry.sqlite"
    end_ns = int(END.timestamp()) * 10**9
    _seed(telemetry, end_ns)
    env = {**os.environ, "FANSIPAN_STORE": "sqlite", "FANSIPAN_SQLITE_PATH": str(telemetry),
           "FANSIPAN_INCIDENTS_PATH": str(tmp_path / "incidents.sqlite"), "FANSIPAN_ENV": "development"}
    procs = [subprocess.Popen([sys.executable, "-m", "analytics.shard", f"{i}/{N}", "--cycles", "2",
                               "--at", END.isoformat()], cwd=ROOT,
                              env={**env, "PYTHONHASHSEED": str(i + 1)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(N)]
    reports = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))

    # every device's series ran in exactly one detector process
    devices = [set(r["devices"]) for r in reports]
    assert set().union(*devices) == set(REGISTRY.devices) and sum(map(len, devices)) == len(REGISTRY.devices)
    assert all(devices) and [r["shard"] for r in reports] == [f"{i}/{N}" for i in range(N)]
    # every condition raised by exactly one of them
    raised = [set(r["raised"]) for r in reports]
    assert sum(map(len, raised)) == len(set().union(*raised))

    # one detector over the same data raises the same incidents (in its own incidents database)
    store = SQLiteStore(telemetry, REGISTRY)
    ref_db = IncidentStore(tmp_path / "reference.sqlite")
    ref = DetectionService(REGISTRY, store, ref_db, clock=lambda: end_ns)
    ref.cycle()
    ref.cycle()
    ref_db.close()
    store.close()
    sharded, per_key = _incidents(tmp_path / "incidents.sqlite")
    single, _ = _incidents(tmp_path / "reference.sqlite")
    assert sharded == single
    assert set(per_key.values()) == {2}, "each incident exists once and was opened once"

    (router,) = [i for i in sharded if i[0] == "silence:yty-router"]
    members = {m for m, _ in router[4]}
    assert router[1] == "uplink_down" and members <= set(yty) - {"yty-router"} and len(members) >= 4
    assert {owner(m) for m in members} - {owner("yty-router")}, "parent and children in different shards"
    assert "silence:yty-router" in raised[owner("yty-router")]
    assert any(i[1] == "limit" and "water_level" in i[0] for i in sharded)
    # the devices behind the cut uplink raised nothing of their own, in whichever shard they are
    assert not {k for k in set().union(*raised) if any(k.endswith(":" + d) for d in yty if d != "yty-router")}
