"""Hypothesis strategies for hostile input: MQTT topics, payloads, points, refusals, registries.

Everything is built against the small test registry (tests/fixtures/registry):
kind ``air_quality`` speaks JSON, kind ``server`` line protocol.  The strategies
mix realistic input (so that the validator's deeper paths are reached: most
cases get past the topic and the decoder) with the hostile kinds the issue names:
random bytes, oversized payloads, deep nesting, NaN/Infinity/-0.0/huge numbers,
control and bidirectional characters, emoji, lone surrogates, line-protocol
metacharacters.
"""

from __future__ import annotations

import string

import orjson
from hypothesis import strategies as st

from ingest.validate import MAX_PAYLOAD_BYTES, MAX_READINGS_PER_MESSAGE

from .basics import (  # noqa: F401 (part of this module's strategies)
    ARRIVED_NS,
    DEVICES,
    FIELDS,
    HERE,
    HOSTILE_CHARS,
    KINDS,
    REGISTRY_DIR,
    SITES,
    any_text,
    device_ids,
    hostile_chars,
    hostile_text,
    ident,
    topics,
)
from .lp_strategies import (  # noqa: F401 (part of this module's strategies)
    LP_INTS,
    LP_NUMBERS,
    LP_STRINGS,
    LP_TIMESTAMPS,
    _lp_escape,
    lp_field_names,
    lp_lines,
    lp_payloads,
    lp_timestamps,
    lp_values,
    valid_lp_lines,
)

# --- JSON -----------------------------------------------------------------------------------------

EDGE_NUMBERS = (
    0, -0.0, 0.0, 1, -1, 0.5, 1e-310, 5e-324, 1e308, -1e308, 1.7976931348623157e308,
    2**31, 2**53 + 1, 2**63 - 1, -(2**63), 2**64 - 1, 2**64, 2**80, -(2**80), 10**30,
    999.9999999, 1000, 1000.0000001, 100, 100.0000001, -0.0000001, 1e11, 1e14, 1e17, 1e19,
)

json_numbers = st.one_of(
    st.sampled_from(EDGE_NUMBERS),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-10, 2000),
)

json_scalars = st.one_of(st.none(), st.booleans(), json_numbers, hostile_text)

json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)),
    max_leaves=12,
)

#: Timestamps a device might send: seconds, ms, us, ns, RFC 3339 strings good and bad, junk.
timestamps = st.one_of(
    st.integers(946684800, 1764230400 + 86400),  # 2000 .. tomorrow, in seconds
    st.integers(946684800_000, 1764230400_000 + 86400_000),
    st.integers(946684800_000_000_000, 1764230400_000_000_000 + 86400_000_000_000),
    st.floats(946684800, 1764230400 + 200),
    json_numbers,
    st.sampled_from([
        "2025-11-27T15:00:00+07:00", "2025-11-27T08:00:00Z", "2025-11-27T08:00:00", "0001-01-01T00:00:00+23:59",
        "9999-12-31T23:59:59-23:59", "2025-02-30T00:00:00Z", "2025-11-27T08:00:00.123456789Z", "", "now",
        "2025-11-27T08:00:00+07:00\x00", "٢٠٢٥-11-27T08:00:00Z", "1764230400",
    ]),
    hostile_text,
    json_values,
)

# Keys of a JSON reading: declared fields most of the time, meta keys, reserved and hostile names.
json_keys = st.one_of(
    st.sampled_from(FIELDS["air_quality"]),
    st.sampled_from(FIELDS["air_quality"]),
    st.sampled_from(FIELDS["server"]),
    st.sampled_from(["_measurement", "_tag_device", "_tag_x", "arrived_ms", "time", "device", "ts", "", "pm25 ", "PM25", "pm25\x00"]),
    hostile_text,
)


def _field_value_for(name: str):
    if name in ("heater_on", "healthy"):
        return st.one_of(st.booleans(), json_values)
    return st.one_of(st.floats(-10, 1100), st.integers(-5, 1100), json_values)


