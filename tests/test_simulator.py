"""The simulator: valid readings, schedules, faults, exact counts, determinism; no broker needed
(except the last test, which publishes through a real mosquitto)."""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from datetime import datetime, timedelta, timezone

import orjson
import pytest

from device_profiles.loader import load_registry
from simulator.core import Simulation
from simulator.faults import Fault
from simulator.formats import parse_readings

# 05:15 local (UTC+7) on 15 July 2025: the morning loudspeaker window opens and the lamps go off in the first hour.
DAWN = datetime(2025, 7, 14, 22, 15, tzinfo=timezone.utc)
LOCAL = 7 * 3600


@pytest.fixture(scope="module")
def registry():
    return load_registry()


def sites(registry, *site_ids):
    """The registry cut down to the devices of ``site_ids`` (their dependencies live on the same site)."""
    return dataclasses.replace(registry, devices={k: d for k, d in registry.devices.items() if d.site in site_ids})


def parse(payload: bytes) -> list[dict]:
    """Readings of one payload: JSON object/list, or line protocol (values typed as sent)."""
    special = parse_readings(payload)  # senml, gateway, sparkplug_b (simulator/formats.py)
    if special is not None:
        return special
    if payload[:1] in (b"{", b"["):
        doc = orjson.loads(payload)
        return doc if isinstance(doc, list) else [doc]
    out = []
    for line in payload.decode().split("\n"):
        head, fields, ts = line.split(" ")
        row = {"ts": int(ts) / 1e9, "_head": head}
        for kv in fields.split(","):
            k, v = kv.split("=")
            row[k] = (v == "true") if v in ("true", "false") else int(v[:-1]) if v.endswith("i") else float(v)
        out.append(row)
    return out


def collect(sim: Simulation, n_steps: int, step_s: float = 300.0, only: set | None = None):
    """{device: [reading, ...]} of valid messages (of the ``only`` devices), plus the raw (topic, payload, n) list."""
    msgs = list(sim.messages(n_steps, step_s))
    by_dev = collections.defaultdict(list)
    for topic, payload, n in msgs:
        dev = topic.rsplit("/", 1)[1]
        if n and (only is None or dev in only):
            by_dev[dev].extend(parse(payload))
    return by_dev, msgs


@pytest.fixture(scope="module")
def dawn_run(registry):
    sim = Simulation(registry, seed=1, start=DAWN)
    by_dev, msgs = collect(sim, 12)  # 1 simulated hour
    return sim, by_dev, msgs


def test_every_kind_sends_valid_typed_readings(registry, dawn_run):
    sim, by_dev, msgs = dawn_run
    kinds_seen = set()
    for topic, payload, n in msgs:
        dev = registry.devices[topic.rsplit("/", 1)[1]]
        profile = registry.kinds[dev.kind]
        assert topic == profile.topic.format(site=dev.site, device=dev.id)
        rows = parse(payload)
        assert len(rows) == n == 1
        row = rows[0]
        if profile.format == "line_protocol":
            assert row.pop("_head") == f"{dev.kind},device={dev.id}"
        ts = row.pop("ts")
        assert isinstance(ts, float) and DAWN.timestamp() <= ts < DAWN.timestamp() + 3601
        assert set(row) == set(profile.fields), dev.kind
        for name, value in row.items():
            spec = profile.fields[name]
            want = {"float": float, "int": int, "bool": bool}[spec.type]
            assert type(value) is want, (dev.kind, name, value)
            if spec.type != "bool":
                assert spec.min <= value <= spec.max, (dev.kind, name, value)
        kinds_seen.add(dev.kind)
    assert kinds_seen == {d.kind for d in registry.devices.values()}
    assert sim.stats.published_readings == len(msgs) == sum(sim.stats.per_kind.values())
    assert sim.stats.malformed_by_reason == {}


