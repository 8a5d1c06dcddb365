"""The clock tracker's decisions (ingest/clock.py) applied to a bulk batch.

The tracker decides on arrays (:meth:`ClockTracker.observe`); here its
decisions reach a :class:`storage.columns.ColumnBatch`, handled exactly as
:meth:`ClockTracker.apply` handles them one message at a time, so both paths
store and refuse the same readings (tests/test_bulk_property.py): late and
corrected readings stay in the columns, marked; refused ones become Rejected.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from storage.base import Rejected
from storage.columns import ColumnBatch, KindColumns, keyed_points, take

from . import clock as clk

CLOCK_REJECT = 0x8000  # order key offset: a message's clock refusals follow its validator refusals


def _device_map(tracker, batch: ColumnBatch) -> np.ndarray:
    """Clock tracker device index of each row of the batch's device table (-1: unknown)."""
    cache = getattr(tracker, "_bulk_map", None)
    t = batch.table
    if cache is None or cache[0] is not t or len(cache[1]) != len(t):
        cache = (t, np.array([tracker.index.get(d, -1) for d in t.ids], np.intp))
        tracker._bulk_map = cache
    return cache[1]


def _with_flag(kc: KindColumns, name: str, rows: np.ndarray) -> KindColumns:
    """``kc`` with int field ``name`` = 1 on ``rows`` (a bool mask), as ClockTracker.apply adds it to a point."""
    if name in kc.fields:
        j = kc.fields.index(name)
        values, present = kc.values.copy(), kc.present.copy()
    else:
        j = len(kc.fields)
        values = np.hstack([kc.values, np.zeros((len(kc), 1))])
        present = np.hstack([kc.present, np.zeros((len(kc), 1), bool)])
        kc = replace(kc, fields=kc.fields + (name,), types=kc.types + ("int",))
    values[rows, j], present[rows, j] = 1.0, True
    return replace(kc, values=values, present=present, body=None, ts_text=None)  # the device's text lacks the flag


def apply_clock(tracker, batch: ColumnBatch, msgs: list, rejects: list[tuple[int, Rejected]]) -> None:
    """Apply the tracker's decisions to ``batch`` in place; refusals go to ``rejects`` as (order, Rejected).

    LATE and CORRECTED readings stay in the columns (with ``historical`` / ``time_corrected`` = 1 and the
    corrected time): a backlog replayed after an outage is all LATE, and must drain as fast as live data.
    """
    dmap = _device_map(tracker, batch)
    dev = np.concatenate([dmap[kc.device_idx] for kc in batch.kinds]
                         + [np.array([tracker.index.get(p.device, -1) for p in batch.extra], np.intp)])
    if not len(dev):
        return
    meas = np.concatenate([kc.ts_ns for kc in batch.kinds] + [np.array([p.ts_ns for p in batch.extra], np.int64)])
    arr = np.concatenate([kc.arrived_ns for kc in batch.kinds]
                         + [np.array([p.arrived_ns for p in batch.extra], np.int64)])
    action, ts, off = tracker.observe(dev, meas, arr)
    if not action.any():
        return
    events = []  # (order, kind number or -1 for extra, row) of every reading that is not LIVE, in batch order
    bounds, start = [], 0
    for ki, kc in enumerate(batch.kinds):
        bounds.append(start)
        events += [(int(kc.order[r]), ki, r) for r in np.flatnonzero(action[start:start + len(kc)]).tolist()]
        start += len(kc)
    events += [(o, -1, j) for j, o in enumerate(batch.extra_order) if action[start + j]]
    events.sort()
    drop = [np.zeros(len(kc), bool) for kc in batch.kinds]
    drop_extra = set()
    for o, ki, r in events:
        g = (bounds[ki] + r) if ki >= 0 else start + r
        act, t, off_s, d = int(action[g]), int(ts[g]), float(off[g]), int(dev[g])
        topic, payload, _arrived = msgs[o >> 16]
        key = (o >> 16) << 16 | CLOCK_REJECT | (o & 0x7FFF)
        if ki < 0:
            p = batch.extra[r]
        elif act == clk.LATE:
            continue  # marked in bulk below
        else:
            p = keyed_points(batch.table, take(batch.kinds[ki], np.array([r])))[0][1]
        if act == clk.LATE:
            p.fields["historical"] = 1
        elif act == clk.CORRECTED:
            if ki < 0:
                p.fields["time_corrected"] = 1
                batch.extra[r] = p._replace(ts_ns=t)
            if p.arrived_ns - tracker._noted[d] >= tracker.note_every_ns:
                tracker._noted[d] = p.arrived_ns
                rejects.append((key, tracker._reject(p, topic, payload, "clock_skew",
                                                     tracker._skew_detail(p, d, off_s, stored=True))))
        else:
            if ki < 0:
                drop_extra.add(r)
            else:
                drop[ki][r] = True
            detail = (tracker._skew_detail(p, d, off_s, stored=False) if act == clk.SKEWED else
                      f"reading measured at {clk._iso(p.ts_ns)} arrived {off_s:.0f} s later: older than profile "
                      f"{p.kind!r}'s replay horizon of {tracker.horizon_s[d]:g} s (reporting.replay_horizon_s); not stored")
            rejects.append((key, tracker._reject(p, topic, payload, "clock_skew" if act == clk.SKEWED else "bad_timestamp",
                                                 detail)))
    kinds = []
    for ki, kc in enumerate(batch.kinds):
        a = action[bounds[ki]:bounds[ki] + len(kc)]
        if (a == clk.LATE).any():
            kc = _with_flag(kc, "historical", a == clk.LATE)
        corr = a == clk.CORRECTED
        if corr.any():
            kc = _with_flag(kc, "time_corrected", corr)
            kc = replace(kc, ts_ns=np.where(corr, ts[bounds[ki]:bounds[ki] + len(kc)], kc.ts_ns))
        if drop[ki].any():
            kc = take(kc, ~drop[ki])
        if len(kc):
            kinds.append(kc)
    batch.kinds = kinds
    if drop_extra:
        keep = [j for j in range(len(batch.extra)) if j not in drop_extra]
        batch.extra = [batch.extra[j] for j in keep]
        batch.extra_order = [batch.extra_order[j] for j in keep]
