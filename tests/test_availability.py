"""Availability from incident history: scenarios whose answers were computed by hand.

Times are local (Asia/Ho_Chi_Minh, UTC+7).  Incidents go through the real
IncidentStore (opened and resolved by reconcile, as the detector does) and the
windows through the real MaintenanceStore; the figures come out of
analytics.availability.load, the path the API and the report use.
"""

from __future__ import annotations

import random
from datetime import datetime

import pytest

from analytics import periods
from analytics.availability import compute, intersect, load, merge, subtract
from analytics.incidents import Condition, Incident, IncidentStore
from analytics.maintenance import MaintenanceError, MaintenanceStore, Window
from device_profiles import load_registry

TZ = periods.TZ
MIN = 60 * 10**9


def t(text: str) -> int:
    """Local time 'YYYY-MM-DD HH:MM' -> epoch ns."""
    return int(datetime.fromisoformat(text).replace(tzinfo=TZ).timestamp()) * 10**9


@pytest.fixture(scope="module")
def reg():
    return load_registry()


@pytest.fixture
def db(tmp_path):
    incidents = IncidentStore(tmp_path / "incidents.sqlite", clear_hold_s=0, reopen_s=0)
    windows = MaintenanceStore(tmp_path / "incidents.sqlite")
    yield incidents, windows
    incidents.close()
    windows.close()


def outage(store: IncidentStore, reg, device: str, start: str, end: str | None, kind: str = "silence",
           members: tuple[str, ...] = ()) -> None:
    """One outage incident on ``device``, opened at ``start`` and (if given) resolved at ``end``."""
    dev = reg.devices[device]
    c = Condition(key=f"silence:{device}", kind=kind, severity="critical", title=f"{kind} {device}",
                  cause=f"test: {kind}", site=dev.site, district=dev.district, device=device,
                  started_ns=t(start), members=tuple((m, "unreachable (inferred)") for m in members))
    store.reconcile([c], t(start))
    if end is not None:
        store.reconcile([c], t(end))
        store.reconcile([], t(end))  # clear_hold_s=0: resolved at the last time it was seen


def window(windows: MaintenanceStore, reg, start: str, end: str, site=None, device=None):
    return windows.add(reg, site=site, device=device, start_ns=t(start), end_ns=t(end), reason="test work",
                       created_by="test", now_ns=t(start))


def units_in(reg, district: str) -> int:
    """Unit sites (sites holding devices) in a district: the denominator of a district's commune-minutes."""
    return len({d.site for d in reg.devices.values() if d.district == district})


DAY = periods.parse("day", "2026-10-05")
AFTER = t("2026-11-01 00:00")


def test_interval_arithmetic():
    assert merge([(5, 7), (1, 3), (2, 4), (7, 9), (10, 10)]) == [(1, 4), (5, 9)]
    assert subtract([(0, 10), (20, 30)], [(2, 4), (8, 22)]) == [(0, 2), (4, 8), (22, 30)]
    assert intersect([(0, 10), (20, 30)], [(5, 25), (28, 40)]) == [(5, 10), (20, 25), (28, 30)]


def test_random_histories_agree_with_counting_minutes(reg):
    """60 random days at Y Tý, checked against a minute-by-minute count (the slow, obvious way)."""
    rnd = random.Random(8)
    devs = ["yty-router", "yty-ups", "yty-spk-1"]
    for case in range(60):
        incs, wins = [], []
        for n in range(rnd.randrange(0, 6)):
            dev, s = rnd.choice(devs), rnd.randrange(-60, 1440)
            e = s + rnd.randrange(1, 300)
            incs.append(Incident(n, f"silence:{dev}", "silence", "warning", "resolved", "", "", "y_ty", "bat_xat",
                                 dev, DAY.start_ns + s * MIN, 0, DAY.start_ns + e * MIN, None, {}))
        for n in range(rnd.randrange(0, 3)):
            s = rnd.randrange(0, 1440)
            site, dev = rnd.choice([("y_ty", None), (None, "yty-router"), (None, "yty-ups")])
            wins.append(Window(n, site, dev, DAY.start_ns + s * MIN, DAY.start_ns + (s + rnd.randrange(1, 200)) * MIN,
                               "r", "t", 0))
        a = compute(reg, incs, wins, DAY, AFTER)

        def down(dev, m, incs=incs):
            return any(i.device == dev and i.started_ns <= DAY.start_ns + m * MIN < i.resolved_ns for i in incs)

        def excused(dev, m, wins=wins):
            ts = DAY.start_ns + m * MIN
            return any(w.start_ns <= ts < w.end_ns and (w.device == dev or w.site == "y_ty") for w in wins)

        for dev in devs:
            f = a.devices[dev].figures
            mins = [m for m in range(1440) if down(dev, m) and not excused(dev, m)]
            assert f.downtime_min == len(mins), (case, dev)
            assert f.scheduled_ns // MIN == sum(1 for m in range(1440) if not excused(dev, m)), (case, dev)
        site = sum(1 for m in range(1440) if any(down(d, m) and not excused(d, m) for d in devs))
        assert a.sites["y_ty"].figures.downtime_min == site, case


