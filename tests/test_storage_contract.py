"""One contract, every store: SQLite, InfluxDB 1.x (real influxd), InfluxDB 2.x write path
(influxdb-client against real VictoriaMetrics, read back with VictoriaMetricsReader), and
VictoriaMetricsStore (line protocol to /write, read with VictoriaMetricsReader) on a second real one.

Plus exact unit tests of the line-protocol encoding and of the error mapping.
"""

from __future__ import annotations

import math
import uuid

import pytest
import servers
from storage_backends import (  # noqa: F401 (fixtures)
    T0,
    UPS_DEVICES,
    VICTORIA,
    WEATHER_DEVICES,
    H,
    S,
    backend,
    names_in,
    open_store,
    pt,
    registry,
    skip_on_victoria,
    store,
    victoria2,
)

from storage import (
    InfluxV1Store,
    InfluxV2Store,
    Point,
    QueryError,
    Rejected,
    SQLiteStore,
    StoreError,
    VictoriaMetricsReader,
)
from storage.line_protocol import raw_text, stored_text

# ---------------------------------------------------------------- contract

def test_roundtrip_keeps_types(store, registry):
    t = T0 + 1 * H
    store.write([pt(registry, "w-rt", t, temperature=21.5, rain_count=3, pump_on=True),
                 pt(registry, "w-rt", t + S, temperature=20, rain_count=0, pump_on=False)])
    temps = store.query("w-rt", "temperature", t, t + 2 * S)
    assert temps == [(t, 21.5), (t + S, 20.0)] and all(type(v) is float for _, v in temps)
    counts = store.query("w-rt", "rain_count", t, t + 2 * S)
    assert counts == [(t, 3), (t + S, 0)] and all(type(v) is int for _, v in counts)
    assert store.query("w-rt", "pump_on", t, t + 2 * S) == [(t, 1), (t + S, 0)]


def test_nanosecond_times_are_kept(store, registry, backend):
    skip_on_victoria(backend, "it keeps times to the millisecond only (its storage format), "
                     "so nanoseconds cannot come back")
    t = T0 + 2 * H + 123_456_789
    store.write([pt(registry, "w-ns", t, temperature=1.25), pt(registry, "w-ns", t + 1, temperature=2.5)])
    assert store.query("w-ns", "temperature", t, t + 2) == [(t, 1.25), (t + 1, 2.5)]


def test_same_point_twice_is_stored_once(store, registry):
    t = T0 + 3 * H
    batch = [pt(registry, "w-dup", t, temperature=5.5, rain_count=1), pt(registry, "w-dup", t + S, temperature=6.5)]
    store.write(batch)
    store.write(batch)
    store.write(batch[:1])
    assert store.query("w-dup", "temperature", t, t + 10 * S) == [(t, 5.5), (t + S, 6.5)]
    assert store.query("w-dup", "temperature", t, t + 10 * S, 60, "count") == [(t, 2)]


def test_last_write_wins(store, registry, backend):
    skip_on_victoria(backend, "it keeps every sample and does not record which of two with one "
                     "timestamp came last")
    t = T0 + 4 * H
    store.write([pt(registry, "w-lww", t, temperature=1.0)])
    store.write([pt(registry, "w-lww", t, temperature=2.0)])
    assert store.query("w-lww", "temperature", t, t + S) == [(t, 2.0)]


WINDOW_DATA = [  # (offset s, temperature, rain_count, pump_on)
    (2, 100.0, 100, True),  # before the query's start: excluded
    (10, 1.0, 1, True), (20, 2.0, 5, False), (50, 6.0, 3, True),  # window [0, 60)
    (70, 10.0, 7, True),  # window [60, 120); [120, 240) stays empty
    (250, -4.5, 2, False),  # window [240, 300)
    (300, 100.0, 100, True),  # at the query's end: excluded
]
WINDOW_EXPECTED = {  # (field, agg) -> [(window offset s, value)]
    ("temperature", "mean"): [(0, 3.0), (60, 10.0), (240, -4.5)],
    ("temperature", "min"): [(0, 1.0), (60, 10.0), (240, -4.5)],
    ("temperature", "max"): [(0, 6.0), (60, 10.0), (240, -4.5)],
    ("temperature", "last"): [(0, 6.0), (60, 10.0), (240, -4.5)],
    ("temperature", "count"): [(0, 3), (60, 1), (240, 1)],
    ("rain_count", "mean"): [(0, 3.0), (60, 7.0), (240, 2.0)],
    ("rain_count", "min"): [(0, 1), (60, 7), (240, 2)],
    ("rain_count", "max"): [(0, 5), (60, 7), (240, 2)],
    ("rain_count", "last"): [(0, 3), (60, 7), (240, 2)],
    ("pump_on", "mean"): [(0, 2 / 3), (60, 1.0), (240, 0.0)],
    ("pump_on", "count"): [(0, 3), (60, 1), (240, 1)],
}


