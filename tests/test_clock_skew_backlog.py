"""A backlog of the pipeline is not a skewed clock (ingest/clock.py, the fleet lag; docs/time.md).

When the collector is slowed or stopped (a full spool, a restart with a
persistent MQTT session) the broker holds the messages and delivers them
minutes late at about the live pace: every device then shows the same large,
steady offset.  A bad clock is one device.  Without servers; the same thing
through mosquitto is tests/test_faults.py::test_spool_full_means_backpressure_not_loss.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np
import pytest

from device_profiles import load_registry
from ingest.clock import CORRECTED, LATE, LIVE, SKEWED, ClockTracker
from storage.base import Point

BASE = load_registry()
S = 1_000_000_000
T0 = 1_790_000_000 * S
MIN = 60 * S
FLEET = sorted(BASE.devices)[::5]  # 68 devices of every kind, reporting every 10 to 60 s
BAD = "cocleu-aq-1"  # not in FLEET: the device whose clock is off, where one is


def registry(devices, **reporting):
    """``devices`` alone (no uplink or power feed), every kind's reporting contract changed by ``reporting``."""
    kinds = {k: p.model_copy(update={"reporting": p.reporting.model_copy(update=reporting)})
             for k, p in BASE.kinds.items()}
    devs = {d: dataclasses.replace(BASE.devices[d], uplink=None, power=None) for d in devices}
    return dataclasses.replace(BASE, kinds=kinds, devices=devs)


def traffic(devices, minutes, delay_s, clock_off=None, seed=1):
    """(arrival ns, device, measurement ns) of every message, in arrival order: each device reports one reading
    at its interval from T0 on, delivered ``delay_s(measured_ns)`` s late (plus a network delay), stamped by a
    clock ``clock_off[device]`` s behind."""
    rng, clock_off, out = np.random.default_rng(seed), clock_off or {}, []
    for i, d in enumerate(devices):
        iv = BASE.kinds[BASE.devices[d].kind].reporting.interval_s
        m = T0 + int(rng.uniform(0, iv) * S)
        while m < T0 + minutes * MIN:
            out.append((m + int((delay_s(m) + rng.uniform(0.05, 0.5)) * S) + i, d, m - int(clock_off.get(d, 0) * S)))
            m += int(iv * S)
    return sorted(out)


def stall(start_min, held_s, drain_from_min=None):
    """The collector stops at ``start_min``: from then on the broker delivers ``held_s`` late at the live pace;
    from ``drain_from_min`` on it catches up, twice as fast as live."""
    def delay(m):
        if m < T0 + start_min * MIN:
            return 0.0
        if drain_from_min is None or m < T0 + drain_from_min * MIN:
            return held_s
        return max(0.0, held_s - 0.5 * (m - T0 - drain_from_min * MIN) / S)
    return delay


def one_by_one(tracker, msgs):
    """Per-message decisions (ClockTracker.decide, which apply uses): device -> list of (action, stored ns)."""
    out = {}
    for a, d, m in msgs:
        got, ts = tracker.decide(tracker.index[d], a, [(a - m) / S], [m])
        out.setdefault(d, []).append((got[0], ts[0]))
    return out


def in_batches(tracker, msgs, sizes):
    """The same through ClockTracker.observe, ``sizes`` messages a batch in turn."""
    out, i, k = {}, 0, 0
    while i < len(msgs):
        chunk, i, k = msgs[i:i + sizes[k % len(sizes)]], i + sizes[k % len(sizes)], k + 1
        action, ts, _ = tracker.observe(np.array([tracker.index[d] for _, d, _ in chunk]),
                                        np.array([m for _, _, m in chunk]), np.array([a for a, _, _ in chunk]))
        for (_, d, _), g, t in zip(chunk, action.tolist(), ts.tolist()):
            out.setdefault(d, []).append((g, t))
    return out


def same_state(a: ClockTracker, b: ClockTracker) -> None:
    assert a.prev_arr == b.prev_arr and a.offsets() == b.offsets()
    np.testing.assert_allclose(a.prev_off, b.prev_off, atol=1e-6)
    for x in ("v_off", "o_off"):
        np.testing.assert_allclose(getattr(a, x), getattr(b, x), atol=1e-6)
    for x in ("v_arr", "o_arr"):
        np.testing.assert_array_equal(getattr(a, x), getattr(b, x))
    assert all(np.allclose(list(r), list(s), atol=1e-6) for r, s in zip(a.ring, b.ring, strict=True))


