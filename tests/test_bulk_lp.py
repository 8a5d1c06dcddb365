"""Line-protocol messages read whole (ingest/bulk_lp.lp_texts) agree with the per-reading path, exactly.

lp_texts reads a group of messages whose every line has the first line's layout
with one regular expression and numpy; anything else falls back to the
line-by-line readers.  The batches here are built to hit it: one layout a batch
(device tag or not, time or not, any field order), numbers in the spellings
devices send, a few out of range or naming another device, 19-digit times at
the ends of int64, and long decimals that numpy's digit arithmetic must not read.
"""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_bulk_property import (ARR, SETTINGS, SHIPPED, SHIPPED_BULK, SHIPPED_FLOATS, SHIPPED_V, SWITCH, _both_paths,
                                _typed, as_read)

from ingest.bulk_lp import _plain_numbers, lp_texts
from ingest.clock import ClockTracker
from storage.bulk_encode import BulkLines
from storage.line_protocol import Encoder

FIELDS = ("ports_up", "ports_down", "rx_errors", "tx_errors", "cpu_pct")
TYPES = ("int", "int", "int", "int", "float")
DEVICE = "dc-core-sw-1"
PLAIN = r"-?(?:0|[1-9][0-9]{0,20})(?:\.[0-9]{1,25})?"

ints = st.one_of(st.integers(0, 1024).map(str), st.integers(-50, 2000).map(str),
                 st.sampled_from(["0", "1000000000", "1000000001", "9007199254740993", "99999999999999999999"]))
floats = st.one_of(st.integers(0, 10_000).map(lambda c: f"{c / 100:.2f}"),
                   st.floats(0, 100).map(repr).filter(lambda r: "e" not in r),  # exponents: not this reader's
                   st.from_regex(PLAIN, fullmatch=True), st.sampled_from(["-0", "-0.0", "100", "100.0000000000000001"]))
times = st.one_of(st.integers(ARR - 10**13, ARR + 10**9).map(str),
                  st.sampled_from(["9223372036854775807", "-9223372036854775808", "0", "-1", str(ARR + 10**15)]))


@st.composite
def layout(draw):
    return draw(st.booleans()), draw(st.booleans()), tuple(draw(st.permutations(range(5))))


@st.composite
def line(draw, named, timed, order):
    text = [f"{FIELDS[j]}={draw(ints)}i" if TYPES[j] == "int" else f"{FIELDS[j]}={draw(floats)}" for j in order]
    dev = draw(st.sampled_from([DEVICE] * 6 + ["dc-core-sw-2"]))
    return (f"core_switch,device={dev}" if named else "core_switch") + " " + ",".join(text) + (
        f" {draw(times)}" if timed else "")


@st.composite
def batch(draw):
    named, timed, order = draw(layout())
    return ["\n".join(draw(st.lists(line(named, timed, order), min_size=1, max_size=6)))
            + draw(st.sampled_from(["", "\n"])) for _ in range(draw(st.integers(1, 4)))]


def _read_whole(texts: list[str]):
    return lp_texts([t.removesuffix("\n") for t in texts], [DEVICE] * len(texts), "core_switch", FIELDS, TYPES)


@SETTINGS
@given(batch())
def test_whole_messages_in_one_layout_agree(texts):
    """Same points, field types, rejects (with "reading n of N") and stored numbers as message by message;
    and the times' text as sent (KindColumns.ts_text) gives the very lines the Encoder's %d does."""
    assert _read_whole(texts) is not None
    msgs = [(SWITCH, t.encode(), ARR + i) for i, t in enumerate(texts)]
    points, rejected, got, _bulk_rejected = _both_paths(SHIPPED_V, SHIPPED_BULK, msgs)
    lines = BulkLines(Encoder(SHIPPED_FLOATS)).lines(got)
    assert sorted(map(as_read, lines)) == sorted(map(as_read, Encoder(SHIPPED_FLOATS).point_lines(points)))
    assert all(kc.body is not None for kc in got.kinds)  # the fields' text went on as sent
    formatted = [replace(kc, ts_text=None) for kc in got.kinds]  # the time written from ts_ns (%d)
    assert lines == BulkLines(Encoder(SHIPPED_FLOATS)).lines(replace(got, kinds=formatted))
    if texts[0].partition("\n")[0].count(" ") == 2:  # timed lines: their times' text goes on as sent
        assert all(kc.ts_text is not None for kc in got.kinds)

    # and with the clock tracker deciding after validation (late, skewed, corrected readings leave the text)
    one, bulk_clock = ClockTracker(SHIPPED), ClockTracker(SHIPPED)
    points, rejected = [], []
    for m in msgs:
        p, r = SHIPPED_V.message(*m)
        p, r = one.apply(p, r, m[0], m[1])
        points += p
        rejected += r
    got, bulk_rejected = SHIPPED_BULK.messages(msgs, clock=bulk_clock)
    assert _typed(got.points()) == _typed(points) and bulk_rejected == rejected
    lines = BulkLines(Encoder(SHIPPED_FLOATS)).lines(got)
    assert sorted(map(as_read, lines)) == sorted(map(as_read, Encoder(SHIPPED_FLOATS).point_lines(points)))


@SETTINGS
@given(st.lists(st.from_regex(PLAIN, fullmatch=True), min_size=1, max_size=40))
def test_plain_numbers_are_floats_reading(values):
    """Digit arithmetic up to 15 digits, numpy's C parser beyond: float()'s double, sign of zero included."""
    raw = ",".join(values).encode()
    b = np.frombuffer(raw, np.uint8)
    ends = np.flatnonzero(np.frombuffer(raw + b",", np.uint8) == ord(","))
    got = _plain_numbers(b, np.concatenate(([0], ends[:-1] + 1)), ends)
    want = np.array([float(v) for v in values])
    assert got.tobytes() == want.tobytes()