@st.composite
def valid_json_readings(draw) -> dict:
    """Readings that should be stored: declared fields, values in range, a recent time or none."""
    names = draw(st.lists(st.sampled_from(FIELDS["air_quality"]), min_size=1, unique=True))
    values = {
        "pm25": st.floats(0, 1000), "humidity": st.one_of(st.floats(0, 100), st.integers(0, 100)),
        "samples": st.one_of(st.integers(0, 1000), st.integers(0, 1000).map(float)), "heater_on": st.booleans(),
    }
    reading = {n: draw(values[n]) for n in names}
    ts = draw(st.one_of(st.none(), st.integers(1764230400 - 86400, 1764230400), st.floats(1764230400 - 86400, 1764230400 + 100),
                        st.integers(1764230400_000 - 86400_000, 1764230400_000), st.just("2025-11-27T15:00:00+07:00")))
    if ts is not None:
        reading["ts"] = ts
    if draw(st.booleans()):
        reading["device"] = "tv-aq-1"
    return reading


@st.composite
def json_readings(draw) -> dict:
    if draw(st.booleans()):
        reading = draw(valid_json_readings())
        wrong = draw(st.integers(0, 3))  # one thing wrong, most of the time
        if wrong == 1:
            reading[draw(json_keys)] = draw(st.one_of(json_values, st.sampled_from(EDGE_NUMBERS)))
        elif wrong == 2:
            reading["ts"] = draw(timestamps)
        elif wrong == 3:  # a declared field nested around orjson's depth limit and Python's recursion limit
            depth = draw(st.integers(900, 1030))
            reading[draw(st.sampled_from(FIELDS["air_quality"]))] = _Nested(depth)
        return reading
    reading = {}
    if draw(st.booleans()):
        reading["ts"] = draw(timestamps)
    if draw(st.integers(0, 4)) == 0:
        reading["device"] = draw(st.one_of(device_ids, json_values))
    for key in draw(st.lists(json_keys, max_size=6)):
        reading[key] = draw(_field_value_for(key))
    return reading


class _Nested:
    """A JSON value nested ``depth`` lists deep (written by hand: orjson.dumps stops at 255)."""

    def __init__(self, depth: int):
        self.depth = depth

    def __repr__(self) -> str:
        return f"<{self.depth} nested lists>"


def _dumps(doc) -> bytes:
    if isinstance(doc, list) and any(isinstance(d, dict) and any(isinstance(v, _Nested) for v in d.values()) for d in doc) or (
        isinstance(doc, dict) and any(isinstance(v, _Nested) for v in doc.values())
    ):
        items = doc if isinstance(doc, list) else [doc]
        parts = []
        for d in items:
            plain = {k: v for k, v in d.items() if not isinstance(v, _Nested)}
            body = _dumps(plain)[1:-1]
            nested = b",".join(_dumps(k) + b":" + _nest(v.depth) for k, v in d.items() if isinstance(v, _Nested))
            parts.append(b"{" + body + (b"," if body and nested else b"") + nested + b"}")
        return b"[" + b",".join(parts) + b"]" if isinstance(doc, list) else parts[0]
    try:
        return orjson.dumps(doc)
    except (TypeError, orjson.JSONEncodeError):  # ints beyond 64 bits: write them by hand
        import json

        return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _nest(depth: int, inner: bytes = b"1") -> bytes:
    return b"[" * depth + inner + b"]" * depth


#: Literal JSON texts orjson refuses or reads surprisingly (1e400 is infinity, huge ints become floats).
JSON_SNIPPETS = (
    b"NaN", b"-NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"1e-400", b"-0.0", b"-0",
    str(2**80).encode(), str(-(2**80)).encode(), b"1" * 400, b"0." + b"0" * 400 + b"1",
    b'"\\ud800"', b'"\\udfff\\ud800"', b'"\\u0000"', b'"\xed\xa0\x80"', b'"\xff"', b"true", b"null",
    b'"\\u200f\\u202e"', b"01", b"1.", b".5", b"+1", b"0x10", b"[]", b"{}",
)


@st.composite
def json_texts(draw) -> bytes:
    """JSON text with a literal snippet or a deep nesting spliced in where a value belongs."""
    field = draw(st.sampled_from(["pm25", "humidity", "samples", "heater_on", "ts", "device", "_measurement", "\\ud800"]))
    choice = draw(st.integers(0, 4))
    if choice == 0:
        value = draw(st.sampled_from(JSON_SNIPPETS))
    elif choice <= 2:  # deep nesting around orjson's limit (1024) and Python's recursion limit (1000)
        depth = draw(st.one_of(st.integers(1, 1100), st.sampled_from([900, 990, 1000, 1020, 1023, 1024, 1025, 3000])))
        inner = draw(st.sampled_from([b"1", b"{}", b'{"a":1}', b"NaN"]))
        value = _nest(depth, inner) if draw(st.booleans()) else (b'{"a":' * depth + inner + b"}" * depth)
    else:
        value = _dumps(draw(json_values))
    doc = b'{"' + field.encode() + b'":' + value + b"}"
    if draw(st.booleans()):
        doc = b'{"ts":1764230390,' + doc[1:]
    if draw(st.integers(0, 3)) == 0:
        doc = b"[" + doc + b"]"
    return doc