def test_loudspeakers_report_only_inside_duty_windows(registry, dawn_run):
    _sim, by_dev, _msgs = dawn_run
    windows = registry.kinds["ip_loudspeaker"].reporting.duty_cycle.windows
    spans = [(w.start.hour * 3600 + w.start.minute * 60, w.end.hour * 3600 + w.end.minute * 60) for w in windows]
    speakers = [d.id for d in registry.devices_of("ip_loudspeaker")]
    assert all(by_dev[s] for s in speakers)
    for s in speakers:
        for row in by_dev[s]:
            sod = (row["ts"] + LOCAL) % 86400
            assert any(a <= sod < b + 1 for a, b in spans), (s, sod / 3600)


def test_street_lights_switch_off_at_dawn(dawn_run):
    _sim, by_dev, _msgs = dawn_run
    lights = [rows for dev, rows in by_dev.items() if "-light-" in dev]
    assert lights
    for rows in lights:
        early = [r for r in rows if (r["ts"] + LOCAL) % 86400 < 5 * 3600 + 25 * 60]
        late = [r for r in rows if (r["ts"] + LOCAL) % 86400 > 6 * 3600]
        assert early and all(r["lamp_on"] and r["dim_level"] > 0 for r in early)
        assert late and all(not r["lamp_on"] and r["dim_level"] == 0 for r in late)


def test_uplink_cut_silences_exactly_the_commune(registry):
    sim = Simulation(registry, faults=[Fault.parse("uplink_cut:y_ty:1800:1800")], seed=2, start=DAWN)
    by_dev, _ = collect(sim, 18)
    t0 = DAWN.timestamp()
    at_site = {d.id for d in registry.devices.values() if d.site == "y_ty"}
    assert any(registry.devices[d].kind == "commune_router" for d in at_site)
    in_cut = {d for d, rows in by_dev.items() if any(t0 + 1800 <= r["ts"] < t0 + 3600 for r in rows)}
    assert not in_cut & at_site
    steady = {d.id for d in registry.devices.values() if registry.kinds[d.kind].reporting.duty_cycle is None}
    assert steady - at_site <= in_cut  # everybody else keeps reporting
    for d in at_site & steady:  # before and after the cut, the commune reports
        assert any(r["ts"] < t0 + 1800 for r in by_dev[d]) and any(r["ts"] >= t0 + 3600 for r in by_dev[d])


def test_power_loss_drains_the_ups_then_the_commune_goes_dark(registry):
    sim = Simulation(sites(registry, "ta_van"), faults=[Fault.parse("power_loss:ta_van:600")], seed=2, start=DAWN)
    by_dev, _ = collect(sim, 12, only={"tavan-ups", "tavan-wl-1", "tavan-router"})
    t0 = DAWN.timestamp()
    ups = [r for r in by_dev["tavan-ups"]]
    on_batt = [r for r in ups if r["on_battery"]]
    assert on_batt and all(r["input_voltage_v"] == 0 for r in on_batt)
    assert min(r["battery_charge_pct"] for r in on_batt) < 10 and max(r["ts"] for r in ups) < t0 + 1800
    assert all(not r["on_battery"] for r in ups if r["ts"] < t0 + 600)
    assert max(r["ts"] for r in by_dev["tavan-wl-1"]) < t0 + 1800
    assert max(r["ts"] for r in by_dev["tavan-router"]) > t0 + 3000  # the router is not on the UPS


def test_stuck_sensor_repeats_its_values(registry):
    sim = Simulation(sites(registry, "coc_leu"), faults=[Fault.parse("stuck_sensor:cocleu-wl-1:1200")], seed=3,
                     start=DAWN)
    by_dev, _ = collect(sim, 2, 1800, only={"cocleu-wl-1"})
    t0 = DAWN.timestamp()
    after = [r for r in by_dev["cocleu-wl-1"] if r["ts"] >= t0 + 1200]
    before = [r for r in by_dev["cocleu-wl-1"] if r["ts"] < t0 + 1200]
    assert len(after) > 30 and len({r["level_m"] for r in before}) > 3
    for f in ("level_m", "rain_mm", "rain_intensity_mm_h"):
        assert len({r[f] for r in after}) == 1
    assert len({r["ts"] for r in after}) == len(after)  # time goes on


