"""The bulk write into a real InfluxDB 1.x: what write_columns stores reads back as what write() stores.

Several /write requests at once (storage/influx_v1.py ``write_concurrency``)
keep each series in one request, in order, so the last write of a point wins
within a batch as it does across batches.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest

from device_profiles import load_registry
from ingest.bulk import BulkValidator
from ingest.delivery import deliver
from ingest.validate import Validator
from storage import InfluxV1Store, VictoriaMetricsStore

pytestmark = pytest.mark.servers

REGISTRY = load_registry(Path(__file__).parent / "fixtures" / "registry")
S = 1_000_000_000
T0 = 1_764_230_400 * S
AQ, SRV = "laocai/ta_van/air_quality/tv-aq-1", "laocai/dc_laocai/server/dc-srv-01"


def _messages(n: int) -> list[tuple[str, bytes, int]]:
    out = []
    for i in range(n):
        readings = [{"ts": (T0 + (i * 10 + k) * S) // 10**6, "pm25": 1.5 + k, "humidity": 50.25, "samples": k,
                     "heater_on": k % 2 == 0} for k in range(10)]
        out.append((AQ, orjson.dumps(readings), T0 + 100 * S + i))
        lines = [f"server,device=dc-srv-01 cpu_pct={k / 3!r},procs={k}i,healthy=t {T0 + (i * 10 + k) * S}" for k in range(10)]
        out.append((SRV, "\n".join(lines).encode(), T0 + 100 * S + i))
    out.append((AQ, b'{"pm25": 5000}', T0 + 200 * S))  # out of range: quarantined by both paths
    return out


@pytest.fixture()
def stores(influxd):
    made = []

    def make(**kw):
        s = InfluxV1Store(influxd.url, f"bulk_{uuid.uuid4().hex[:8]}", REGISTRY, **kw)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def _per_reading(v: Validator, msgs) -> tuple[list, list]:
    """The points and rejects of the per-reading validator, message by message (what write() is given)."""
    points, rejected = [], []
    for m in msgs:
        p, r = v.message(*m)
        points += p
        rejected += r
    return points, rejected


def _contents(store) -> dict:
    out = {}
    for device, kind in (("tv-aq-1", "air_quality"), ("dc-srv-01", "server")):
        for field in REGISTRY.kinds[kind].fields:
            out[(device, field)] = store.query(device, field, T0 - S, T0 + 1000 * S)
    out["quarantine"] = [(r.reason, r.detail, r.raw) for r in store.quarantined(T0, T0 + 1000 * S)]
    return out


def test_bulk_write_reads_back_like_the_per_point_write(stores):
    msgs = _messages(20)
    v = Validator(REGISTRY)
    points, rejected = _per_reading(v, msgs)
    batch, bulk_rejected = BulkValidator(v).messages(msgs)
    per_point = stores()
    per_point.write(points, rejected)
    bulk = stores(batch_size=37, write_concurrency=3)  # many requests, three at a time
    assert deliver(bulk, batch, bulk_rejected) == 0
    got = _contents(bulk)
    assert got == _contents(per_point)
    assert len(got[("tv-aq-1", "pm25")]) == 200 and len(got[("dc-srv-01", "procs")]) == 200
    assert [reason for reason, _d, _r in got["quarantine"]] == ["out_of_range"]


def test_last_write_of_a_point_wins_within_a_concurrent_batch(stores):
    msgs = [(SRV, f"server,device=dc-srv-01 cpu_pct={v}.0 {T0 + (i % 7) * S}".encode(), T0 + 100 * S + i)
            for i, v in enumerate(range(1, 60))]
    batch, rejected = BulkValidator(Validator(REGISTRY)).messages(msgs)
    store = stores(batch_size=3, write_concurrency=4)
    store.write_columns(batch, rejected)
    got = dict(store.query("dc-srv-01", "cpu_pct", T0 - S, T0 + 10 * S))
    assert got == {T0 + k * S: float(max(v for i, v in enumerate(range(1, 60)) if i % 7 == k)) for k in range(7)}


def test_sqlite_bulk_write_stores_what_the_per_point_write_stores(tmp_path):
    """The embedded store's write_columns (storage/sqlite_columns.py): the same rows, byte for byte, as write()."""
    import sqlite3

    from ingest.delivery import prepare
    from storage import SQLiteStore

    msgs = _messages(20)
    v = Validator(REGISTRY)
    points, rejected = _per_reading(v, msgs)
    per_point = SQLiteStore(tmp_path / "points.sqlite", REGISTRY)
    per_point.write(points, rejected)
    bulk = SQLiteStore(tmp_path / "bulk.sqlite", REGISTRY)
    batch, bulk_rejected = BulkValidator(v).messages(msgs)
    assert deliver(bulk, prepare(bulk, batch, bulk_rejected), bulk_rejected) == 0
    for s in (per_point, bulk):
        s.close()

    def dump(path):
        with sqlite3.connect(path) as c:
            tables = [r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            return {t: sorted(c.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}

    got, want = dump(tmp_path / "bulk.sqlite"), dump(tmp_path / "points.sqlite")
    assert got == want
    assert len(got["readings_air_quality"]) == len(got["readings_server"]) == 20 * 10
    assert len(got["quarantine"]) == 1
    with sqlite3.connect(tmp_path / "bulk.sqlite") as c:  # ints stay integers, floats reals
        types = c.execute("SELECT typeof(procs), typeof(healthy), typeof(cpu_pct) FROM readings_server").fetchall()
        types += c.execute("SELECT typeof(samples), typeof(heater_on), typeof(pm25) FROM readings_air_quality").fetchall()
    assert set(types) == {("integer", "integer", "real")}


SPELLINGS = ["9.70", "100", "-0", "0", "0.1000000000000000055511151231257827", "33.333333333333333333333",
             "99.99999999999999999", "7.125"]


def _spliced(t0: int):
    """A core switch's own spellings ("9.70", "100", "-0", more digits than a double holds) of line protocol:
    the shipped registry, the per-reading points and the bulk batch (whose field text goes out as sent)."""
    shipped = load_registry()
    lines = [f"core_switch ports_up={k}i,ports_down=0i,rx_errors=12345678i,tx_errors=0i,cpu_pct={pct} {t0 + k * S}"
             for k, pct in enumerate(SPELLINGS)]
    msg = ("laocai/dc_laocai/core_switch/dc-core-sw-1", "\n".join(lines).encode(), t0 + 100 * S)
    v = Validator(shipped)
    points, rejected = v.message(*msg)
    batch, bulk_rejected = BulkValidator(v).messages([msg])
    assert not rejected and not bulk_rejected and [kc.body is not None for kc in batch.kinds] == [True]
    assert batch.kinds[0].ts_text is not None  # read whole (ingest/bulk_lp.lp_texts): times go as sent too
    return shipped, points, batch


def _read_back(store, shipped, t0: int) -> dict:
    """Field -> (value, type) list of the readings from t0 on: what a store holds, without the times."""
    return {f: [(x, type(x)) for _t, x in store.query("dc-core-sw-1", f, t0, t0 + 10 * S)]
            for f in shipped.kinds["core_switch"].fields}


def test_line_protocol_spliced_as_sent_reads_back_as_the_encoders(stores):
    """Into the real influxd: what goes as sent reads back as what the per-reading path (the Encoder) stores,
    which is the double each decimal denotes."""
    shipped, points, batch = _spliced(T0)
    per_point, bulk = (InfluxV1Store(s.url, s.database, shipped) for s in (stores(), stores()))
    per_point.write(points)
    assert deliver(bulk, batch, []) == 0
    got = _read_back(bulk, shipped, T0)
    assert got == _read_back(per_point, shipped, T0)
    assert got["cpu_pct"] == [(float(p), float) for p in SPELLINGS] and got["rx_errors"][0] == (12345678, int)
    per_point.close()
    bulk.close()


def test_line_protocol_spliced_as_sent_reads_back_from_victoria(victoria):
    """Into a real VictoriaMetrics (its own parser; it keeps about 12 significant digits of any spelling): the
    same numbers and types as the Encoder's lines of the same readings, written an hour later."""
    t0 = T0 + 977 * S  # times of its own: the server is shared by the module's tests and keeps every sample
    shipped, points, batch = _spliced(t0)
    store = VictoriaMetricsStore(victoria.url, shipped)
    store.write([p._replace(ts_ns=p.ts_ns + 3600 * S) for p in points])
    assert deliver(store, batch, []) == 0
    got = _read_back(store, shipped, t0)
    assert len(got["cpu_pct"]) == len(SPELLINGS) and got == _read_back(store, shipped, t0 + 3600 * S)
    store.close()
