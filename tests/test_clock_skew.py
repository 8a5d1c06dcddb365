"""The clock tracker (ingest/clock.py) and the detector's reading of clock symptoms, without servers.

End to end through mosquitto: tests/test_clock_skew_e2e.py.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from device_profiles import load_registry
from ingest.clock import (
    CORRECTED,
    LATE,
    LIVE,
    SKEWED,
    TOO_OLD,
    ClockTracker,
)
from analytics.clock_health import is_clock_symptom
from ingest.validate import Validator
from storage.base import Point

BASE = load_registry()
S = 1_000_000_000
T0 = 1_790_000_000 * S  # arrival times start here (2026)
DEV = "cocleu-aq-1"  # air_quality: interval 60 s, jitter 20 s


def registry(**reporting):
    """The registry with air_quality's reporting contract changed."""
    p = BASE.kinds["air_quality"]
    kinds = {**BASE.kinds, "air_quality": p.model_copy(update={"reporting": p.reporting.model_copy(update=reporting)})}
    return dataclasses.replace(BASE, kinds=kinds)


def message(tracker, arrival_ns, offsets_s, device=DEV):
    """One message of readings measured ``offsets_s`` seconds before ``arrival_ns``: (actions, stored times)."""
    i = tracker.index[device]
    meas = [arrival_ns - int(o * S) for o in offsets_s]
    action, ts, _ = tracker.observe(np.full(len(meas), i), meas, np.full(len(meas), arrival_ns))
    return action.tolist(), ts.tolist()


def test_live_readings_with_a_steady_network_delay_are_live():
    t = ClockTracker(BASE)
    for k in range(10):
        assert message(t, T0 + k * 60 * S, [30.0])[0] == [LIVE]  # 30 s behind: within the 120 s tolerance
    assert t.offsets() == {}


def test_a_clock_steadily_behind_is_confirmed_on_the_second_message_and_quarantined():
    t = ClockTracker(BASE)
    assert message(t, T0, [3600.0])[0] == [LATE]  # alone, it could be a replay: stored as historical
    for k in range(1, 5):
        assert message(t, T0 + k * 60 * S, [3600.0 + k])[0] == [SKEWED]
    assert t.offsets()[DEV] == pytest.approx(3601.5, abs=2.0)


def test_correct_policy_shifts_to_arrival_time_and_keeps_spacing():
    t = ClockTracker(registry(clock_policy="correct"))
    message(t, T0, [3600.0])
    actions, ts = message(t, T0 + 60 * S, [3600.0, 3660.0])  # a message with two readings a minute apart
    assert actions == [CORRECTED, CORRECTED]
    assert ts[0] == T0 + 60 * S and ts[0] - ts[1] == 60 * S  # newest at arrival, spacing kept


def test_a_clock_ahead_is_corrected_at_once_under_the_correct_policy():
    t = ClockTracker(registry(clock_policy="correct"))
    actions, ts = message(t, T0, [-3600.0])
    assert actions == [CORRECTED] and ts == [T0]