def test_flood_crosses_warn_then_crit_within_the_hour(registry):
    lim = registry.kinds["water_level"].fields["level_m"].limits
    sim = Simulation(sites(registry, "coc_leu"), faults=[Fault.parse("flood:cocleu-wl-2:600")], seed=4, start=DAWN)
    by_dev, _ = collect(sim, 3, 1600, only={"cocleu-wl-2"})
    t0 = DAWN.timestamp()
    rows = by_dev["cocleu-wl-2"]
    assert all(r["level_m"] < lim.warn_above for r in rows if r["ts"] < t0 + 600)
    first_warn = min(r["ts"] for r in rows if r["level_m"] > lim.warn_above)
    first_crit = min(r["ts"] for r in rows if r["level_m"] > lim.crit_above)
    assert t0 + 600 < first_warn < first_crit <= t0 + 600 + 3600
    assert all(r["level_m"] > lim.crit_above for r in rows if r["ts"] > t0 + 600 + 3600)


def test_crac_failure_heats_the_room(registry):
    sim = Simulation(sites(registry, "dc_laocai"), faults=[Fault.parse("crac_failure:dc:0")], seed=5, start=DAWN)
    by_dev, _ = collect(sim, 1, 1800, only={"dc-crac-1", "dc-srv-01"})
    crac = by_dev["dc-crac-1"]
    rise = crac[-1]["supply_temp_c"] - crac[0]["supply_temp_c"]
    minutes = (crac[-1]["ts"] - crac[0]["ts"]) / 60
    assert 0.2 * minutes < rise < 0.4 * minutes
    assert crac[-1]["fan_speed_pct"] < 0.5 * crac[0]["fan_speed_pct"]
    srv = by_dev["dc-srv-01"]
    assert srv[-1]["inlet_temp_c"] - srv[0]["inlet_temp_c"] > 0.2 * minutes


def test_clock_skew_is_counted_as_bad_timestamp(registry):
    sim = Simulation(registry, faults=[Fault.parse("clock_skew:dc-srv-02")], seed=6, start=DAWN)
    _, msgs = collect(sim, 2)
    skewed = [m for m in msgs if m[0].endswith("/dc-srv-02")]
    assert skewed and all(n == 0 for _t, _p, n in skewed)
    assert all(parse(p)[0]["ts"] > DAWN.timestamp() + 3600 for _t, p, _n in skewed)
    assert sim.stats.malformed_by_reason == {"bad_timestamp": len(skewed)}
    assert sim.stats.published_readings == sum(n for *_x, n in msgs)


def test_malformed_counts_are_exact_and_cycle_through_reasons(registry):
    sim = Simulation(registry, faults=[Fault.parse("malformed:0.05")], seed=7, start=DAWN, batch=3)
    msgs = list(sim.messages(2, 1800))
    bad = sim.stats.malformed_by_reason
    assert set(bad) == {"decode_error", "unknown_device", "unknown_field", "wrong_type", "out_of_range", "bad_timestamp"}
    assert max(bad.values()) - min(bad.values()) <= 1
    assert sum(bad.values()) == sum(1 for _t, _p, n in msgs if n == 0)
    assert sim.stats.published_readings == sum(n for *_x, n in msgs)
    assert sim.stats.published_messages == len(msgs)


def test_counts_match_the_collectors_verdict(registry):
    """Every message through the collector's own validator: stored == published_readings, refused == malformed."""
    validate = pytest.importorskip("ingest.validate")
    validator = validate.Validator(registry)
    faults = ["malformed:0.03", "clock_skew:cocleu-aq-1", "uplink_cut:y_ty", "power_loss:ta_van", "flood:cocleu-wl-2"]
    sim = Simulation(registry, faults=[Fault.parse(f, registry) for f in faults], seed=8, start=DAWN, batch=2)
    stored, refused = 0, collections.Counter()
    for _ in range(4):
        msgs = list(sim.messages(1, 300))
        arrived = int((sim.sim_time.timestamp() + 1) * 1e9)
        for topic, payload, n in msgs:
            points, rejects = validator.message(topic, payload, arrived)
            assert len(points) == n, (topic, payload[:120], rejects[:1])
            stored += len(points)
            refused.update(r.reason for r in rejects)
    assert stored == sim.stats.published_readings
    assert dict(refused) == sim.stats.malformed_by_reason


