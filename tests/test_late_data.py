"""Late and replayed data end to end: device -> real mosquitto -> collector -> SQLite -> DetectionService.

Station A falls silent for an hour while B keeps reporting; the detector, on
a simulated clock that walks through that hour minute by minute, opens A's
silence incident.  Then A's link comes back and A replays its buffer through
the broker.  The incident must close at its true end, be annotated "data
recovered", and nobody must be paged for what the replay shows.
"""

from __future__ import annotations

import time

import pytest
import test_clock_skew_e2e as e2e
from test_clock_skew_e2e import A, B, S, world_registry

pytestmark = pytest.mark.servers
make_world = e2e.make_world  # the fixture, shared

MIN = 60 * S
HIGH = range(-40, -34)  # minutes (before the link came back) when A measured PM2.5 over its critical mark


@pytest.fixture
def outage(make_world):
    """A world where A was heard until 61 minutes ago and B throughout; the detector walked up to now."""
    n = time.time_ns() // MIN * MIN
    now = [n - 75 * MIN]
    w = make_world(world_registry(), clock=lambda: now[0])
    for m in range(-75, 0):
        now[0] = n + m * MIN
        if m < -60:
            w.live(A, now[0])
        w.live(B, now[0])
        now[0] += S
        w.detector.cycle()
    (silence,) = w.incidents.open_incidents()
    assert silence.key == "silence:" + A
    return w, n, now, silence


def _replay(w, n, minutes) -> None:
    """A publishes its buffer, ten readings a message, back to back, then one live reading."""
    buffered = [{"ts": (n + m * MIN) / S, "pm25": 200.0 if m in HIGH else 10.0} for m in minutes]
    for i in range(0, len(buffered), 10):
        w.publish(A, buffered[i:i + 10])
    w.publish(A, [{"ts": time.time(), "pm25": 11.0}])
    w.settle()


def _cycle(w, now) -> list:
    now[0] = time.time_ns()
    w.live(B, now[0])
    return w.detector.cycle()


def test_replay_after_an_hour_closes_the_outage_at_its_true_end_annotated_and_pages_nobody(outage):
    w, n, now, silence = outage
    _replay(w, n, range(-60, 0))
    stored = w.rows(A, "pm25")
    assert len(stored) == 15 + 60 + 1
    historical = {ts for ts, _, _ in w.rows(A, "historical")}
    assert len(historical) >= 58 and historical <= {n + m * MIN for m in range(-60, 0)}  # at measurement time

    changes = _cycle(w, now)
    assert [e for e, _ in changes] == ["resolved", "data_recovered"]
    inc = w.incidents.get(silence.id)
    # the replay fills the gap: A measured throughout, so its device outage ends where it began
    assert inc.status == "resolved" and inc.resolved_ns == inc.started_ns
    rec = inc.evidence["data_recovered"]
    assert rec["readings"] >= 58 and rec["device_outage"] == {A: []}
    assert len(rec["found_in_recovered_data"]) == 1 and "pm25 critical" in rec["found_in_recovered_data"][0]
    (event,) = [d for _, _, e, d in w.incidents.events(inc.id) if e == "data_recovered"]
    assert event.startswith("Đã khôi phục dữ liệu / Data recovered") and "nobody paged" in event

    # nothing paged: the PM2.5 crossing during the gap is history in the annotation, not an incident
    assert [i.key for i in w.incidents.all()] == ["silence:" + A]
    assert [e for _, _, e, _ in w.incidents.events() if e in ("opened", "reopened")] == ["opened"]

    # the same buffer replayed again (the device did not get our acknowledgement): stored once, nothing new
    events_before = w.incidents.events()
    _replay(w, n, range(-60, 0))
    assert len(w.rows(A, "pm25")) == 15 + 60 + 2  # only the new live reading is new
    assert [e for e, _ in _cycle(w, now)] == []
    assert w.incidents.events() == events_before and len(w.incidents.all()) == 1


def test_a_device_that_was_truly_down_closes_when_it_measured_again(outage):
    w, n, now, silence = outage
    _replay(w, n, range(-60, -44))  # it measured for 16 minutes, then nothing until it came back
    changes = _cycle(w, now)
    assert [e for e, _ in changes] == ["resolved", "data_recovered"]
    inc = w.incidents.get(silence.id)
    first_live = max(ts for ts, _, _ in w.rows(A, "pm25"))
    assert inc.resolved_ns == first_live  # the true end: its first measurement after the real gap
    (gap,) = inc.evidence["data_recovered"]["device_outage"][A]
    assert gap[0].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime((n - 45 * MIN) / S)))
    assert inc.evidence["data_recovered"]["found_in_recovered_data"] == []
    assert [i.key for i in w.incidents.all()] == ["silence:" + A]