def test_periods_follow_the_province_clock():
    oct_ = periods.parse("month", "2026-10")
    assert datetime.fromtimestamp(oct_.start_ns / 1e9).astimezone(TZ).isoformat() == "2026-10-01T00:00:00+07:00"
    assert oct_.start_ns == int(datetime.fromisoformat("2026-09-30T17:00:00+00:00").timestamp()) * 10**9
    assert oct_.length_ns == 31 * 1440 * MIN
    assert periods.parse("week", "2026-10-07").label == "2026-W41"
    assert periods.parse("week", "2026-W41").start_ns == t("2026-10-05 00:00")
    assert periods.parse("day", "2026-10-05").length_ns == 1440 * MIN
    with pytest.raises(periods.PeriodError, match="YYYY-MM"):
        periods.parse("month", "2026-13")
    with pytest.raises(periods.PeriodError, match="not a day"):
        periods.parse("day", "5/10/2026")


def test_overlapping_outages_at_one_site_are_one_site_outage(db, reg):
    incidents, windows = db
    outage(incidents, reg, "yty-spk-1", "2026-10-05 10:00", "2026-10-05 11:00")
    outage(incidents, reg, "yty-ups", "2026-10-05 10:30", "2026-10-05 12:00")
    a = load(reg, incidents, windows, DAY, AFTER)
    spk, ups = a.devices["yty-spk-1"].figures, a.devices["yty-ups"].figures
    assert (spk.downtime_min, spk.outages, ups.downtime_min, ups.outages) == (60, 1, 90, 1)
    site = a.sites["y_ty"].figures
    # Union 10:00-12:00: 120 min, one outage; 1,320 of 1,440 minutes up.
    assert (site.downtime_min, site.outages, site.mttr_min) == (120, 1, 120)
    assert site.uptime_pct == pytest.approx(100 * 1320 / 1440)  # 91.667 %
    assert site.mtbf_h == pytest.approx(1320 / 60)
    n = units_in(reg, "bat_xat")
    district = a.sites["bat_xat"].figures
    assert district.uptime_pct == pytest.approx(100 * (1 - 120 / (1440 * n)))
    assert (district.outages, a.sites["bat_xat"].units) == (1, n)
    assert a.devices["yty-router"].figures.uptime_pct == 100
    assert [o.downtime_ns // MIN for o in a.outages] == [90, 60]  # longest first


def test_parent_outage_counts_against_the_parent_not_the_children(db, reg):
    incidents, windows = db
    # A loudspeaker falls silent first (its own incident), then the router goes and the detector
    # groups the loudspeakers under it: the loudspeaker's own 15 minutes count, the rest is the router's.
    outage(incidents, reg, "yty-spk-1", "2026-10-05 08:50", "2026-10-05 09:05")
    outage(incidents, reg, "yty-router", "2026-10-05 09:00", "2026-10-05 10:00", kind="uplink_down",
           members=("yty-spk-1", "yty-spk-2", "yty-spk-3", "yty-ups"))
    a = load(reg, incidents, windows, DAY, AFTER)
    assert a.devices["yty-router"].figures.downtime_min == 60
    assert a.devices["yty-spk-1"].figures.downtime_min == 15
    assert a.devices["yty-spk-2"].figures.downtime_min == 0
    assert a.devices["yty-spk-2"].figures.uptime_pct == 100
    assert a.devices["yty-spk-2"].unreachable_ns == 60 * MIN  # shown, not counted
    site = a.sites["y_ty"].figures
    assert (site.downtime_min, site.outages) == (70, 1)  # 08:50-10:00
    top = a.outages[0]
    assert (top.incident.device, top.downtime_ns // MIN, top.unreachable) == ("yty-router", 60, 4)


def test_maintenance_that_starts_during_an_outage_excuses_only_its_part(db, reg):
    incidents, windows = db
    outage(incidents, reg, "yty-router", "2026-10-05 09:00", "2026-10-05 11:00", kind="uplink_down",
           members=("yty-spk-1",))
    window(windows, reg, "2026-10-05 10:00", "2026-10-05 12:00", site="y_ty")
    a = load(reg, incidents, windows, DAY, AFTER)
    r = a.devices["yty-router"].figures
    # Scheduled 1,440 - 120 = 1,320 min; down 09:00-10:00 = 60 min.
    assert (r.scheduled_ns // MIN, r.downtime_min, r.outages, r.maintenance_min) == (1320, 60, 1, 120)
    assert r.uptime_pct == pytest.approx(100 * 1260 / 1320)  # 95.455 %
    assert (r.mttr_min, r.mtbf_h) == (60, 21)
    assert a.devices["yty-spk-1"].unreachable_ns == 60 * MIN
    assert a.sites["y_ty"].figures.uptime_pct == pytest.approx(100 * 1260 / 1320)
    o = a.outages[0]
    assert (o.downtime_ns // MIN, o.maintenance_ns // MIN) == (60, 60)
    # A window on the district covers its communes too.
    other = load(reg, incidents, windows, DAY, AFTER).sites["bat_xat"].figures
    assert other.maintenance_ns == 120 * MIN


def test_maintenance_inside_an_outage_leaves_one_outage_and_a_covered_one_none(db, reg):
    incidents, windows = db
    outage(incidents, reg, "yty-router", "2026-10-05 09:00", "2026-10-05 12:00")
    window(windows, reg, "2026-10-05 10:00", "2026-10-05 11:00", device="yty-router")
    outage(incidents, reg, "yty-ups", "2026-10-05 14:00", "2026-10-05 15:00")
    window(windows, reg, "2026-10-05 13:30", "2026-10-05 15:30", device="yty-ups")
    a = load(reg, incidents, windows, DAY, AFTER)
    r, u = a.devices["yty-router"].figures, a.devices["yty-ups"].figures
    assert (r.downtime_min, r.outages, r.mttr_min, r.scheduled_ns // MIN) == (120, 1, 120, 1380)
    assert (u.downtime_min, u.outages, u.mttr_min, u.mtbf_h) == (0, 0, None, None)
    # A device's window does not shorten its site's scheduled time; its outage is excused all the same.
    s = a.sites["y_ty"].figures
    assert (s.scheduled_ns // MIN, s.downtime_min, s.outages) == (1440, 120, 1)


def test_month_boundary_in_local_time(db, reg):
    incidents, windows = db
    # 23:00 on 31 October to 01:00 on 1 November, local: 16:00Z-18:00Z on 31 October.
    outage(incidents, reg, "dc-core-sw-1", "2026-10-31 23:00", "2026-11-01 01:00")
    # 00:30 local on 1 October is 17:30Z on 30 September: October's, not September's.
    outage(incidents, reg, "dc-core-sw-2", "2026-10-01 00:30", "2026-10-01 00:45")
    now = t("2026-12-01 00:00")
    october = load(reg, incidents, windows, periods.parse("month", "2026-10"), now)
    november = load(reg, incidents, windows, periods.parse("month", "2026-11"), now)
    september = load(reg, incidents, windows, periods.parse("month", "2026-09"), now)
    assert october.devices["dc-core-sw-1"].figures.downtime_min == 60
    assert november.devices["dc-core-sw-1"].figures.downtime_min == 60
    assert october.devices["dc-core-sw-2"].figures.downtime_min == 15
    assert september.sites["dc_laocai"].figures.downtime_min == 0
    dc = october.sites["dc_laocai"].figures
    assert (dc.downtime_min, dc.outages) == (75, 2)
    assert dc.uptime_pct == pytest.approx(100 * (44640 - 75) / 44640)  # 31 days = 44,640 min
    # The province sums every unit site: the data center and every commune.
    units = len({d.site for d in reg.devices.values()})
    assert october.sites["lao_cai"].units == units
    assert october.sites["lao_cai"].figures.uptime_pct == pytest.approx(100 * (1 - 75 / (44640 * units)))


def test_an_open_outage_counts_up_to_now(db, reg):
    incidents, windows = db
    outage(incidents, reg, "yty-router", "2026-10-05 22:00", None, kind="uplink_down")
    now = t("2026-10-05 23:30")
    a = load(reg, incidents, windows, DAY, now)
    r = a.devices["yty-router"].figures
    assert (a.until_ns, r.scheduled_ns // MIN, r.downtime_min) == (now, 1410, 90)
    with pytest.raises(ValueError, match="has not started"):
        load(reg, incidents, windows, periods.parse("day", "2026-10-06"), now)


def test_windows_are_checked(db, reg):
    _, windows = db
    cases = [
        ({"site": "y_ty", "device": "yty-router"}, "give exactly one"),
        ({"site": None, "device": None}, "give exactly one"),
        ({"site": "nowhere", "device": None}, "unknown site 'nowhere'"),
        ({"site": None, "device": "yty-nothing"}, "unknown device 'yty-nothing'"),
    ]
    for where, message in cases:
        with pytest.raises(MaintenanceError, match=message):
            windows.add(reg, **where, start_ns=0, end_ns=MIN, reason="x", created_by="t", now_ns=0)
    with pytest.raises(MaintenanceError, match="end: the window must end after it starts"):
        windows.add(reg, site="y_ty", device=None, start_ns=MIN, end_ns=MIN, reason="x", created_by="t", now_ns=0)
    with pytest.raises(MaintenanceError, match="at most 31 days"):
        windows.add(reg, site="y_ty", device=None, start_ns=0, end_ns=32 * 1440 * MIN, reason="x", created_by="t",
                    now_ns=0)
    with pytest.raises(MaintenanceError, match="reason"):
        windows.add(reg, site="y_ty", device=None, start_ns=0, end_ns=MIN, reason="  ", created_by="t", now_ns=0)
    w = windows.add(reg, site="y_ty", device=None, start_ns=0, end_ns=MIN, reason=" fibre splice ", created_by="t",
                    now_ns=0)
    assert windows.get(w.id).reason == "fibre splice"
    assert windows.delete(w.id) and not windows.delete(w.id) and windows.get(w.id) is None