def test_window_aggregates(store, registry):
    base = T0 + 5 * H
    store.write([pt(registry, "w-win", base + o * S, temperature=t, rain_count=r, pump_on=p)
                 for o, t, r, p in WINDOW_DATA])
    for (field, agg), expected in WINDOW_EXPECTED.items():
        got = store.query("w-win", field, base + 5 * S, base + 300 * S, window_s=60, agg=agg)
        assert [t for t, _ in got] == [base + o * S for o, _ in expected], (field, agg)
        assert [v for _, v in got] == pytest.approx([v for _, v in expected]), (field, agg)
        want_type = float if agg == "mean" or (field == "temperature" and agg != "count") else int
        assert all(type(v) is want_type for _, v in got), (field, agg, got)
    # windows are aligned on the epoch, not on the query's start: 7 s does not divide the base
    got = store.query("w-win", "temperature", base, base + 400 * S, window_s=7, agg="count")
    offsets = [o for o, *_ in WINDOW_DATA]
    buckets = sorted({(base + o * S) - (base + o * S) % (7 * S) for o in offsets})
    assert [t for t, _ in got] == buckets
    assert sum(v for _, v in got) == len(offsets)


def test_time_range_is_half_open(store, registry):
    base = T0 + 6 * H
    store.write([pt(registry, "w-range", base + o * S, temperature=float(o)) for o in (0, 1, 2, 3)])
    assert store.query("w-range", "temperature", base + 1 * S, base + 3 * S) == [(base + S, 1.0), (base + 2 * S, 2.0)]
    assert store.query("w-range", "temperature", base + 4 * S, base + 9 * S) == []
    assert store.query("w-range", "temperature", base - 9 * S, base + S, 60, "mean") == [(base, 0.0)]


def test_last_seen(store, registry):
    base = T0 + 7 * H
    store.write([pt(registry, "w-seen", base + 5 * S, temperature=1.0),
                 pt(registry, "u-seen", base + 9 * S, load=50.0, on_battery=False)])
    store.write([pt(registry, "w-seen", base + 2 * S, temperature=1.0),  # late and older: does not count
                 pt(registry, "u-seen", base + 11 * S, load=51.0)])
    seen = store.last_seen()
    assert seen["w-seen"] == base + 5 * S
    assert seen["u-seen"] == base + 11 * S
    assert "w-fc" not in seen  # no test writes it (VictoriaMetrics is one namespace for every test that uses it)


RAW = b'{"pm25": "1,5", "note": "say \\"hi\\"\n\\\\ back"}\n\xff\xfe bad utf-8 \xc3'


def test_quarantine_roundtrip(store, registry, backend):
    skip_on_victoria(backend, "it stores numbers only: the quarantine's text (topic, detail, raw "
                     "payload) is dropped on write and the reader raises NotImplementedError")
    t = T0 + 8 * H + 7
    rejected = [
        Rejected(t, "test/ta-van/weather/w-rt", "bad_json", 'unexpected "," at 12\nline 2', RAW, "weather", "w-rt"),
        Rejected(t, "test/ta-van/weather/w-rt", "bad_json", "second reading of the payload", b"{}", "weather", "w-rt"),
        Rejected(t + S, "nowhere/x", "unknown_topic", "no profile subscribes here", b"\x00\x01", "", ""),
    ]
    store.write([], rejected)
    store.write([], rejected)  # a redelivered batch is stored once
    got = store.quarantined(t, t + 2 * S)
    expected = [r._replace(detail=stored_text(r.detail), raw=stored_text(raw_text(r.raw)).encode())
                for r in rejected]
    expected[1] = expected[1]._replace(arrived_ns=t + 1)  # same payload and reason: moved 1 ns to stay distinct
    assert got == [expected[2], expected[1], expected[0]]
    assert store.quarantined(t, t + 2 * S, limit=1) == [expected[2]]
    assert store.quarantined(t + 2, t + S) == []
    assert b"\\xff\\xfe" in got[2].raw and b'"hi\\"' in got[2].raw