def test_same_seed_same_readings_whatever_the_step_or_batch(registry):
    a = list(Simulation(registry, seed=9, start=DAWN).messages(2, 300))
    b = list(Simulation(registry, seed=9, start=DAWN).messages(10, 60))
    assert sorted(a) == sorted(b)
    batched = list(Simulation(registry, seed=9, start=DAWN, batch=4).messages(2, 300))
    assert sum(n for *_x, n in batched) == sum(n for *_x, n in a)
    one = [orjson.dumps(r) for _t, p, _n in a if p[:1] in b"{[" for r in parse(p)]  # "[": a SenML pack
    grouped = [orjson.dumps(r) for _t, p, _n in batched if p[:1] in b"{[" for r in parse(p)]
    assert sorted(one) == sorted(grouped)
    c = list(Simulation(registry, seed=10, start=DAWN).messages(2, 300))
    assert sorted(a) != sorted(c)


def test_batches_group_readings_of_one_device(registry):
    sim = Simulation(registry, seed=1, start=DAWN, batch=5)
    msgs = list(sim.messages(2, 300))
    assert max(n for *_x, n in msgs) == 5
    for topic, payload, n in msgs:
        rows = parse(payload)
        assert len(rows) == n
        assert [r["ts"] for r in rows] == sorted(r["ts"] for r in rows)


def test_accelerated_run_advances_simulated_time(registry):
    start = datetime.now(timezone.utc) - timedelta(hours=3)
    sim = Simulation(registry, seed=1, speed=7200, start=start)
    got: list[tuple[str, bytes]] = []
    t = time.monotonic()
    sim.run(lambda topic, payload: got.append((topic, payload)), duration_s=0.3)
    assert time.monotonic() - t < 3
    ts = [parse(p)[0]["ts"] for _t, p in got]
    span = max(ts) - min(ts)
    assert 1200 < span < 3600, span  # ~0.3 wall s x 7200
    assert sim.stats.published_messages == len(got)


def test_as_fast_as_possible_runs_duration_in_simulated_seconds(registry):
    sim = Simulation(sites(registry, "dc_laocai"), seed=1, speed=0)  # default start: ends about now
    got = []
    t = time.monotonic()
    sim.run(lambda topic, payload: got.append(payload), duration_s=1200)
    now = time.time()
    assert time.monotonic() - t < 2
    ts = [r["ts"] for p in got for r in parse(p)]
    assert now - 1201 <= min(ts) and max(ts) <= now + 1 and max(ts) - min(ts) > 1150
    assert sim.stats.published_readings == len(got)


def test_default_start_never_runs_ahead_of_the_wall_clock(registry):
    sim = Simulation(registry, seed=1, speed=1200)
    got = []
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    sim.run(lambda topic, payload: got.append(payload), duration_s=5, stop=stop)
    now = time.time()
    ts = [parse(p)[0]["ts"] for p in got]
    assert got and max(ts) <= now + 1.5 and min(ts) > now - 5 * 1200


def test_fault_parse_errors_name_the_problem(registry):
    with pytest.raises(ValueError, match=r"unknown fault 'meteor'.*'y_ty'.*uplink_cut"):
        Fault.parse("meteor:y_ty")
    with pytest.raises(ValueError, match=r"uplink_cut.*'atlantis'.*valid choices:.*y_ty"):
        Fault.parse("uplink_cut:atlantis", registry)
    with pytest.raises(ValueError, match=r"flood.*'dc-srv-01'.*cocleu-wl-1"):
        Simulation(registry, faults=[Fault.parse("flood:dc-srv-01")])
    with pytest.raises(ValueError, match=r"start_s 'soon'"):
        Fault.parse("uplink_cut:y_ty:soon")
    with pytest.raises(ValueError, match=r"malformed.*rate"):
        Fault.parse("malformed:lots")
    f = Fault.parse("power_loss:ta_van:60:600", registry)
    assert (f.name, f.target, f.start_s, f.duration_s) == ("power_loss", "ta_van", 60.0, 600.0)


