"""The bulk path (ingest/bulk.py, storage/bulk_encode.py) agrees with the per-reading path, exactly.

Random batches of valid and invalid messages (JSON and line protocol, good and
bad topics, values, types, times, tags, layouts) go through both paths: the
points (values and their Python types), the rejects (reason, detail, raw
payload, order) and the line protocol written must be the same.  Then the same
with the clock tracker (ingest/clock.py) deciding after validation.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from device_profiles import load_registry
from ingest.bulk import BulkValidator
from ingest.bulk_lp import _as_written, _odd_spelling
from ingest.clock import ClockTracker
from ingest.validate import Validator
from storage.bulk_encode import BulkLines
from storage.columns import from_points
from storage.common import float_fields
from storage.line_protocol import Encoder

REGISTRY = load_registry(Path(__file__).parent / "fixtures" / "registry")
ARR = 1_764_230_400_000_000_000
AQ, SRV = "laocai/ta_van/air_quality/tv-aq-1", "laocai/dc_laocai/server/dc-srv-01"
ODD_TOPICS = ["laocai/ta_van/air_quality/nobody", "laocai/sa_pa/air_quality/tv-aq-1", "laocai/dc_laocai/server/tv-aq-1",
              "nothing/here"]
SETTINGS = settings(max_examples=250, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))

# --- JSON messages -------------------------------------------------------------------------------

json_values = st.one_of(
    st.floats(-10, 1100), st.integers(-5, 2000), st.sampled_from([0.0, -0.0, 1.0, 3.0, 100.0, 1000.0, 1000.5, 2.5]),
    st.integers(-2**63, 2**63 - 1), st.booleans(), st.none(), st.text(max_size=3), st.floats(width=64),
    st.just([1]), st.just({"a": 1}))
json_ts = st.one_of(
    st.none(), st.floats(ARR / 1e9 - 5000, ARR / 1e9 + 500), st.integers(ARR // 10**6 - 10**7, ARR // 10**6 + 10**6),
    st.integers(ARR - 10**13, ARR + 10**12), st.integers(-2**63, 2**63 - 1), st.floats(width=64), st.booleans(),
    st.sampled_from(["2025-11-27T07:59:00Z", "2025-11-27T08:00:00+07:00", "2025-11-27T08:00:00", "soon", 946684799,
                     99999999999999999, 10**11, 1e11, 1e14 - 1, 10**17]))
json_reading = st.one_of(
    st.fixed_dictionaries(
        {"ts": json_ts, "pm25": st.one_of(st.floats(0, 1000), json_values), "humidity": st.floats(0, 100),
         "samples": st.integers(0, 1000), "heater_on": st.booleans()},
        optional={"device": st.sampled_from(["tv-aq-1", "other", 5]), "bogus": st.integers(-9, 9)}),
    st.dictionaries(st.sampled_from(["ts", "pm25", "humidity", "samples", "heater_on", "device", "bogus"]), json_values,
                    max_size=6),
    st.integers(-9, 9), st.text(max_size=2))


# Number texts orjson.dumps never writes (-0, exponents, 19 digits), in the simulator's layout
LAYOUT_TEXTS = [b"-0", b"0", b"-0.0", b"1e2", b"1E-2", b"1.5e+1", b"true", b"false", b"100", b"1000.00", b"1e3",
                b"999999999999999999", b"0.30000000000000004", b"-1"]
LAYOUT_TS = [b"1764230399", b"1764230399", b"1764230398.25", b"1764230399.5", b"1.7642304e9", b"17642304e2", b"1764230400000", b"1764230399999999999", b"9999999999999999999", b"-9223372036854775808",
             b"-0", b"1e1", b"946684800"]


@st.composite
def layout_reading(draw):
    v = [draw(st.sampled_from(LAYOUT_TEXTS)), draw(st.sampled_from([b"-0", b"1e1", b"50", b"0.5", b"-0.0", b"101"])),
         draw(st.sampled_from([b"1e2", b"3", b"3.0", b"-0", b"2.5"])), draw(st.sampled_from([b"true", b"false", b"1"]))]
    return (b'{"ts":' + draw(st.sampled_from(LAYOUT_TS)) + b',"pm25":' + v[0] + b',"humidity":' + v[1]
            + b',"samples":' + v[2] + b',"heater_on":' + v[3] + b"}")


@st.composite
def json_message(draw):
    readings = draw(st.lists(json_reading, min_size=1, max_size=5))
    form = draw(st.sampled_from(["one", "list", "list", "broken", "empty", "layout"]))
    if form == "layout":
        return b"[" + b",".join(draw(st.lists(layout_reading(), min_size=1, max_size=4))) + b"]"
    if form == "broken":
        return b'{"pm25": 1,'
    if form == "empty":
        return b"[]"
    return orjson.dumps(readings[0] if form == "one" else readings)


# --- line-protocol messages ----------------------------------------------------------------------

lp_raw = st.one_of(
    st.floats(-10, 110).map(repr), st.integers(-5, 200000).map(lambda i: f"{i}i"), st.integers(0, 9).map(lambda i: f"{i}u"),
    st.sampled_from(["t", "TRUE", "false", "F", "True", '"str"', "1_0", "+3i", "nan", "inf", "-inf", "", "3.0i", "1e500",
                     "3", "50", "1e2", "99999999999999999999i", "0x10", "٣"]))
lp_head = st.sampled_from(["server", "server,device=dc-srv-01", "server,device=other", "weather", "server,site=x",
                           "server,device=dc-srv-01,zone=a", "ser\\ ver"])
lp_ts = st.one_of(st.none(), st.integers(ARR - 10**13, ARR + 10**12).map(str), st.integers(-2**64, 2**64).map(str),
                  st.sampled_from(["abc", "-0", str(2**63), str(2**63 - 1), "12.5", "", "00001764230400000000000"]))


@st.composite
def lp_line(draw):
    keys = draw(st.lists(st.sampled_from(["cpu_pct", "procs", "healthy", "bogus"]), max_size=4))
    if draw(st.booleans()):
        keys = ["cpu_pct", "procs", "healthy"]  # the usual layout, in the profile's order
    body = ",".join(f"{k}={draw(lp_raw)}" for k in keys)
    ts = draw(lp_ts)
    sep = draw(st.sampled_from([" ", " ", " ", "  "]))
    line = f"{draw(lp_head)}{sep}{body}" + (f" {ts}" if ts is not None else "")
    return line + draw(st.sampled_from(["", "", "\r", " "]))


@st.composite
def lp_message(draw):
    lines = draw(st.lists(st.one_of(lp_line(), st.sampled_from(["", "# a comment", "  "])), min_size=1, max_size=6))
    return "\n".join(lines).encode()


@st.composite
def batches(draw):
    msgs = []
    for i in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["json", "lp", "odd"]))
        if kind == "json":
            topic, payload = AQ, draw(json_message())
        elif kind == "lp":
            topic, payload = SRV, draw(lp_message())
        else:
            topic, payload = draw(st.sampled_from(ODD_TOPICS)), draw(st.one_of(json_message(), lp_message()))
        msgs.append((topic, payload, ARR + i * 1_000_003))
    return msgs


def _typed(points):
    return [(p, sorted((k, type(v).__name__) for k, v in p.fields.items())) for p in points]


def _normal(lines):  # the same point with its fields in another order is the same line to a store
    out = []
    for line in lines:
        head, body, ts = line.rsplit(" ", 2) if not line.startswith("fansipan_quarantine") else (line, "", "")
        out.append((head, sorted(body.split(",")), ts))
    return sorted(out)


def _both_paths(validator, bulk, msgs):
    """(points, rejects) of the per-reading validator, message by message, and (batch, rejects) of the bulk one:
    asserted to agree on every point, its field types and every reject."""
    points, rejected = [], []
    for m in msgs:
        p, r = validator.message(*m)
        points += p
        rejected += r
    batch, bulk_rejected = bulk.messages(msgs)
    assert _typed(batch.points()) == _typed(points) and bulk_rejected == rejected
    return points, rejected, batch, bulk_rejected


VALIDATOR = Validator(REGISTRY)
BULK = BulkValidator(VALIDATOR)
FLOATS = float_fields(REGISTRY)


@SETTINGS
@given(batches())
def test_bulk_agrees_with_per_reading(msgs):
    points, rejected, batch, bulk_rejected = _both_paths(VALIDATOR, BULK, msgs)
    enc = Encoder(FLOATS)
    assert _normal(BulkLines(Encoder(FLOATS)).lines(batch, bulk_rejected)) == _normal(enc.encode(points, rejected).split("\n"))


def _correcting(registry):
    """The fixture registry with clock_policy: correct for air_quality (clocks shifted, not refused)."""
    r = copy.deepcopy(registry)
    p = r.kinds["air_quality"]
    r.kinds["air_quality"] = p.model_copy(update={"reporting": p.reporting.model_copy(update={"clock_policy": "correct"})})
    return r


CORRECTING = _correcting(REGISTRY)
CORRECTING_V = Validator(CORRECTING)
CORRECTING_BULK = BulkValidator(CORRECTING_V)


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from([0.5, 2, 3, 3600, 3601, 3602, -400, 90000, 10**6]),
                          st.integers(1, 3), st.integers(10, 120)), min_size=2, max_size=12), st.booleans())
def test_clock_decisions_agree(steps, correct):
    """Late, skewed, corrected and too-old readings: the tracker decides the same on both paths."""
    registry, validator, bulk = (CORRECTING, CORRECTING_V, CORRECTING_BULK) if correct else (REGISTRY, VALIDATOR, BULK)
    one, bulk_clock = ClockTracker(registry), ClockTracker(registry)
    arrived = ARR
    for offset_s, n, gap_s in steps:
        arrived += gap_s * 10**9
        aq = orjson.dumps([{"ts": (arrived - int(offset_s * 1e9)) / 1e9 - k * 60, "pm25": 5.0} for k in range(n)])
        lines = [f"server,device=dc-srv-01 cpu_pct=5.5 {arrived - int(offset_s * 1e9) - k * 10**10}" for k in range(n)]
        msgs = [(AQ, aq, arrived), (SRV, "\n".join(lines).encode(), arrived + 7)]
        points, rejected = [], []
        for topic, payload, arr in msgs:
            p, r = validator.message(topic, payload, arr)
            p, r = one.apply(p, r, topic, payload)
            points += p
            rejected += r
        batch, bulk_rejected = bulk.messages(msgs, clock=bulk_clock)
        assert _typed(batch.points()) == _typed(points)
        assert bulk_rejected == rejected
    np.testing.assert_array_equal(one.skew_s, bulk_clock.skew_s)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.lists(st.tuples(st.floats(allow_nan=False, allow_infinity=False), st.integers(-2**53, 2**53), st.booleans(),
                          st.integers(0, 2**62), st.integers(-2**62, 2**62)), min_size=1, max_size=20),
       st.lists(st.booleans(), min_size=3, max_size=3))
def test_bulk_encoding_is_exact(rows, keep):
    """Any float (shortest repr), any exact int, bools, times, and readings missing fields."""
    from storage.base import Point

    names = [n for n, k in zip(("f", "i", "b"), keep) if k]
    points = [Point("weather", f"d-{k % 3}", "s", "", t, {n: v for n, v in zip(("f", "i", "b"), (f, i, b)) if n in names}
                    or {"f": f}, a)
              for k, (f, i, b, a, t) in enumerate(rows)]
    floats = {"weather": frozenset({"f"})}
    assert BulkLines(Encoder(floats)).lines(from_points(points, floats)) == Encoder(floats).point_lines(points)


PLAIN = st.floats(min_value=1e-4, max_value=1e16, exclude_max=True) | st.floats(min_value=-1e16, max_value=-1e-4,
                                                                                  exclude_min=True)


@settings(max_examples=200, derandomize=True, deadline=None)
@given(st.lists(PLAIN | st.sampled_from([0.0, -0.0, 1e-4, -1e-4, 9999999999999998.0, 0.1, 1 / 3]), min_size=1,
                max_size=30),
       st.one_of(st.none(), st.sampled_from([1e16, -1e16, 9.999999999999999e-05, 1e-300, 5e-324, 1.5e300])))
def test_bulk_float_text_is_repr(values, odd):
    """A column of floats written by orjson in one call (storage/bulk_encode._float_texts) reads as repr() does;
    one value outside 1e-4 <= |x| < 1e16, where the two spell exponents differently, sends the column to repr."""
    from storage.base import Point

    values = values + ([odd] if odd is not None else [])
    points = [Point("weather", "d-1", "s", "", 10**18 + k, {"f": v}, 10**18) for k, v in enumerate(values)]
    floats = {"weather": frozenset({"f"})}
    got = BulkLines(Encoder(floats)).lines(from_points(points, floats))
    assert got == Encoder(floats).point_lines(points)
    assert [line.split(" ")[1].split(",")[0] for line in got] == [f"f={v!r}" for v in values]


@SETTINGS
@given(st.lists(st.lists(layout_reading(), min_size=1, max_size=3), min_size=1, max_size=4))
def test_usual_json_layout_agrees(messages):
    """Number spellings devices use and orjson.dumps does not: read the same by both paths."""
    msgs = [(AQ, b"[" + b",".join(m) + b"]", ARR + i) for i, m in enumerate(messages)]
    points, rejected, batch, bulk_rejected = _both_paths(VALIDATOR, BULK, msgs)
    enc = Encoder(FLOATS)
    assert _normal(BulkLines(Encoder(FLOATS)).lines(batch, bulk_rejected)) == _normal(enc.encode(points, rejected).split("\n"))


SWITCH = "laocai/dc_laocai/core_switch/dc-core-sw-1"  # the shipped registry's: ints and a float, no bool
SHIPPED = load_registry()
SHIPPED_V = Validator(SHIPPED)
SHIPPED_BULK = BulkValidator(SHIPPED_V)
SHIPPED_FLOATS = float_fields(SHIPPED)
SPELLINGS = ["100", "92.650", "1e1", "0.00001", "-0", "5i", "007.5", "+1.5", ".5", "1.5e-3", "0.1000000000000000055511",
             "33.333333333333333333333"]


@st.composite
def switch_line(draw):
    """A core switch's reading in the usual layout: ints with "i", the float in any spelling a device might use."""
    ints = draw(st.lists(st.integers(0, 1000), min_size=4, max_size=4))
    pct = draw(st.one_of(st.integers(0, 10_000).map(lambda c: f"{c / 100:.2f}"),  # as telemetry agents mostly send
                         st.floats(0, 100).map(repr), st.sampled_from(SPELLINGS)))
    tag = draw(st.sampled_from(["", ",device=dc-core-sw-1"]))
    ts = draw(st.sampled_from(["", f" {ARR - 10**9}"]))
    return (f"core_switch{tag} ports_up={ints[0]}i,ports_down={ints[1]}i,rx_errors={ints[2]}i,"
            f"tx_errors={ints[3]}i,cpu_pct={pct}{ts}")