def test_an_uplink_outage_with_replay_closes_when_the_link_came_back(tmp_path):
    """A commune router and the devices behind it replay after the link returns: the incident is the link's.

    Straight to the store (what the collector stores for a replay: late arrival times), no broker.
    """
    import dataclasses
    from datetime import datetime, timezone

    from analytics.incidents import IncidentStore
    from analytics.service import DetectionService
    from storage.base import Point
    from storage.sqlite import SQLiteStore

    base = e2e.BASE
    behind = ("cocleu-aq-1", "cocleu-cam-1")
    devices = {"cocleu-router": base.devices["cocleu-router"], B: dataclasses.replace(base.devices[B], uplink=None, power=None)}
    devices |= {d: dataclasses.replace(base.devices[d], power=None) for d in behind}
    reg = dataclasses.replace(base, devices=devices)
    store = SQLiteStore(tmp_path / "t.sqlite", reg)
    incidents = IncidentStore(tmp_path / "i.sqlite", clear_hold_s=0)
    n = int(datetime(2026, 7, 15, 4, 0, tzinfo=timezone.utc).timestamp()) * S
    now = [n - 75 * MIN]
    detector = DetectionService(reg, store, incidents, clock=lambda: now[0], history_s=0, lag_s=0, statistics=False)

    def point(device, ts, arrived):
        d = reg.devices[device]
        field, spec = next((f, s) for f, s in reg.kinds[d.kind].fields.items() if s.limits is None and s.type != "bool")
        return Point(d.kind, device, d.site, d.district, ts, {field: spec.min + 0.3 * (spec.max - spec.min)}, arrived)

    for half in range(-150, 0):  # every 30 s for 75 minutes; the commune's link is cut 60 minutes before n
        t = n + half * 30 * S
        store.write([point(d, t, t) for d in reg.devices if d == B or half < -120])
        now[0] = t + S
        detector.cycle()
    (cut,) = incidents.open_incidents()
    assert cut.kind == "uplink_down" and {m for m, _ in cut.members} == set(behind)

    link_back = n + 5 * S  # everything measured during the cut arrives at once, then live data again
    store.write([point(d, n + h * 30 * S, link_back) for d in ("cocleu-router", *behind) for h in range(-120, 0)])
    store.write([point(d, n + 30 * S, n + 30 * S) for d in reg.devices])
    now[0] = n + 40 * S
    changes = detector.cycle()
    assert [e for e, _ in changes] == ["resolved", "data_recovered"]
    inc = incidents.get(cut.id)
    assert inc.resolved_ns == link_back  # the link's outage: it ended when data flowed again
    rec = inc.evidence["data_recovered"]
    late = sum(1 for d in ("cocleu-router", *behind) for h in range(-120, 0)  # later than interval + jitter
               if link_back - (n + h * 30 * S) > (reg.kinds[reg.devices[d].kind].reporting.interval_s
                                                 + reg.kinds[reg.devices[d].kind].reporting.jitter_s) * S)
    assert late > 3 * 115 and rec["readings"] == late
    assert rec["device_outage"] == {d: [] for d in ("cocleu-router", *behind)}
    assert rec["link_outage"][1] == "2026-07-15T04:00:05+00:00"
    assert [i.id for i in incidents.all()] == [cut.id]


def test_the_simulators_link_replay_fault_ends_as_data_recovered(tmp_path):
    """simulator link_replay -> validator + clock tracker (the collector's steps) -> store -> detector."""
    import dataclasses
    from datetime import datetime, timezone

    from analytics.incidents import IncidentStore
    from analytics.service import DetectionService
    from ingest.clock import ClockTracker
    from ingest.validate import Validator
    from simulator.core import Simulation
    from storage.sqlite import SQLiteStore

    base = e2e.BASE
    keep = {"cocleu-router", "cocleu-aq-1", "cocleu-cam-1", "cocleu-wl-1", "kimtan-router"}
    reg = dataclasses.replace(base, devices={d: dataclasses.replace(base.devices[d], power=None) for d in keep})
    start = datetime(2026, 7, 15, 3, 0, tzinfo=timezone.utc)
    t0 = int(start.timestamp()) * S
    store = SQLiteStore(tmp_path / "t.sqlite", reg)
    incidents = IncidentStore(tmp_path / "i.sqlite", clear_hold_s=0)
    sim = Simulation(reg, faults=["link_replay:coc_leu:600:1800"], seed=3, speed=0, start=start)
    validator, tracker = Validator(reg), ClockTracker(reg)
    now = [t0]
    detector = DetectionService(reg, store, incidents, clock=lambda: now[0], history_s=0, lag_s=0, statistics=False)
    replayed = 0
    for minute in range(1, 46):
        now[0] = t0 + minute * MIN
        points, rejected = [], []
        for topic, payload, n in sim.messages(1, step_s=60):
            p, r = tracker.apply(*validator.message(topic, payload, now[0]), topic, payload)
            points += p
            rejected += r
            replayed += n if n > 1 else 0
        assert rejected == []
        store.write(points, rejected)
        detector.cycle()
    assert replayed > 0.9 * 30 * 4  # 30 minutes of the four devices at coc_leu, every 30-60 s
    (inc,) = incidents.all()
    assert inc.kind == "uplink_down" and inc.device == "cocleu-router" and inc.status == "resolved"
    rec = inc.evidence["data_recovered"]
    assert rec["readings"] > 0.9 * replayed and set(rec["device_outage"]) == {"cocleu-router", "cocleu-aq-1",
                                                                              "cocleu-cam-1", "cocleu-wl-1"}
    assert all(gaps == [] for gaps in rec["device_outage"].values())  # they measured throughout
    assert t0 + 2400 * S <= inc.resolved_ns <= t0 + 2460 * S  # the link came back at 40 min (+ one step)