@pytest.mark.servers
def test_publisher_delivers_every_message_to_a_real_mosquitto(registry, mosquitto):
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from simulator.publisher import MqttPublisher

    received, subscribed = [], threading.Event()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="sim-test-sub", protocol=mqtt.MQTTv5)
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("laocai/#", qos=1)
    sub.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
    sub.on_message = lambda c, u, msg: received.append(msg.topic)
    sub.connect("127.0.0.1", mosquitto.port)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        sim = Simulation(registry, faults=[Fault.parse("malformed:0.02")], seed=1, start=DAWN, batch=2)
        for protocol in (5, "3.1.1"):
            pub = MqttPublisher("127.0.0.1", mosquitto.port, protocol=protocol, client_id=f"sim-test-{protocol}",
                                max_inflight=100)
            for topic, payload, _n in sim.messages(2, 300):
                pub.publish(topic, payload)
            assert pub.flush(10) and pub.close()
            assert pub.acked == pub.published
        sent = sim.stats.published_messages
        deadline = time.monotonic() + 10
        while len(received) < sent and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(received) == sent > 500
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_speaker_offline_silences_only_that_communes_speakers(registry):
    reg = sites(registry, "coc_leu", "ta_van")
    sim = Simulation(reg, faults=[Fault.parse("speaker_offline:coc_leu")], seed=11, start=DAWN)
    by_dev, _ = collect(sim, 1, 3600)
    speakers = {d.id: d.site for d in reg.devices.values() if d.kind == "ip_loudspeaker"}
    assert not [s for s, site in speakers.items() if site == "coc_leu" and by_dev[s]]
    assert all(by_dev[s] for s, site in speakers.items() if site == "ta_van")
    assert by_dev["cocleu-router"] and by_dev["cocleu-ups"]


def test_a_new_kind_simulates_without_code(registry):
    from device_profiles.loader import Device
    from device_profiles.models import Profile

    profile = Profile.model_validate({
        "kind": "noise_meter", "family": "smart_city", "title": {"vi": "Máy đo tiếng ồn", "en": "Noise meter"},
        "topic": "laocai/{site}/noise/{device}", "format": "line_protocol", "reporting": {"interval_s": 60, "jitter_s": 20},
        "fields": {
            "laeq_db": {"type": "float", "unit": "dB(A)", "min": 20, "max": 140, "limits": {"warn_above": 70}},
            "door_open": {"type": "bool", "unit": "bool"}, "link_ok": {"type": "bool", "unit": "bool"},
            "events": {"type": "int", "unit": "count", "min": 0, "max": 10},
            "board_temp_c": {"type": "float", "unit": "°C", "min": -40, "max": 85},
            "supply_v": {"type": "float", "unit": "V", "min": 0, "max": 30},
        },
    })
    dev = Device("cocleu-noise-1", "noise_meter", "coc_leu", "lao_cai_city", None, None, None, None)
    reg = dataclasses.replace(registry, kinds={**registry.kinds, "noise_meter": profile}, devices={dev.id: dev})
    sim = Simulation(reg, faults=[Fault.parse("stuck_sensor:cocleu-noise-1:1800")], seed=1, start=DAWN)
    by_dev, msgs = collect(sim, 1, 3600)
    rows = by_dev[dev.id]
    assert len(rows) == 60 == sim.stats.published_readings
    for r in rows:
        assert 20 <= r["laeq_db"] <= 70 and 0 <= r["events"] <= 10 and -40 <= r["board_temp_c"] <= 85
        assert r["supply_v"] == pytest.approx(24, abs=1.5) and r["link_ok"] is True and r["door_open"] is False