def test_a_replayed_buffer_is_late_never_skewed_and_live_data_after_it_is_live():
    t = ClockTracker(BASE)
    message(t, T0, [2.0])  # live before the outage
    back = T0 + 3600 * S
    for chunk in range(6):  # an hour of buffered readings, ten per message, back to back
        offsets = [3600.0 - 60 * (chunk * 10 + j) for j in range(10)]
        actions, ts = message(t, back + chunk * S // 10, offsets)
        assert set(actions) <= {LATE, LIVE} and LATE in actions
        assert ts == [back + chunk * S // 10 - int(o * S) for o in offsets]  # stored at measurement time
    assert message(t, back + 60 * S, [1.0])[0] == [LIVE]
    assert t.offsets() == {}


def test_a_clock_that_comes_back_clears_the_skew():
    t = ClockTracker(BASE)
    for k in range(3):
        message(t, T0 + k * 60 * S, [900.0])
    assert DEV in t.offsets()
    assert message(t, T0 + 300 * S, [1.0])[0] == [LIVE]
    assert t.offsets() == {}


def test_readings_older_than_the_replay_horizon_are_refused():
    t = ClockTracker(registry(replay_horizon_s=3600))
    actions, _ = message(t, T0, [7200.0, 1800.0, 1.0])
    assert actions == [TOO_OLD, LATE, LIVE]


def test_the_array_api_interleaves_devices_and_matches_message_by_message():
    reg = BASE
    a, b = "cocleu-aq-1", "kimtan-aq-1"
    bulk, single = ClockTracker(reg), ClockTracker(reg)
    dev, meas, arr = [], [], []
    for k in range(4):
        for d, off in ((a, 3600.0), (b, 1.0)):
            dev.append(bulk.index[d])
            arr.append(T0 + k * 60 * S)
            meas.append(T0 + k * 60 * S - int(off * S))
    action, _, _ = bulk.observe(np.array(dev), np.array(meas), np.array(arr))
    expect = [message(single, arr[j], [(arr[j] - meas[j]) / S], single.devices[dev[j]])[0][0] for j in range(len(dev))]
    assert action.tolist() == expect == [LATE, LIVE, SKEWED, LIVE, SKEWED, LIVE, SKEWED, LIVE]
    assert len(bulk.ring) == len(reg.devices) and {r.maxlen for r in bulk.ring} == {8}  # bounded per device


def point(ts_ns, arrived_ns, device=DEV):
    d = BASE.devices[device]
    return Point("air_quality", device, d.site, d.district, ts_ns, {"pm25": 10.0}, arrived_ns)


def test_apply_marks_quarantines_and_notes():
    t = ClockTracker(BASE)
    kept, rej = t.apply([point(T0 - 3600 * S, T0)], [], "topic", b"{}")
    assert [p.fields.get("historical") for p in kept] == [1] and rej == []
    kept, rej = t.apply([point(T0, T0 + 3600 * S)], [], "topic", b'{"pm25": 10}')
    assert kept == [] and [r.reason for r in rej] == ["clock_skew"]
    assert "3600 s behind arrival" in rej[0].detail and "NTP" in rej[0].detail and rej[0].raw == b'{"pm25": 10}'

    c = ClockTracker(registry(clock_policy="correct"))
    c.apply([point(T0 - 3600 * S, T0)], [], "topic", b"{}")
    notes = []
    for k in range(1, 3):  # two corrected messages within a minute: one evidence row
        kept, rej = c.apply([point(T0 + k * 30 * S - 3600 * S, T0 + k * 30 * S)], [], "topic", b"{}")
        assert kept[0].fields["time_corrected"] == 1 and kept[0].ts_ns == T0 + k * 30 * S
        notes += rej
    assert [r.reason for r in notes] == ["clock_skew"] and notes[0].detail.startswith("evidence, not a refusal")


@pytest.mark.parametrize("reason, detail, expected", [
    ("clock_skew", "anything", True),
    ("bad_timestamp", "measurement time 1970-01-01T00:00:00+00:00 is before 2000: the device clock is not set", True),
    ("bad_timestamp", "reading 2 of 3: measurement time 2026-01-01T00:00:00+00:00 is 3600 s ahead of arrival; ...", True),
    ("bad_timestamp", "timestamp 'yesterday' is not RFC 3339", False),  # unreadable: the payload, not the clock
    ("bad_timestamp", "reading measured at 2026-01-01T00:00:00+00:00 arrived 9000 s later: older than ...", False),
    ("out_of_range", "measurement time ... is before 2000", False),
])
def test_which_quarantine_rows_are_clock_symptoms(reason, detail, expected):
    assert is_clock_symptom(reason, detail) is expected


def test_validator_lets_a_clock_ahead_through_only_for_the_tracker_to_correct():
    topic = "laocai/coc_leu/air_quality/cocleu-aq-1"
    ahead = f'{{"ts": {(T0 + 3600 * S) // S}, "pm25": 10.0}}'.encode()
    _, rej = Validator(BASE).message(topic, ahead, T0)
    assert [r.reason for r in rej] == ["bad_timestamp"]
    pts, rej = Validator(registry(clock_policy="correct")).message(topic, ahead, T0)
    assert len(pts) == 1 and rej == []
    for reg in (BASE, registry(clock_policy="correct")):  # 1970 is never telemetry, whatever the policy
        pts, rej = Validator(reg).message(topic, b'{"ts": 0, "pm25": 10.0}', T0)
        assert pts == [] and "before 2000" in rej[0].detail


def test_the_simulators_clock_skew_fault_is_a_clock_incident_not_a_silent_device(tmp_path):
    """Before, every reading of a skewed camera was refused, and the camera looked silent."""
    from datetime import datetime, timezone

    from analytics.incidents import IncidentStore
    from analytics.service import DetectionService
    from simulator.core import Simulation
    from storage.sqlite import SQLiteStore

    reg = dataclasses.replace(BASE, devices={k: d for k, d in BASE.devices.items() if d.site == "coc_leu"})
    start = datetime(2026, 7, 15, 3, 30, tzinfo=timezone.utc)
    store = SQLiteStore(tmp_path / "t.sqlite", reg)
    incidents = IncidentStore(tmp_path / "i.sqlite")
    sim = Simulation(reg, faults=["clock_skew:cocleu-cam-1"], seed=5, speed=0, start=start)
    validator = Validator(reg)
    now = [int(start.timestamp()) * S]
    service = DetectionService(reg, store, incidents, clock=lambda: now[0], history_s=0, lag_s=0, statistics=False)
    for minute in range(1, 7):
        now[0] = int(start.timestamp()) * S + minute * 60 * S
        points, rejected = [], []
        for topic, payload, _ in sim.messages(1, step_s=60):
            p, r = validator.message(topic, payload, now[0])
            points += p
            rejected += r
        store.write(points, rejected)
        service.cycle()
    found = {i.key: i for i in incidents.open_incidents()}
    assert "silence:cocleu-cam-1" not in found
    inc = found["clock:cocleu-cam-1"]
    assert inc.kind == "clock_skew" and inc.severity == "warning" and "ahead of arrival" in inc.evidence["last_symptom"]
    assert set(found) == {"clock:cocleu-cam-1"}  # nothing else at a quiet ward


@pytest.mark.parametrize("seed", range(1, 7))
def test_bulk_decisions_equal_message_by_message_decisions(seed):
    """observe() decides in-sync messages in bulk: it must agree with _message, the one-at-a-time reference."""
    rng = np.random.default_rng(seed)
    reg = registry(replay_horizon_s=5000)
    ref, bulk = ClockTracker(reg), ClockTracker(reg)
    devs = [ref.index[d] for d in ("cocleu-aq-1", "kimtan-aq-1", "binhminh-aq-1")]
    msgs = []  # (device, arrival, offsets)
    clock = T0
    for _ in range(400):
        clock += int(rng.integers(1, 40)) * S
        d = devs[int(rng.integers(len(devs)))]
        mode = rng.choice(["live", "live", "live", "late", "skew", "ahead"])
        base = {"live": rng.uniform(0, 90), "late": rng.uniform(100, 9000), "skew": 3600.0, "ahead": -900.0}[mode]
        msgs.append((d, clock, [base + 60 * j for j in range(int(rng.integers(1, 4)))]))
    expect_a, expect_t = [], []
    for d, a, offs in msgs:
        got, t = ref.decide(d, a, offs, [a - int(o * S) for o in offs])
        expect_a += got
        expect_t += t
    got_a, got_t, i = [], [], 0
    while i < len(msgs):
        n = int(rng.integers(1, 30))
        chunk = msgs[i:i + n]
        i += n
        dev = [d for d, _, offs in chunk for _ in offs]
        arr = [a for _, a, offs in chunk for _ in offs]
        meas = [a - int(o * S) for _, a, offs in chunk for o in offs]
        action, ts, _ = bulk.observe(np.array(dev), np.array(meas), np.array(arr))
        got_a += action.tolist()
        got_t += ts.tolist()
    assert got_a == expect_a and got_t == expect_t
    assert len(set(expect_a)) >= 4  # the sequence did exercise late, skewed and too-old readings
    assert all(np.allclose(list(b), list(r), atol=1e-6) for b, r in zip(bulk.ring, ref.ring, strict=True))
    assert bulk.prev_arr == ref.prev_arr  # (offsets above: the reference got them exact, bulk from ns)
