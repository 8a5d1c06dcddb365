"""Line protocol, exactly: what the InfluxDB stores send for points and quarantine records."""

from __future__ import annotations

import math

import numpy as np
import pytest

from storage import AGGREGATES, Point, Rejected
from storage.bulk_encode import BulkLines
from storage.columns import from_points
from storage.line_protocol import Encoder, encode, quarantine_times, raw_text

S = 1_000_000_000
T0 = 1_704_067_200 * S  # 2024-01-01T00:00:00Z
EVIL = '"\nevil,device=x value=1 1\n\\"\r\nevil2 value=2'


# ---------------------------------------------------------------- line protocol, exactly

def P(kind="weather", device="w-1", site="ta-van", district="sa-pa", ts=T0 + 1, fields=None, arrived=T0 + 123_456_789):
    return Point(kind, device, site, district, ts, fields if fields is not None else {"temperature": 21.5}, arrived)


LINES = [
    (P(fields={"temperature": 21.5, "rain_count": 3, "pump_on": True}),
     "weather,device=w-1,district=sa-pa,site=ta-van temperature=21.5,rain_count=3i,pump_on=1i,"
     "arrived_ms=1704067200123i 1704067200000000001"),
    (P(district="", fields={"pump_on": False, "x": 1e20, "y": -0.0, "z": 0.1}),
     "weather,device=w-1,site=ta-van pump_on=0i,x=1e+20,y=-0.0,z=0.1,arrived_ms=1704067200123i 1704067200000000001"),
    (P(device="a b,c=d", site="s=1", district="d,2", fields={"f": 2}),
     r"weather,device=a\ b\,c\=d,district=d\,2,site=s\=1 f=2i,"
     "arrived_ms=1704067200123i 1704067200000000001"),
    (P(fields={"temperature": 20}), "weather,device=w-1,district=sa-pa,site=ta-van temperature=20.0,"
     "arrived_ms=1704067200123i 1704067200000000001"),  # an int for a float field stays a float
    (P(fields={"a": np.float64(1.5), "b": np.int64(7), "c": np.bool_(True)}),
     "weather,device=w-1,district=sa-pa,site=ta-van a=1.5,b=7i,c=1i,arrived_ms=1704067200123i 1704067200000000001"),
    (P(fields={}), "weather,device=w-1,district=sa-pa,site=ta-van arrived_ms=1704067200123i 1704067200000000001"),
]


def _bulk_lines(points, float_fields=None):  # the bulk path: columns (storage/columns.py), then storage/bulk_encode.py
    return BulkLines(Encoder(float_fields)).lines(from_points(points, float_fields))


@pytest.mark.parametrize("path", ["per_point", "bulk"])
@pytest.mark.parametrize("point,line", LINES)
def test_point_lines(point, line, path):
    floats = {"weather": frozenset({"temperature"})}
    if path == "bulk":
        assert _bulk_lines([point], floats) == [line]
    else:
        assert Encoder(floats).point_lines([point]) == [line]


@pytest.mark.parametrize("point", [
    P(fields={"temperature": math.nan}), P(fields={"temperature": -math.inf}), P(fields={"s": "text"}),
    P(fields={"arrived_ms": 1}), P(device="a\nb"), P(site=""), P(device="trailing\\"), P(kind=""),
    # measurement names and field keys are refused, not escaped, unless plain (influxd mangles the rest)
    P(kind="my kind,x"), P(kind="#server"), P(kind="\tserver"), P(fields={"f=1 x,y": 2}), P(fields={'a\\"b': 1}),
])
def test_unwritable_points_raise(point):
    with pytest.raises(ValueError):
        encode([point])
    with pytest.raises(ValueError):
        _bulk_lines([point])


def test_rejected_lines():
    r = Rejected(5, "laocai/x y,z/aq", "bad_json", 'a "quoted" \\ back\nslash', b'{"a":1}\r\n\xff',
                 "", "dev=1")
    assert encode([], [r]) == (
        r'fansipan_quarantine,kind=unknown,reason=bad_json detail="a \"quoted\" \\ back\nslash",'
        r'device="dev=1",raw="{\"a\":1}\r\n\\xff",topic="laocai/x y,z/aq" 5')
    odd = r._replace(kind="we ird,\\", reason="r\nx")  # tags squeezed to a safe alphabet, never refused
    assert encode([], [odd]).startswith("fansipan_quarantine,kind=we_ird__,reason=r_x detail=")
    assert len(raw_text(b"x" * 5000)) == 4096
    assert quarantine_times([r, r, r._replace(reason="other"), r]) == [5, 6, 5, 7]


def test_injection_stays_on_one_line():
    body = encode([P()], [Rejected(1, EVIL, EVIL, EVIL, EVIL.encode(), "weather", EVIL)])
    assert body.count("\n") == 1 and "\r" not in body
    assert all(AGGREGATES)  # the aggregate names are fixed, never the caller's text