# --- payloads for the whole validator -------------------------------------------------------------


@st.composite
def oversized(draw) -> bytes:
    """Payloads over the size limit: the validator must refuse them whole, keeping 4096 bytes."""
    n = MAX_PAYLOAD_BYTES + draw(st.one_of(st.integers(1, 16), st.integers(1, 2 * MAX_PAYLOAD_BYTES)))
    chunk = draw(st.sampled_from([b"9", b'{"pm25":1},', b"[", b"\xff", "😀".encode(), b"server cpu_pct=1\n"]))
    return (chunk * (n // len(chunk) + 1))[:n]


def too_many_readings() -> bytes:
    return b"[" + b",".join([b'{"pm25":1}'] * (MAX_READINGS_PER_MESSAGE + 1)) + b"]"


@st.composite
def json_payloads(draw) -> bytes:
    kind = draw(st.integers(0, 19))
    if kind <= 9:
        readings = draw(st.lists(json_readings(), min_size=1, max_size=4))
        return _dumps(readings[0] if len(readings) == 1 and draw(st.booleans()) else readings)
    if kind <= 13:
        return draw(json_texts())
    if kind <= 15:  # a good payload, cut or with a byte changed
        good = _dumps(draw(json_readings()))
        i = draw(st.integers(0, len(good)))
        return good[:i] if draw(st.booleans()) else good[:i] + draw(st.binary(min_size=1, max_size=3)) + good[i + 1 :]
    if kind == 16:
        return draw(st.binary(max_size=300))
    if kind == 17:
        return _dumps(draw(json_values))
    if kind == 18:
        return too_many_readings()
    return draw(st.sampled_from([b"", b"null", b"[]", b"[[]]", b"42", b'"x"', b"\xef\xbb\xbf{}", b"{}", b'{"ts":1764230390}']))


AQ_TOPIC = "laocai/ta_van/air_quality/tv-aq-1"
SERVER_TOPIC = "laocai/dc_laocai/server/dc-srv-01"

#: (topic, payload) for the whole Validator.message path: mostly a registered device's topic
#: with a payload in its format (so decoding and checking are reached), then everything else.
messages = st.one_of(
    st.tuples(st.just(AQ_TOPIC), json_payloads()),
    st.tuples(st.just(SERVER_TOPIC), lp_payloads()),
    st.tuples(st.just(AQ_TOPIC), json_payloads()),
    st.tuples(st.just(SERVER_TOPIC), lp_payloads()),
    st.tuples(topics(), st.one_of(json_payloads(), lp_payloads())),
    st.tuples(topics(), oversized()),
    st.tuples(topics(), st.binary(max_size=300)),
)

arrival_times = st.one_of(st.just(ARRIVED_NS), st.integers(946684800_000_000_000, 4102444800_000_000_000))


# --- cardinality attack ---------------------------------------------------------------------------


@st.composite
def cardinality_messages(draw) -> tuple[str, bytes]:
    """A message on a valid topic shape with random device ids, tag values and field names."""
    kind = draw(st.sampled_from(KINDS))
    site = draw(st.one_of(st.sampled_from(SITES), ident, hostile_text))
    device = draw(st.one_of(ident, hostile_text, st.sampled_from(sorted(DEVICES))))
    topic = f"laocai/{site}/{kind}/{device}"
    names = draw(st.lists(st.one_of(st.sampled_from(FIELDS[kind]), ident, hostile_text), min_size=1, max_size=4))
    if kind == "air_quality":
        doc = {n: draw(st.floats(0, 100)) for n in names}
        if draw(st.booleans()):
            doc["device"] = draw(st.one_of(st.just(device), ident, hostile_text))
        return topic, _dumps(doc)
    tags = draw(st.lists(st.tuples(st.one_of(st.just("device"), ident), st.one_of(st.just(device), ident, hostile_text)), max_size=3))
    line = "server" + "".join(f",{_lp_escape(k)}={_lp_escape(v)}" for k, v in tags if k and v)
    line += " " + ",".join(f"{_lp_escape(n)}={draw(st.floats(0, 100))!r}" for n in names if n)
    return topic, line.encode("utf-8")


# --- encoder input --------------------------------------------------------------------------------

#: Tag values with every line-protocol metacharacter (a newline and a trailing backslash must be refused).
tag_values = st.one_of(
    st.lists(st.one_of(hostile_chars, st.sampled_from(list("ab,= \\\"\n"))), min_size=1, max_size=10).map("".join),
    st.sampled_from(sorted(DEVICES) + list(SITES) + ["a\\ b", "a\\,b", "a\\=b", "a\\\\", "\\", "a\\", "\\n", "x\ny", "#x", " x", "x "]),
    any_text.filter(bool),
)

finite_values = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**63), 2**63 - 1), st.booleans())