def test_a_fleet_delivered_minutes_late_at_the_live_pace_is_stored_late_not_skewed(tmp_path, caplog):
    """The collector stopped 6 minutes, then the broker's backlog arrives at the live pace, then drains."""
    from analytics.incidents import IncidentStore
    from analytics.service import DetectionService
    from storage.sqlite import SQLiteStore

    reg = registry(FLEET)
    msgs = traffic(FLEET, 20, stall(5, 360.0, drain_from_min=14))
    tracker = ClockTracker(reg)
    caplog.set_level(logging.INFO, logger="fansipan.clock")
    store = SQLiteStore(tmp_path / "t.sqlite", reg)
    kept_n, refused, late, stalled = 0, [], 0, 0
    for a, d, m in msgs:
        dev = reg.devices[d]
        field = next(iter(reg.kinds[dev.kind].fields))
        kept, rej = tracker.apply([Point(dev.kind, d, dev.site, dev.district, m, {field: 1.0}, a)], [], "t", b"{}")
        store.write(kept, rej)
        kept_n, refused = kept_n + len(kept), refused + rej
        if m >= T0 + 5 * MIN and m < T0 + 14 * MIN:  # held at the broker, delivered six minutes late
            stalled += 1
            late += kept[0].fields.get("historical") == 1
    assert refused == [] and kept_n == len(msgs), "readings delayed by the pipeline are stored, none refused"
    assert late == stalled > 500  # ... marked historical (they are late), at their measurement time
    assert tracker.offsets() == {} and 150 < tracker.fleet_lag_s < 300  # (draining at the end)
    said = [r.getMessage() for r in caplog.records]
    assert [m for m in said if "the whole fleet's readings arrive late" in m and "not device clocks" in m]
    assert not [m for m in said if "clock off by" in m]

    incidents = IncidentStore(tmp_path / "i.sqlite")
    DetectionService(reg, store, incidents, clock=lambda: msgs[-1][0], history_s=0, lag_s=0, statistics=False).cycle()
    assert not [i.key for i in incidents.open_incidents() if i.kind == "clock_skew"]


def test_a_restarted_collector_draining_the_broker_at_the_live_pace_finds_no_clock_off():
    """A fresh tracker (no memory of the fleet): the whole registry's traffic, five minutes late from the start."""
    msgs = traffic(sorted(BASE.devices), 6, lambda m: 300.0)
    got = one_by_one(ClockTracker(BASE), msgs)
    actions = {g for d in got.values() for g, _ in d}
    assert SKEWED not in actions and actions == {LATE}


def test_one_bad_clock_among_many_is_still_found_and_the_others_are_not():
    msgs = traffic(FLEET + [BAD], 6, lambda m: 0.0, clock_off={BAD: 3600.0})
    tracker = ClockTracker(BASE)
    got = one_by_one(tracker, msgs)
    assert [g for g, _ in got[BAD]][:3] == [LATE, SKEWED, SKEWED] and {g for g, _ in got[BAD][1:]} == {SKEWED}
    assert {g for d in FLEET for g, _ in got[d]} == {LIVE}
    assert tracker.offsets() == {BAD: pytest.approx(3600.3, abs=1.0)}


@pytest.mark.parametrize("policy", ["quarantine", "correct"])
def test_a_bad_clock_during_a_backlog_is_found_and_its_estimate_leaves_the_backlog_out(policy):
    msgs = traffic(FLEET + [BAD], 16, stall(4, 420.0), clock_off={BAD: 3600.0})
    tracker = ClockTracker(registry(FLEET + [BAD], clock_policy=policy))
    got = one_by_one(tracker, msgs)
    late = [(g, t) for (a, d, m), (g, t) in zip([x for x in msgs if x[1] == BAD], got[BAD]) if a - m > 3900 * S]
    assert len(late) > 10 and {g for g, _ in late} == {CORRECTED if policy == "correct" else SKEWED}
    assert tracker.offsets()[BAD] == pytest.approx(3600.3, abs=5.0)  # the clock's error, not the broker's delay
    if policy == "correct":  # stored at its true measurement time: arrival less the backlog, not at arrival
        true = [m + 3600 * S for a, d, m in msgs if d == BAD and a - m > 3900 * S]
        assert all(abs(t - m) < 10 * S for (_, t), m in zip(late, true))
    assert {g for d in FLEET for g, _ in got[d]} <= {LIVE, LATE}


def test_a_fleet_smaller_than_fleet_min_devices_cannot_tell_a_backlog_from_bad_clocks():
    """The documented limit: five devices all 6 minutes late look like five clocks off."""
    few = FLEET[:5]
    got = one_by_one(ClockTracker(registry(few)), traffic(few, 10, stall(2, 360.0)))
    assert all(SKEWED in {g for g, _ in got[d]} for d in few)
    big = one_by_one(ClockTracker(registry(few), fleet_min_devices=5), traffic(few, 10, stall(2, 360.0)))
    assert all(SKEWED not in {g for g, _ in big[d]} for d in few)  # ... unless told a fleet that small is enough


@pytest.mark.parametrize("seed", range(4))
def test_bulk_decisions_equal_message_by_message_decisions_with_a_fleet_lag(seed):
    """observe() with the fleet lag, any batching: the same decisions and state as one message at a time."""
    rng = np.random.default_rng(seed)
    devs = FLEET[:40] + [BAD, "kimtan-aq-1"]
    off = {BAD: 3600.0, "kimtan-aq-1": -900.0} if seed % 2 else {BAD: 900.0}
    delays = [stall(3, 200.0 + 100 * seed, drain_from_min=9), lambda m: 0.0,
              lambda m: 250.0 * (1 + np.sin((m - T0) / (200.0 * S)))]  # a stall; live; a backlog that comes and goes
    msgs = traffic(devs, 14, delays[seed % 3], clock_off=off, seed=seed)
    reg = registry(devs, clock_policy="correct" if seed % 2 else "quarantine", replay_horizon_s=5000)
    ref, bulk = ClockTracker(reg), ClockTracker(reg)
    expect = one_by_one(ref, msgs)
    assert in_batches(bulk, msgs, rng.integers(1, 80, 50).tolist()) == expect
    same_state(ref, bulk)
    assert len({g for d in expect.values() for g, _ in d}) >= 3
