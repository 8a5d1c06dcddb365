"""Hypothesis strategies for hostile InfluxDB line protocol: numbers, ints, strings, timestamps, escapes."""

from __future__ import annotations

from hypothesis import strategies as st

from .basics import FIELDS, any_text, device_ids, hostile_text

# --- line protocol --------------------------------------------------------------------------------

LP_NUMBERS = (
    "1", "41.5", "-0.0", "0", "100", "100.0000001", "-1", "1e400", "-1e400", "nan", "NaN", "inf", "-inf", "Infinity",
    "1_0", " 1", "1e", "0x10", "١٢", "²", "--5", "+5", "1.5e3", "5e-324", "1" * 400, str(2**80),
)
LP_INTS = ("1i", "-1i", "0i", "312i", "100001i", "--5i", "²i", "١i", "1u", "-1u", "9223372036854775808i", "i", "-i")
LP_STRINGS = ('"x"', '"high"', '"a\\"b"', '"\\\\"', '""', '"un', '"a b,c=d"', '"é\x00"', '"1"')
LP_TIMESTAMPS = (
    "1764230390000000000", "1764230390", "0", "-1", "--5", "²", "١٧٦٤٢٣٠٣٩٠٠٠٠٠٠٠٠٠٠", "17642303900000000000",
    "9223372036854775807", "9223372036854775808", "-9223372036854775809", "1.5", "1e18", "",
)


def _lp_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


lp_field_names = st.one_of(
    st.sampled_from(FIELDS["server"]), st.sampled_from(FIELDS["server"]), st.sampled_from(FIELDS["air_quality"]),
    st.sampled_from(["_measurement", "_tag_device", "device", "arrived_ms"]), hostile_text.map(_lp_escape), hostile_text,
)

lp_values = st.one_of(
    st.sampled_from(LP_NUMBERS), st.sampled_from(LP_INTS), st.sampled_from(LP_STRINGS),
    st.sampled_from(["t", "true", "F", "false", "TRUE", "yes"]),
    st.floats(-10, 110).map(repr), st.integers(-10, 100_010).map(lambda i: f"{i}i"),
    st.integers(-(2**80), 2**80).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(300, 5000).map(lambda n: "9" * n),  # up to and past Python's 4300-digit int() limit
    st.integers(300, 5000).map(lambda n: "9" * n + "i"),
    hostile_text,
)

lp_timestamps = st.one_of(
    st.sampled_from(LP_TIMESTAMPS),
    st.integers(946684800_000_000_000, 1764230400_000_000_000 + 10**12).map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.integers(300, 5000).map(lambda n: "9" * n),
    hostile_text,
)


@st.composite
def valid_lp_lines(draw) -> str:
    specs = {
        "cpu_pct": st.one_of(st.floats(0, 100).map(repr), st.integers(0, 100).map(str), st.integers(0, 100).map(lambda i: f"{i}i")),
        "procs": st.one_of(st.integers(0, 100_000).map(lambda i: f"{i}i"), st.integers(0, 100_000).map(str)),
        "healthy": st.sampled_from(["t", "true", "True", "f", "false", "F"]),
    }
    names = draw(st.lists(st.sampled_from(FIELDS["server"]), min_size=1, unique=True))
    values = [draw(specs[n]) for n in names]
    ts = draw(st.one_of(st.none(), st.integers(1764230400_000_000_000 - 86400 * 10**9, 1764230400_000_000_000 + 10**11).map(str)))
    wrong = draw(st.integers(0, 3))  # one thing wrong, a quarter of the time each
    if wrong == 1:
        values[draw(st.integers(0, len(values) - 1))] = draw(lp_values)
    elif wrong == 2:
        ts = draw(lp_timestamps)
    line = "server" + draw(st.sampled_from(["", ",device=dc-srv-01"]))
    line += " " + ",".join(f"{n}={v}" for n, v in zip(names, values))
    return line if ts is None else f"{line} {ts}"


@st.composite
def lp_lines(draw) -> str:
    if draw(st.booleans()):
        return draw(valid_lp_lines())
    measurement = draw(st.one_of(st.just("server"), st.just("server"), st.sampled_from(["air_quality", "cpu", "server\\ x", "#server"]), hostile_text))
    tags = draw(st.lists(st.tuples(st.one_of(st.just("device"), hostile_text), st.one_of(device_ids, hostile_text)), max_size=3))
    fields = draw(st.lists(st.tuples(lp_field_names, lp_values), min_size=0, max_size=4))
    line = measurement + "".join(f",{k}={v}" for k, v in tags)
    line += " " + ",".join(f"{k}={v}" for k, v in fields)
    if draw(st.booleans()):
        line += " " + draw(lp_timestamps)
    return line


@st.composite
def lp_payloads(draw) -> bytes:
    kind = draw(st.integers(0, 9))
    if kind <= 6:
        lines = draw(st.lists(lp_lines(), min_size=1, max_size=5))
        sep = draw(st.sampled_from(["\n", "\r\n", "\n\n", "\n# comment\n", "\r"]))
        text = sep.join(lines) + draw(st.sampled_from(["", "\n", " ", "\x00"]))
        return text.encode("utf-8")
    if kind == 7:
        return draw(st.binary(max_size=200))
    if kind == 8:
        return draw(any_text).encode("utf-8")
    return draw(st.sampled_from([b"", b"\n", b"#", b"server", b"server ", b"server cpu_pct=1 \xff\xfe", b"\xef\xbb\xbfserver cpu_pct=1"]))