@st.composite
def hostile_points(draw):
    from storage.base import Point

    kind = draw(st.sampled_from(KINDS))
    names = draw(st.lists(st.sampled_from(FIELDS[kind]), min_size=1, max_size=4, unique=True))
    return Point(
        kind, draw(tag_values), draw(tag_values), draw(st.one_of(st.just(""), tag_values)),
        draw(st.integers(-(2**63), 2**63 - 1)), {n: draw(finite_values) for n in names},
        draw(st.integers(0, 2**63 - 1)),
    )


@st.composite
def hostile_rejects(draw):
    from ingest.validate import REASONS
    from storage.base import Rejected

    text = st.one_of(hostile_text, tag_values, st.text(max_size=300))
    return Rejected(
        draw(st.integers(0, 2**62)), draw(text), draw(st.one_of(st.sampled_from(REASONS), hostile_text)), draw(text),
        draw(st.one_of(st.binary(max_size=300), text.map(lambda s: s.encode("utf-8")), st.binary(min_size=4000, max_size=5000))),
        draw(st.one_of(st.just(""), st.sampled_from(KINDS), hostile_text)), draw(st.one_of(st.just(""), text)),
    )


# --- a plain seeded corpus for the 10,000-message cardinality attack ------------------------------


def cardinality_corpus(n: int, seed: int = 20251127) -> list[tuple[str, bytes]]:
    """``n`` messages on valid topic shapes with random device ids, site ids, tag values and field names."""
    import json
    import random

    rnd = random.Random(seed)
    alphabet = string.ascii_letters + string.digits + "_-.:" + "".join(HOSTILE_CHARS)

    def word(lo: int = 1, hi: int = 12) -> str:
        return "".join(rnd.choice(alphabet) for _ in range(rnd.randint(lo, hi)))

    def lp(s: str) -> str:
        return _lp_escape(s).replace("\n", "").replace("\r", "")

    out = []
    for i in range(n):
        kind = KINDS[i % 2]
        registered = rnd.random() < 0.1
        device = rnd.choice(sorted(DEVICES)) if registered else f"{kind[:2]}-{rnd.getrandbits(32):08x}" if i % 3 else word()
        site = DEVICES[device][1] if registered and rnd.random() < 0.8 else rnd.choice(SITES) if i % 2 else word()
        names = [rnd.choice(FIELDS[kind]) if rnd.random() < 0.5 else word() for _ in range(rnd.randint(1, 3))]
        if kind == "air_quality":
            doc = {name: round(rnd.uniform(0, 100), 2) for name in names}
            if rnd.random() < 0.3:
                doc["device"] = device if rnd.random() < 0.5 else word()
            payload = json.dumps(doc, ensure_ascii=False).encode()
        else:
            tags = [("device", device if rnd.random() < 0.5 else word())] if rnd.random() < 0.5 else []
            tags += [(word(), word()) for _ in range(rnd.randint(0, 2))]
            line = "server" + "".join(f",{lp(k)}={lp(v)}" for k, v in tags if lp(k) and lp(v))
            line += " " + ",".join(f"{lp(n) or 'x'}={rnd.uniform(0, 100)!r}" for n in names)
            payload = line.encode()
        out.append((f"laocai/{site}/{kind}/{device}", payload))
    return out
