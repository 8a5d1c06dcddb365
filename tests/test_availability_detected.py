"""Availability from what the real detector raised: the API tests' seeded world (tests/test_api.py:
70 simulated minutes, Y Tý's uplink cut 30 minutes in, the detector's topology grouping the loudspeakers
behind the router).  Shares that session-wide world with the API tests, so it costs little in the suite.
"""

from __future__ import annotations

import pytest
from test_api import REGISTRY, shared_world

from analytics.availability import compute, fetch, load
from analytics.incidents import IncidentStore
from analytics.maintenance import MaintenanceStore
from analytics.periods import Period

MIN = 60 * 10**9


@pytest.fixture(scope="module")
def detected(tmp_path_factory, request):
    world = shared_world(tmp_path_factory, request)
    path = world.private_incidents(tmp_path_factory.mktemp("detected"))  # windows are added to a copy
    incidents, windows = IncidentStore(path), MaintenanceStore(path)
    yield world, incidents, windows
    incidents.close()
    windows.close()


def test_the_cut_uplink_is_the_routers_downtime_not_the_loudspeakers(detected):
    world, incidents, windows = detected
    period = Period("range", "world", world.start_ns, world.end_ns)
    a = load(REGISTRY, incidents, windows, period, world.end_ns)
    cut = next(o for o in a.outages if o.incident.device == "yty-router")
    assert cut.incident.kind == "uplink_down" and cut.incident.resolved_ns is None  # still cut at the end
    router = a.devices["yty-router"].figures
    # Open until "now": cut 30 minutes into 70, noticed after the router's missed reports.
    assert router.downtime_ns == world.end_ns - cut.incident.started_ns
    assert 30 <= router.downtime_min <= 41 and router.outages == 1
    members = [d for d, _ in cut.incident.members]
    assert any(d.startswith("yty-spk") for d in members)
    for d in members:
        dev = a.devices[d]
        assert dev.unreachable_ns > 0, d
        assert dev.figures.downtime_ns < router.downtime_ns, d  # at most its own minutes before the grouping
    yty = a.sites["y_ty"].figures
    assert yty.downtime_ns >= router.downtime_ns and yty.scheduled_ns == 70 * MIN
    assert yty.uptime_pct == pytest.approx(100 * (70 * MIN - yty.downtime_ns) / (70 * MIN))
    assert a.sites["coc_leu"].figures.uptime_pct == 100 and a.sites["coc_leu"].figures.outages == 0


def test_maintenance_over_the_cut_excuses_it(detected):
    world, incidents, windows = detected
    period = Period("range", "world", world.start_ns, world.end_ns)
    w = windows.add(REGISTRY, site="y_ty", device=None, start_ns=world.start_ns + 25 * MIN, end_ns=world.end_ns,
                    reason="planned fibre work", created_by="test", now_ns=world.start_ns)
    try:
        incs, wins = fetch(incidents, windows, period.start_ns, period.end_ns)
        a = compute(REGISTRY, incs, wins, period, world.end_ns)
        router = a.devices["yty-router"].figures
        assert (router.downtime_ns, router.outages, router.maintenance_ns) == (0, 0, 45 * MIN)
        assert router.scheduled_ns == 25 * MIN and router.uptime_pct == 100
    finally:
        windows.delete(w.id)