def as_read(line: str) -> tuple:
    """A line as a store reads it: head, fields (ints by the "i", other numbers as the double they denote), time."""
    head, body, ts = line.split(" ")
    fields = {}
    for kv in body.split(","):
        k, v = kv.split("=")
        fields[k] = (int(v[:-1]), "i") if v.endswith("i") else (float(v), "f")
    return head, sorted(fields.items()), ts


@SETTINGS
@given(st.lists(st.lists(switch_line(), min_size=1, max_size=5), min_size=1, max_size=4))
def test_line_protocol_spliced_as_sent_reads_as_what_the_encoder_writes(messages):
    """The device's own field text goes to the store only where it gives the store the Encoder's numbers.
    (tests/test_bulk_store.py writes such text into the real influxd and reads it back.)"""
    msgs = [(SWITCH, "\n".join(m).encode(), ARR + i) for i, m in enumerate(messages)]
    points, _rejected, batch, _bulk_rejected = _both_paths(SHIPPED_V, SHIPPED_BULK, msgs)
    got = BulkLines(Encoder(SHIPPED_FLOATS)).lines(batch)
    want = Encoder(SHIPPED_FLOATS).point_lines(points)
    assert sorted(map(as_read, got)) == sorted(map(as_read, want))
    pcts = [line.split("cpu_pct=")[1].split(" ")[0] for m in messages for line in m]
    if all(re.fullmatch(r"(?:0|[1-9][0-9]*)\.[0-9]+", p) and float(p) <= 100 for p in pcts):  # the usual case is spliced
        assert [kc.body is not None for kc in batch.kinds] == [True]
        assert sorted(got) != sorted(want) or all(p == repr(float(p)) for p in pcts)  # as sent, not re-formatted