def test_quarantine_not_readable_from_victoria(registry):
    reader = VictoriaMetricsReader("http://127.0.0.1:9", registry)
    with pytest.raises(NotImplementedError, match="numbers only"):
        reader.quarantined(0, 1)


EVIL = '"\nevil,device=x value=1 1\n\\"\r\nevil2 value=2'


def test_line_protocol_injection_creates_nothing(store, registry, backend, request):
    t = T0 + 9 * H
    store.write([pt(registry, "w-inj", t, temperature=1.0)],
                [Rejected(t, f"topic{EVIL}", "bad_json", f"detail{EVIL}", f"raw{EVIL}".encode(), "weather", EVIL)])
    names = names_in(backend, store, request)
    assert not any("evil" in n for n in names), names
    assert "x" not in store.last_seen()
    assert store.query("w-inj", "temperature", t, t + S) == [(t, 1.0)]
    if backend not in VICTORIA:
        (r,) = store.quarantined(t, t + S)
        assert r.detail == stored_text(f"detail{EVIL}") and r.device == stored_text(EVIL)


BAD_QUERIES = [  # (device, field, start, end, window_s, agg, text the message must name)
    ("w-nope", "temperature", 0, 10, None, None, "'w-nope'"),
    ("w-rt", "humidity", 0, 10, None, None, "'humidity'"),
    ("w-rt", "load", 0, 10, None, None, "'load'"),  # a field of another kind
    ("w-rt", "arrived_ms", 0, 10, None, None, "'arrived_ms'"),
    ("w-rt", "temperature", 0, 10, 60, "median", "'median'"),
    ("w-rt", "temperature", 0, 10, 60, None, "None"),
    ("w-rt", "temperature", 0, 10, None, "mean", "window"),
    ("w-rt", "temperature", 0, 10, 0, "mean", "0"),
    ("w-rt", "temperature", 0, 10, -60, "mean", "-60"),
    ("w-rt", "temperature", 0, 10, 1.5, "mean", "1.5"),
    ("w-rt", "temperature", 0, 10, 10**12, "mean", str(10**12)),
    ("w-rt", "temperature", 10, 10, None, None, "10"),
    ("w-rt", "temperature", 20, 10, 60, "mean", "20"),
    ('w-rt" OR 1=1 --', "temperature", 0, 10, None, None, "OR 1=1"),
    ("w-rt", 'temperature" FROM x --', 0, 10, None, None, "FROM x"),
]


@pytest.mark.parametrize("device,field,start,end,window_s,agg,named", BAD_QUERIES)
def test_bad_queries_are_refused(store, device, field, start, end, window_s, agg, named):
    with pytest.raises(QueryError) as exc:
        store.query(device, field, start, end, window_s, agg)
    assert named in str(exc.value)


def test_bad_quarantine_queries_are_refused(store, backend):
    skip_on_victoria(backend, "it stores numbers only: there is no quarantine to query")
    for start, end, limit in [(10, 10, 5), (0, 10, 0), (0, 10, -1)]:
        with pytest.raises(QueryError):
            store.quarantined(start, end, limit)


def test_non_finite_value_is_refused_not_retried(store, registry):
    for bad in (math.nan, math.inf):
        with pytest.raises(StoreError) as exc:
            store.write([pt(registry, "w-rt", T0, temperature=bad)])
        assert not exc.value.retryable and "temperature" in str(exc.value)


# ---------------------------------------------------------------- errors of the server-backed stores

