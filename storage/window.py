"""Epoch-aligned windows computed in numpy, for stores whose server-side windowing is the slow part.

InfluxDB 1.6 takes about twice as long to answer ``GROUP BY time(60s)`` over a
day of one-minute points as to return the raw points (measured in BENCHMARKS.md,
API speed), so when the raw rows of a query are few (see :data:`RAW_BUDGET`)
the reader fetches them and windows them here, with the same meaning as
:meth:`storage.base.Store.query`: one row per window that holds readings,
windows aligned on the epoch and timestamped at their start, aggregates from
:data:`storage.base.AGGREGATES`.
"""

from __future__ import annotations

import numpy as np

from .base import AGGREGATES

NS = 1_000_000_000
RAW_BUDGET = 200_000  # raw rows one query may fetch to window them here rather than on the server


def expected_rows(devices: int, span_ns: int, interval_s: float) -> float:
    """How many raw rows ``devices`` devices reporting every ``interval_s`` give over ``span_ns``."""
    return devices * span_ns / (max(interval_s, 1e-3) * NS)


def windowed(ts: np.ndarray, values: np.ndarray, window_s: int, agg: str) -> tuple[np.ndarray, np.ndarray]:
    """(window starts, aggregated values) of raw rows sorted by time; windows without rows are left out."""
    if agg not in AGGREGATES:
        raise ValueError(f"unknown aggregate {agg!r}: use one of {', '.join(AGGREGATES)}")
    if ts.size == 0:
        return ts.astype(np.int64), values.astype(np.float64)
    width = int(window_s) * NS
    bucket = ts // width  # floor division: aligned on the epoch, as InfluxDB and SQLite do
    first = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    counts = np.diff(np.r_[first, ts.size])
    if agg == "count":
        out = counts.astype(np.float64)
    elif agg == "mean":
        out = np.add.reduceat(values, first) / counts
    elif agg == "min":
        out = np.minimum.reduceat(values, first)
    elif agg == "max":
        out = np.maximum.reduceat(values, first)
    else:  # last: the latest reading of the window
        out = values[first + counts - 1]
    return bucket[first] * width, out