@pytest.mark.parametrize("raws, ftype, as_sent", [
    (("1.5", "0.5", "0", "-0", "100", "9.70", "0.0", "-0.0"), "float", True), (("0", "0", "0", "-0", "0"), "float", True),
    (("007.5",), "float", False), (("0.5", "05"), "float", False), ((".5",), "float", False), (("5.",), "float", False),
    (("1.5", "-.5"), "float", False), (("-05.1",), "float", False), (("1e5",), "float", False), (("+1",), "float", False),
    (("inf",), "float", False), (("1_0",), "float", False), (("5i",), "float", False),
    (("0i", "10i", "-5i"), "int", True), (("05i",), "int", False), (("-0i",), "int", False), (("5u",), "int", False),
    (("1i",), "bool", False)])
def test_which_spellings_go_to_the_store_as_sent(raws, ftype, as_sent):
    assert _as_written([raws], (ftype,)) is as_sent


def _odd_value(v: str) -> bool:
    digits = v[1:] if v.startswith("-") else v
    return digits.startswith(".") or v.endswith(".") or (digits[:1] == "0" and digits[1:2].isdigit())


@SETTINGS
@given(st.lists(st.from_regex(r"-?[0-9]{0,3}\.?[0-9]{0,3}", fullmatch=True) | st.from_regex(r"-?[0-9]{1,4}i", fullmatch=True),
                min_size=1, max_size=12))
def test_odd_spelling_of_a_column_is_that_of_a_value(values):
    """The column-at-once check (numpy over the bytes) says what a value-by-value reading says."""
    assert _odd_spelling(",".join(values)) is any(_odd_value(v) for v in values)