@pytest.mark.parametrize("texts", [
    ["core_switch ports_up=1i,ports_down=0i,rx_errors=0i,tx_errors=0i,cpu_pct=5.5",
     "core_switch,device=dc-core-sw-1 ports_up=1i,ports_down=0i,rx_errors=0i,tx_errors=0i,cpu_pct=5.5"],  # two layouts
    ["core_switch ports_up=1i,ports_down=0i,rx_errors=0i,tx_errors=0i"],  # a field missing
    ["core_switch ports_up=1i,ports_down=0i,rx_errors=0i,tx_errors=0i,cpu_pct=5.5,cpu_pct=5.5"],  # one twice
    ["core_switch ports_up=1i,ports_down=0i,rx_errors=0i,tx_errors=0i,cpu_pct=5.5 1\r"],  # CRLF
    ["core_switch ports_up=1i,ports_down=0i,rx_errors=0i,tx_errors=0i,cpu_pct=5.5\n\n"],  # a blank line
    ["# comment\ncore_switch ports_up=1i,ports_down=0i,rx_errors=0i,tx_errors=0i,cpu_pct=5.5"],
    ["core_switch ports_up=1i,ports_down=0i,rx_errors=0i,tx_errors=0i,cpu_pct=5.5 "],  # a trailing space
    ["core_switch ports_up=01i,ports_down=0i,rx_errors=0i,tx_errors=0i,cpu_pct=5.5"],  # spellings sent re-formatted
    ["core_switch ports_up=1i,ports_down=0i,rx_errors=0i,tx_errors=0i,cpu_pct=1e1"],
    ["core_switch ports_up=1u,ports_down=0i,rx_errors=0i,tx_errors=0i,cpu_pct=5.5"],
    ["core_switch ports_up=-0i,ports_down=0i,rx_errors=0i,tx_errors=0i,cpu_pct=5.5"],
    ["core_switch ports_up=1i,ports_down=0i,rx_errors=0i,tx_errors=0i,cpu_pct=.5"],
    ["core_switch,device=dc\u00e9 ports_up=1i,ports_down=0i,rx_errors=0i,tx_errors=0i,cpu_pct=5.5"],  # not ASCII
    ["core_switch ports_up=1i,ports_down=0i,rx_errors=0i,tx_errors=0i,cpu_pct=5.5 12345678901234567890"],
])
def test_other_layouts_are_left_to_the_line_readers(texts):
    """lp_texts declines; the batch still agrees with the per-reading path (line by line)."""
    assert _read_whole(texts) is None
    _both_paths(SHIPPED_V, SHIPPED_BULK, [(SWITCH, t.encode(), ARR + i) for i, t in enumerate(texts)])


def test_a_bool_field_is_left_to_the_line_readers():
    assert lp_texts(["k a=t"], ["d"], "k", ("a",), ("bool",)) is None


def test_rows_come_message_by_message_with_counts():
    texts = ["core_switch ports_up=1i,ports_down=0i,rx_errors=0i,tx_errors=0i,cpu_pct=5.5 " + str(ARR + k)
             for k in range(3)]
    dec, counts = lp_texts(["\n".join(texts[:2]), texts[2]], [DEVICE] * 2, "core_switch", FIELDS, TYPES)
    assert counts.tolist() == [2, 1] and dec.ts_ns.tolist() == [ARR, ARR + 1, ARR + 2]
    assert dec.ts_text.tolist() == [str(ARR + k) for k in range(3)]
    assert dec.values[:, 0].tolist() == [1.0] * 3 and dec.values[:, 4].tolist() == [5.5] * 3
    assert [re.sub(r" \d+$", "", t).split(" ")[1] for t in texts] == dec.body.tolist()


def test_plain_numbers_across_blocks():
    """More values than one block (bulk_lp._BLOCK), of every length up to 25 digits, each read as float() reads it."""
    rng = np.random.default_rng(7)
    values = []
    for k in range(40_000):
        digits = "".join(map(str, rng.integers(0, 10, int(rng.integers(1, 26)))))
        digits = digits.lstrip("0") or "0"
        cut = int(rng.integers(1, len(digits) + 1))
        values.append(("-" if k % 3 == 0 else "") + digits[:cut] + ("." + digits[cut:] if cut < len(digits) else ""))
    raw = ",".join(values).encode()
    ends = np.flatnonzero(np.frombuffer(raw + b",", np.uint8) == ord(","))
    got = _plain_numbers(np.frombuffer(raw, np.uint8), np.concatenate(([0], ends[:-1] + 1)), ends)
    assert got.tobytes() == np.array([float(v) for v in values]).tobytes()


def test_a_bulk_path_bug_costs_speed_not_readings(monkeypatch, caplog):
    """A group whose bulk reading raises after it has refused a reading is taken again message by message:
    what it had added is taken back first, so nothing is stored or refused twice."""
    good = "core_switch ports_up=1i,ports_down=0i,rx_errors=0i,tx_errors=0i,cpu_pct=5.5"
    msgs = [(SWITCH, f"{good}\n{good.replace('5.5', '101.5')}".encode(), ARR), (SWITCH, good.encode(), ARR + 1)]

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the bulk path")

    monkeypatch.setattr("ingest.bulk.KindColumns", broken)  # after the refused reading went to the rejects
    _points, rejected, batch, _ = _both_paths(SHIPPED_V, SHIPPED_BULK, msgs)
    assert len(rejected) == 1 and len(batch.extra) == 2 and not batch.kinds
    assert "bulk path failed on 2 core_switch messages" in caplog.text
