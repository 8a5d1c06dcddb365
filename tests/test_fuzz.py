"""Hostile input (issue 5, part 3): property-based fuzzing of the decoders, the validator,
the line-protocol encoder and the profile loader.

The normal suite runs a small, seeded (derandomized) budget per target.  The big run,
10,000 cases per target:

    FANSIPAN_FUZZ_EXAMPLES=10000 .venv/bin/python -m pytest tests/test_fuzz.py -q

The strategies are in tests/fuzz/strategies.py, the properties (what must hold for
every input) in tests/fuzz/properties.py, the reference line-protocol parser the
encoder is checked against in tests/fuzz/lp_reference.py.  A summary of what the run
saw (cases, refusals per reason, known-bug hits) is printed at the end.

Open bugs found by this fuzzing are listed in properties.KNOWN_BUGS: the fuzz targets
count them instead of failing, and each has an xfail(strict=True) test below holding
its exact input; when a fix lands, that test fails as XPASS: delete its xfail marker
and the KNOWN_BUGS entry (FANSIPAN_FUZZ_STRICT=1 makes every known bug fail now).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from device_profiles import load_registry
from fuzz import properties as P
from fuzz import registry_mutations as R
from fuzz import strategies as S
from fuzz.lp_reference import LPParseError, parse_line
from ingest.validate import REASONS, Validator
from storage.base import Point, Rejected
from storage.line_protocol import Encoder

FUZZ_EXAMPLES = int(os.environ.get("FANSIPAN_FUZZ_EXAMPLES", "0") or 0)


def budget(small: int) -> settings:
    """``small`` seeded cases in the normal suite, FANSIPAN_FUZZ_EXAMPLES in the big run."""
    return settings(
        max_examples=FUZZ_EXAMPLES or small,
        derandomize=True,
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                               HealthCheck.filter_too_much],
    )


EXPLICIT = settings(phases=[Phase.explicit], deadline=None, database=None)

REGISTRY = load_registry(S.REGISTRY_DIR)
VALIDATOR = Validator(REGISTRY)


def run(check, *args) -> None:
    """A property; an open known bug it hits is counted (see properties.KNOWN_BUGS), not failed."""
    try:
        check(*args)
    except P.KnownBug:
        pass


@pytest.fixture(scope="module", autouse=True)
def _summary(request):
    P.TALLY.clear()
    yield
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None or not P.TALLY:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        reporter.write_line(f"fuzz summary ({FUZZ_EXAMPLES or 'small seeded budget'}; cases per target, refusals, known-bug hits):")
        for key in sorted(P.TALLY):
            reporter.write_line(f"  {key}: {P.TALLY[key]}")


def test_strategies_know_the_test_registry():
    assert set(REGISTRY.kinds) == set(S.KINDS)
    assert set(REGISTRY.sites) == set(S.SITES)
    assert {d: (x.kind, x.site) for d, x in REGISTRY.devices.items()} == S.DEVICES
    assert {k: tuple(p.fields) for k, p in REGISTRY.kinds.items()} == S.FIELDS


# --- decoders -------------------------------------------------------------------------------------


@budget(150)
@given(payload=st.one_of(S.json_payloads(), st.binary(max_size=200), S.oversized()))
def test_json_decoder_never_crashes(payload):
    run(P.check_json_decoder, payload)


@budget(150)
@given(payload=S.lp_payloads())
def test_line_protocol_decoder_never_crashes(payload):
    run(P.check_lp_decoder, payload)


# --- the whole path: topic + payload -> points and refusals ---------------------------------------


@budget(250)
@given(msg=S.messages, arrived_ns=S.arrival_times)
def test_validator_message_points_and_refusals(msg, arrived_ns):
    topic, payload = msg
    run(P.check_message, VALIDATOR, topic, payload, arrived_ns)


def test_validator_refuses_the_documented_extremes():
    """Deterministic corner cases the strategies also reach, kept here so they always run."""
    cases = [
        (S.AQ_TOPIC, b"x" * (256 * 1024 + 1)),
        (S.AQ_TOPIC, S.too_many_readings()),
        (S.AQ_TOPIC, b'{"pm25":' + b"[" * 2000 + b"]" * 2000 + b"}"),
        (S.AQ_TOPIC, b'{"pm25": NaN}'),
        (S.AQ_TOPIC, b'{"pm25": 1e400}'),
        (S.AQ_TOPIC, b'{"pm25": -0.0, "samples": ' + str(2**80).encode() + b"}"),
        (S.AQ_TOPIC, b'{"pm25": "\\ud800"}'),
        (S.AQ_TOPIC, b'{"\\ud800": 1}'),
        (S.SERVER_TOPIC, b"server cpu_pct=nan,procs=" + str(2**80).encode() + b"i 1764230390000000000"),
        (S.SERVER_TOPIC, b"server,device=dc-srv-01\nserver,device=dc-srv-02 cpu_pct=1"),
        ("laocai/ta_van/air_quality/tv-aq-1\x00", b'{"pm25": 1}'),
        ("laocai/ta_van/air_quality/\u202etv-aq-1", b'{"pm25": 1}'),
        ("laocai/ta_van/air_quality/😀", b'{"pm25": 1}'),
        ("", b""),
    ]
    for topic, payload in cases:
        P.check_message(VALIDATOR, topic, payload, S.ARRIVED_NS)
    points, rejected = VALIDATOR.message(S.AQ_TOPIC, b"x" * (256 * 1024 + 1), S.ARRIVED_NS)
    assert not points and [r.reason for r in rejected] == ["too_large"] and len(rejected[0].raw) == 4096


# --- line-protocol injection: what the store writes -----------------------------------------------


@budget(150)
@given(points=st.lists(S.hostile_points(), max_size=5), rejected=st.lists(S.hostile_rejects(), max_size=5))
def test_encoder_never_turns_hostile_strings_into_extra_points(points, rejected):
    run(P.check_encoding, Encoder(), points, rejected)


def test_encoder_injection_examples():
    evil = 'x",evil=1 y\nfansipan_quarantine,kind=a,reason=b detail="z" 1\r\\'
    rejected = [Rejected(S.ARRIVED_NS, evil, "unknown_device", evil, evil.encode() + b"\xff\x00", evil, evil)] * 2
    points = [Point("server", "dc-srv-01", "dc laocai,x=1", "", S.ARRIVED_NS, {"cpu_pct": 1.0}, S.ARRIVED_NS)]
    P.check_encoding(Encoder(), points, rejected)
    for bad in ("a\nb", "a\\", "", "a\rb"):
        with pytest.raises(ValueError):
            Encoder().encode([Point("server", bad, "s", "", 1, {"cpu_pct": 1.0}, 1)])
    P.check_encoding(Encoder(), [Point("server", "a\nb", "s", "", 1, {"cpu_pct": 1.0}, 1)], rejected)


def test_reference_parser_reads_what_influxdb_1x_reads():
    """The oracle itself, on lines whose reading was checked against a real influxd 1.x."""
    line = parse_line('k,device=a\\\\ b,site=x\\,y\\=z f=1.5,n=2i,s="q\\"\\\\\\n",b=t 1764230400000000000')
    assert line.measurement == "k"
    assert dict(line.tags) == {"device": "a\\ b", "site": "x,y=z"}
    assert dict(line.fields) == {"f": 1.5, "n": 2, "s": 'q"\\\\n', "b": True}
    assert parse_line("n,device=p\\\\q\\\\\\ r f=1 1").tags == (("device", "p\\\\q\\\\ r"),)
    for bad in ("#k f=1 1", "k f=1 1 2", "k,device=x\\\\,site=s f=1 1", 'k s="x 1', "k f=nan 1", "k f=1 x", "k f=1"):
        with pytest.raises(LPParseError):
            parse_line(bad)


# --- cardinality attack ---------------------------------------------------------------------------


@budget(50)
@given(msgs=st.lists(S.cardinality_messages(), min_size=1, max_size=10))
def test_cardinality_attack_batches_stay_bounded(msgs):
    P.check_cardinality(VALIDATOR, msgs, S.ARRIVED_NS)


def test_cardinality_attack_10000_messages():
    """10,000 messages with random device ids, tag values and field names on valid topic shapes."""
    seen = P.check_cardinality(VALIDATOR, S.cardinality_corpus(10_000), S.ARRIVED_NS)
    registry_tags = set(REGISTRY.devices) | set(REGISTRY.sites)
    assert seen["points"] > 0, "some messages were valid: the attack ran through the accepting path too"
    assert seen["tag_values"] <= registry_tags and seen["series"] <= {
        (d.kind, tuple(sorted(({"device": d.id, "site": d.site} | ({"district": d.district} if d.district else {})).items())))
        for d in REGISTRY.devices.values()
    }
    assert len(seen["quarantine"]) <= len(REASONS) * (len(REGISTRY.kinds) + 1)
    assert seen["points"] + seen["rejected"] >= 10_000


# --- profile loader -------------------------------------------------------------------------------


@budget(100)
@given(muts=st.lists(R.mutations, min_size=1, max_size=4), damage=R.text_damage)
def test_profile_loader_registry_or_profile_error(muts, damage):
    docs = R.registry_docs()
    scalars: dict[str, str] = {}
    R.apply_mutations(docs, muts, scalars)
    with tempfile.TemporaryDirectory(prefix="fansipan-fuzz-") as tmp:
        R.write_registry(Path(tmp), R.render(docs, scalars), damage)
        run(P.check_loader, Path(tmp))


def test_profile_loader_unmutated_copy_loads():
    with tempfile.TemporaryDirectory(prefix="fansipan-fuzz-") as tmp:
        R.write_registry(Path(tmp), R.render(R.registry_docs(), {}), None)
        P.check_registry(load_registry(tmp))


# --- open bugs: each example fails today; the fix turns it into XPASS (strict): then delete the
# --- xfail marker and the entry in fuzz/properties.py KNOWN_BUGS.


def _strict_message(topic, payload):
    with P.strict():
        P.check_message(VALIDATOR, topic, payload, S.ARRIVED_NS)


# regression, BUG-1 (fixed): ingest/validate.py _show repr()s a JSON value nested 1000 deep
@example(topic=S.AQ_TOPIC, payload=b'{"pm25":' + b"[" * 1000 + b"]" * 1000 + b"}")
@EXPLICIT
@given(topic=st.just(S.AQ_TOPIC), payload=st.just(b""))
def test_bug1_deeply_nested_json_value(topic, payload):
    _strict_message(topic, payload)


# regression, BUG-2 (fixed): ingest/validate.py _check slices a non-string '_measurement' from JSON
@example(topic=S.AQ_TOPIC, payload=b'{"_measurement": 5, "pm25": 1}')
@EXPLICIT
@given(topic=st.just(S.AQ_TOPIC), payload=st.just(b""))
def test_bug2_json_measurement_not_a_string(topic, payload):
    _strict_message(topic, payload)


# regression, BUG-2 (fixed): ingest/validate.py _check slices a '_measurement' that is a JSON object
@example(topic=S.AQ_TOPIC, payload=b'{"pm25": 0.0, "_measurement": {}}')
@EXPLICIT
@given(topic=st.just(S.AQ_TOPIC), payload=st.just(b""))
def test_bug2b_json_measurement_an_object(topic, payload):
    _strict_message(topic, payload)


# regression, BUG-2 (fixed): ingest/validate.py _check repr()s a '_measurement' nested 1000 deep
@example(topic=S.AQ_TOPIC, payload=b'{"pm25": 0.0, "_measurement": ' + b"[" * 1000 + b"]" * 1000 + b"}")
@EXPLICIT
@given(topic=st.just(S.AQ_TOPIC), payload=st.just(b""))
def test_bug2c_json_measurement_deeply_nested(topic, payload):
    _strict_message(topic, payload)


# regression, BUG-3 (fixed): ingest/decoders.py int() of a timestamp '--5' escapes decode_line_protocol
@example(topic=S.SERVER_TOPIC, payload=b"server cpu_pct=1 --5")
@EXPLICIT
@given(topic=st.just(S.SERVER_TOPIC), payload=st.just(b""))
def test_bug3a_lp_timestamp_double_minus(topic, payload):
    _strict_message(topic, payload)


# regression, BUG-3 (fixed): ingest/decoders.py int() of a superscript digit ('²'.isdigit() is True)
@example(topic=S.SERVER_TOPIC, payload="server procs=²i".encode())
@EXPLICIT
@given(topic=st.just(S.SERVER_TOPIC), payload=st.just(b""))
def test_bug3b_lp_integer_unicode_digit(topic, payload):
    _strict_message(topic, payload)


# regression, BUG-3 (fixed): ingest/decoders.py int() of more than 4300 digits
@example(topic=S.SERVER_TOPIC, payload=b"server procs=" + b"9" * 5000 + b"i")
@EXPLICIT
@given(topic=st.just(S.SERVER_TOPIC), payload=st.just(b""))
def test_bug3c_lp_integer_too_many_digits(topic, payload):
    _strict_message(topic, payload)


# regression, BUG-4 (fixed): ingest/validate.py (ts_ns - arrived_ns) / 1e9 overflows for a 400-digit timestamp
@example(topic=S.SERVER_TOPIC, payload=b"server cpu_pct=1 " + b"9" * 400)
@EXPLICIT
@given(topic=st.just(S.SERVER_TOPIC), payload=st.just(b""))
def test_bug4_lp_timestamp_beyond_float(topic, payload):
    _strict_message(topic, payload)


def _strict_loader(fname: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory(prefix="fansipan-fuzz-") as tmp:
        shutil.copytree(S.REGISTRY_DIR, tmp, dirs_exist_ok=True)
        (Path(tmp) / fname).write_bytes(data)
        with P.strict():
            P.check_loader(Path(tmp))


_SERVER_YAML = (S.REGISTRY_DIR / "kinds" / "server.yaml").read_text(encoding="utf-8")
_SITES_YAML = (S.REGISTRY_DIR / "sites.yaml").read_text(encoding="utf-8")


# regression, BUG-5 (fixed): device_profiles/loader.py _read_yaml lets PyYAML's ValueError for 2001-02-30 out
@example(fname="kinds/server.yaml", data=(_SERVER_YAML + "extra: 2001-02-30\n").encode())
@EXPLICIT
@given(fname=st.just(""), data=st.just(b""))
def test_bug5a_yaml_impossible_date(fname, data):
    _strict_loader(fname, data)


# regression, BUG-5 (fixed): device_profiles/loader.py _read_yaml lets UnicodeDecodeError out (file saved as cp1258)
@example(fname="sites.yaml", data=_SITES_YAML.encode("cp1258", errors="replace"))
@EXPLICIT
@given(fname=st.just(""), data=st.just(b""))
def test_bug5b_sites_not_utf8(fname, data):
    _strict_loader(fname, data)


# regression, BUG-5 (fixed): device_profiles/loader.py _read_yaml lets RecursionError out (YAML nested 1000 deep)
@example(fname="kinds/server.yaml", data=(_SERVER_YAML + "extra: " + "[" * 1000 + "]" * 1000 + "\n").encode())
@EXPLICIT
@given(fname=st.just(""), data=st.just(b""))
def test_bug5c_yaml_deep_nesting(fname, data):
    _strict_loader(fname, data)


# regression, BUG-5 (fixed): device_profiles/loader.py _read_yaml lets PyYAML's AttributeError for '!!timestamp x' out
@example(fname="kinds/server.yaml", data=(_SERVER_YAML + "extra: !!timestamp x\n").encode())
@EXPLICIT
@given(fname=st.just(""), data=st.just(b""))
def test_bug5d_yaml_timestamp_tag(fname, data):
    _strict_loader(fname, data)


# regression, BUG-5 (fixed): device_profiles/loader.py _read_yaml lets PyYAML's KeyError for '!!bool x' out
@example(fname="sites.yaml", data=(_SITES_YAML + "extra: !!bool x\n").encode())
@EXPLICIT
@given(fname=st.just(""), data=st.just(b""))
def test_bug5e_yaml_bool_tag(fname, data):
    _strict_loader(fname, data)


# regression, BUG-6 (fixed): device_profiles/models.py FieldSpec accepts min/max .nan (min >= max is false for NaN)
@example(fname="kinds/server.yaml", data=_SERVER_YAML.replace("min: 0, max: 100}", "min: .nan, max: .nan}").encode())
@EXPLICIT
@given(fname=st.just(""), data=st.just(b""))
def test_bug6_nan_field_range_loads(fname, data):
    assert ".nan" in data.decode()
    _strict_loader(fname, data)


def _check_measurement(kind: str) -> None:
    """A point's measurement is refused (ValueError) or written so that InfluxDB reads that very name."""
    p = Point(kind, "dc-srv-01", "dc_laocai", "", S.ARRIVED_NS, {"cpu_pct": 1.0}, S.ARRIVED_NS)
    try:
        body = Encoder().encode([p])
    except ValueError:
        return
    try:
        lines = [parse_line(body)]
    except LPParseError as exc:
        raise AssertionError(f"InfluxDB would not read {body!r} as one point of {kind!r}: {exc}") from None
    assert len(lines) == 1 and lines[0].measurement == kind


# regression, BUG-7 (fixed): storage/line_protocol.py writes a measurement starting with '#': InfluxDB skips the line as a comment
@example(kind="#server")
@EXPLICIT
@given(kind=st.just("server"))
def test_bug7_measurement_starting_with_hash(kind):
    _check_measurement(kind)


def test_no_open_bug_without_an_xfail_test():
    """Every KNOWN_BUGS entry has its xfail test in this module (and vice versa)."""
    here = Path(__file__).read_text(encoding="utf-8")
    for bug in P.KNOWN_BUGS:
        assert f'reason="{bug}:' in here, bug