def test_unreachable_server_is_retryable(registry):
    port = servers.free_port()
    for s in (InfluxV1Store(f"http://127.0.0.1:{port}", "db", registry, timeout_s=2),
              InfluxV2Store(f"http://127.0.0.1:{port}", "tok", "org", "bucket", registry, timeout_s=2)):
        with pytest.raises(StoreError) as exc:
            s.write([pt(registry, "w-rt", T0, temperature=1.0)])
        assert exc.value.retryable and f"127.0.0.1:{port}" in str(exc.value)
        with pytest.raises(StoreError) as exc:
            s.last_seen()
        assert exc.value.retryable
        with pytest.raises(StoreError) as exc:
            s.frame("weather", T0, T0 + S)
        assert exc.value.retryable and f"127.0.0.1:{port}" in str(exc.value)
        s.close()
    reader = VictoriaMetricsReader(f"http://127.0.0.1:{port}", registry, timeout_s=2)
    with pytest.raises(StoreError) as exc:
        reader.frame("weather", T0, T0 + S)
    assert exc.value.retryable
    reader.close()


def test_influx1_refusals_are_not_retryable(influxd, registry):
    s = InfluxV1Store(influxd.url.replace("http://", "http://admin:s3cret@"), "no_such_db", registry,
                      create_database=False)
    with pytest.raises(StoreError) as exc:
        s.write([pt(registry, "w-rt", T0, temperature=1.0)])
    msg = str(exc.value)
    assert not exc.value.retryable and "404" in msg and "no_such_db" in msg and influxd.url in msg
    assert "s3cret" not in msg
    with pytest.raises(StoreError, match="no_such_db") as exc:  # an error inside a chunked answer
        s.frame("weather", T0, T0 + S)
    assert not exc.value.retryable and "s3cret" not in str(exc.value)
    s.close()
    s = InfluxV1Store(influxd.url, f"t_{uuid.uuid4().hex[:12]}", registry)
    s.write([pt(registry, "w-rt", T0, temperature=1.0)])
    with pytest.raises(StoreError, match="conflict") as exc:  # one type per field forever
        s.write([Point("weather", "w-rt", "ta-van", "sa-pa", T0 + S, {"temperature": True}, T0)])
    assert not exc.value.retryable
    s.close()


def test_influx2_store_reads_with_influxql(influxd, registry):
    """The 2.x store's own reader is the shared InfluxQL reader, with db=<bucket> and a Token header."""
    bucket = f"t_{uuid.uuid4().hex[:12]}"
    v1 = InfluxV1Store(influxd.url, bucket, registry)
    v1.write([pt(registry, "w-rt", T0, temperature=1.5, rain_count=2)])
    v2 = InfluxV2Store(influxd.url, "tok", "org", bucket, registry)
    assert v2.query("w-rt", "temperature", T0, T0 + S) == [(T0, 1.5)]
    assert v2.last_seen() == {"w-rt": T0}
    with pytest.raises(StoreError) as exc:  # InfluxDB 1.6 has no /api/v2/write
        v2.write([pt(registry, "w-rt", T0, temperature=1.0)])
    assert not exc.value.retryable and "InfluxV1Store" in str(exc.value) and "tok" not in str(exc.value)
    v1.close()
    v2.close()


def test_sqlite_is_durable_and_shared(tmp_path, registry):
    s = SQLiteStore(tmp_path / "a.sqlite", registry)
    conn = s._conn()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    other = SQLiteStore(tmp_path / "a.sqlite", registry, busy_timeout_s=0.1)  # as another process would
    s.write([pt(registry, "w-rt", T0, temperature=1.0)])
    assert other.query("w-rt", "temperature", T0, T0 + 1) == [(T0, 1.0)]
    conn.execute("BEGIN IMMEDIATE")  # a writer holds the lock: readers go on, writers get a retryable error
    assert other.query("w-rt", "temperature", T0, T0 + 1) == [(T0, 1.0)]
    with pytest.raises(StoreError, match="SQLITE_BUSY") as exc:
        other.write([pt(registry, "w-rt", T0 + 1, temperature=2.0)])
    assert exc.value.retryable
    conn.execute("ROLLBACK")
    other.close()
    s.close()
