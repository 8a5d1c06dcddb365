"""Device clocks: skew, late and replayed readings (see docs/time.md).

Every reading has two times: when the device measured it (the point's time)
and when the collector received it (``arrived``).  Their difference, the
*offset* ``arrival - measurement``, is a small network delay for a live
reading from a device whose clock is right.  Three very different things make
it large:

* the device's clock is off (lost NTP, a dead RTC battery): the offset is
  large and *steady*: readings keep arriving at the live pace, each one the
  same amount off;
* the device (or its gateway) buffered readings during an outage and replays
  them: the offset is large but the measurement times race ahead of the
  arrival times (an hour of readings in a few seconds) and fall back to a
  small offset once the buffer is empty;
* the pipeline itself is behind (the collector slowed or stopped: spool full,
  a restart with a persistent MQTT session): the broker holds the messages and
  delivers them minutes late, at about the live pace: a large, steady offset,
  but on *every* device at once.

A bad clock is one device, a backlog is the whole fleet: the tracker keeps
the *fleet lag*, the pipeline's own delay, a low quantile (``fleet_quantile``)
of the newest offsets of the devices heard in the last ``fleet_window_s``
(each device's latest message, one vote), worked out at the start of each
second of arrival time (the same for all its messages, however batched), never
below 0, and trusted from ``fleet_min_devices`` voters on.  Steady skew and
"back in sync" judge offset - fleet lag; "ahead of arrival", ``LATE`` and the
replay horizon the raw offset.  A backlog is stored (``LATE``); one bad clock
among many is still found, its estimate without the pipeline's delay.  After
a pause of a fleet that had that many devices (within ``fleet_memory_s``), no
clock is newly found off behind until enough are heard again.  Limits: a fleet
(a collector's share) smaller than ``fleet_min_devices`` cannot tell a backlog
from bad clocks, nor can any fleet most of whose clocks are off alike.

:class:`ClockTracker` tells them apart per device, with bounded state (a few
numbers and a ring of the last ``history`` offsets per device), and decides
for every reading:

``LIVE``       stored as it is;
``LATE``       stored at its measurement time, marked ``historical=1``: it
               arrived more than ``interval_s + jitter_s`` later than the
               device's usual delay (buffered, replayed, held at the broker);
``CORRECTED``  the clock is off and the profile's ``clock_policy`` is
               ``correct``: stored at ``measurement + estimated offset``,
               marked ``time_corrected=1``;
``SKEWED``     the clock is off and the policy is ``quarantine`` (the
               default): refused with reason ``clock_skew``;
``TOO_OLD``    older than the profile's ``replay_horizon_s``: refused
               (``bad_timestamp``).

A clock counts as off when two messages in a row, at least half a reporting
interval apart, are both beyond ``clock_tolerance_s`` (relative to the fleet
lag) and within that tolerance of each other (a steady offset), or at once
when a reading is ahead of arrival beyond ``future_tolerance_s`` (only the
``correct`` policy lets such readings past the validator).  Until then a large
offset is taken for a replay: the first reading of a newly skewed device is
stored as historical.

Two entry points: :meth:`ClockTracker.apply` for one message as the
collector sees it, and :meth:`ClockTracker.observe` for arrays (device index,
measurement ns, arrival ns) as a bulk path has them.  ``observe`` decides in
numpy the messages of every device whose clock was fine and that no message
of the batch finds off (in-sync and replayed readings: nearly all of them),
and the rest one message at a time; both give the same decisions and leave the
same state (tests/test_clock_skew.py), for arrival times that do not go back.

Readings before 2000 are refused by the validator in either policy and are
never stored as telemetry.  The detector learns which clocks are off from the
quarantine (analytics/clock_health.py); under the ``correct`` policy nothing is
refused, so the tracker writes one ``clock_skew`` evidence row per device and
``note_every_s`` into the quarantine (the payload as sent, with a detail that
says the reading was stored).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from datetime import datetime, timezone

import numpy as np

from device_profiles import Registry
from storage.base import Point, Rejected

log = logging.getLogger("fansipan.clock")

LIVE, LATE, CORRECTED, SKEWED, TOO_OLD = range(5)
ACTIONS = ("live", "late", "corrected", "skewed", "too_old")
RAW_KEEP_BYTES = 4096


def _iso(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns / 1e9, tz=timezone.utc).isoformat(timespec="seconds")


class ClockTracker:
    """Per-device clock offsets and what to do with each reading (module docstring).

    State per device, in plain lists (scalar access is what a message needs):
    the last ``history`` offsets of in-sync messages (their minimum is the
    device's usual delay), the previous message's offset (less the fleet lag)
    and arrival, the skew estimate (NaN while the clock is fine); in numpy, its
    last fleet-lag vote and the last from an earlier second.  Not thread-safe.
    """

    def __init__(self, registry: Registry, history: int = 8, note_every_s: float = 60.0, ewma: float = 0.2,
                 fleet_window_s: float = 60.0, fleet_min_devices: int = 16, fleet_quantile: float = 0.25,
                 fleet_bucket_s: float = 1.0, fleet_memory_s: float = 6 * 3600.0):
        self.registry = registry
        self.devices = tuple(sorted(registry.devices))
        self.index = {d: i for i, d in enumerate(self.devices)}
        rep = [registry.kinds[registry.devices[d].kind].reporting for d in self.devices]
        self.tol_s = [float(r.clock_tolerance_s) for r in rep]
        self.future_s = [float(r.future_tolerance_s) for r in rep]
        self.late_s = [float(r.interval_s + r.jitter_s) for r in rep]
        self.pace_ns = [r.interval_s * 0.5e9 for r in rep]
        self.horizon_s = [float(r.replay_horizon_s) for r in rep]
        self.correct = [r.clock_policy == "correct" for r in rep]
        n = len(self.devices)
        self.ring = [deque(maxlen=history) for _ in range(n)]
        self.prev_off = [math.nan] * n
        self.prev_arr = [0] * n
        self.skew_s = [math.nan] * n  # estimated clock offset while off, NaN while in sync
        self.skew_since = [0] * n  # arrival time the current skew was first seen
        self._noted = [0] * n
        self.note_every_ns = int(note_every_s * 1e9)
        self.alpha = ewma
        # the fleet lag (module docstring): per device its latest vote (newest offset, arrival) and the latest
        # one from an earlier bucket; the lag of a bucket counts, per device, the latest vote from before it
        self.window_ns, self.bucket_ns = int(fleet_window_s * 1e9), max(1, int(fleet_bucket_s * 1e9))
        self.memory_ns = max(self.window_ns, int(fleet_memory_s * 1e9))
        self.min_devices, self.quantile = max(1, int(fleet_min_devices)), float(fleet_quantile)
        never = np.iinfo(np.int64).min // 2
        self.v_off, self.v_arr = np.zeros(n), np.full(n, never, np.int64)
        self.o_off, self.o_arr = np.zeros(n), np.full(n, never, np.int64)
        self._lag_cache, self._lag_noted = (None, 0.0), False  # (second, its lag) for apply; a backlog logged
        self.fleet_lag_s = 0.0  # the latest fleet lag worked out (NaN: not known yet)
        self._np = None  # numpy copies of the per-device settings, for observe()'s bulk path

    # --- the array API (also for a bulk path) ---------------------------------------------------

    def observe(self, dev: np.ndarray, meas_ns: np.ndarray, arr_ns: np.ndarray):
        """Decide for readings given as arrays (device index into ``devices``, measurement ns, arrival ns).

        Readings sharing device and arrival time are one message.  Returns
        ``(action int8[n], ts_ns int64[n], offset_s float64[n])``: one of the
        module's actions, the time to store (corrected where CORRECTED) and
        ``arrival - measurement`` in seconds.  A device index < 0 is LIVE.
        """
        dev = np.asarray(dev, dtype=np.intp)
        meas = np.asarray(meas_ns, dtype=np.int64)
        arr = np.asarray(arr_ns, dtype=np.int64)
        off = (arr - meas) / 1e9
        action = np.zeros(len(dev), dtype=np.int8)
        ts = meas.copy()
        if len(dev) == 0:
            return action, ts, off
        order = np.lexsort((arr, dev))
        d_sorted, a_sorted, off_sorted = dev[order], arr[order], off[order]
        cut = np.flatnonzero((np.diff(d_sorted) != 0) | (np.diff(a_sorted) != 0)) + 1
        starts = np.r_[0, cut]
        sizes = np.diff(np.r_[starts, len(dev)])
        g_dev, g_arr = d_sorted[starts], a_sorted[starts]
        g_newest = np.minimum.reduceat(off_sorted, starts)
        g_lag = self._group_lags(g_dev, g_arr, g_newest)
        judged = ~np.isnan(g_lag)  # the fleet lag is known: a clock may be found off
        g_rel = np.where(judged, g_newest - g_lag, g_newest)
        fast = self._fast_groups(g_dev, g_arr, g_newest, g_rel, judged)
        if fast.any():
            self._observe_fast(fast, g_newest, g_rel, starts, sizes, d_sorted, a_sorted, off_sorted, order, action)
        slow = np.flatnonzero(~fast & (g_dev >= 0))
        if slow.size:
            offl, measl, orderl, lagl = off.tolist(), meas.tolist(), order.tolist(), g_lag.tolist()
            acts, stamps = action.tolist(), ts.tolist()
            for gk, lo, hi in zip(slow.tolist(), starts[slow].tolist(), (starts[slow] + sizes[slow]).tolist()):
                idx = orderl[lo:hi]
                got, t = self._message(int(d_sorted[lo]), int(a_sorted[lo]), [offl[j] for j in idx],
                                       [measl[j] for j in idx], lagl[gk])
                for j, g, tt in zip(idx, got, t):
                    acts[j], stamps[j] = g, tt
            action, ts = np.array(acts, dtype=np.int8), np.array(stamps, dtype=np.int64)
        self._vote_bulk(g_dev, g_arr, g_newest)
        return action, ts, off

    # --- the fleet lag: the pipeline's own delay (module docstring) ------------------------------

    def _lag_at(self, start: int, extra=None) -> float:
        """The fleet lag of the bucket beginning at ``start`` ns: from each device's latest vote before it
        (``extra``: (devices, offsets, arrivals) of later votes, from the batch being decided).  NaN: too few
        voted in the window, but enough within ``memory_ns``: a large fleet after a pause, whose lag is unknown."""
        use = self.v_arr < start
        off, arr = np.where(use, self.v_off, self.o_off), np.where(use, self.v_arr, self.o_arr)
        if extra is not None:
            off[extra[0]], arr[extra[0]] = extra[1], extra[2]
        heard = arr < start
        votes = off[heard & (arr >= start - self.window_ns)]
        if len(votes) < self.min_devices:
            lag = math.nan if np.count_nonzero(heard & (arr >= start - self.memory_ns)) >= self.min_devices else 0.0
        else:
            k = int(self.quantile * (len(votes) - 1))
            lag = max(0.0, float(np.partition(votes, k)[k]))
        if not math.isnan(lag) and (lag < 30.0 if self._lag_noted else lag >= 60.0):  # once a backlog, once it is over
            self._lag_noted = not self._lag_noted
            if not self._lag_noted:
                log.info("the fleet's readings arrive on time again (delivery delay %.1f s)", lag)
            else:
                log.warning("the whole fleet's readings arrive late: %.0f%% of the %d devices heard in the last %.0f s "
                            "show %.0f s or more between measurement and arrival. A backlog of the collector or the "
                            "broker (a full spool, a restart), not device clocks: stored, marked historical, clocks "
                            "judged against this delay", 100 * (1 - self.quantile), len(votes), self.window_ns / 1e9, lag)
        self.fleet_lag_s = lag
        return lag

    def _lag(self, a: int) -> float:
        """The fleet lag for a message arrived at ``a`` (the same for its whole bucket: cached)."""
        b = a // self.bucket_ns
        if self._lag_cache[0] != b:
            self._lag_cache = (b, self._lag_at(b * self.bucket_ns))
        return self._lag_cache[1]

    def decide(self, d: int, a: int, offs: list[float], meas: list[int]) -> tuple[list[int], list[int]]:
        """One message of device ``d`` arrived at ``a`` (offsets in s, measurement ns): actions, times to store.
        The reference :meth:`observe` agrees with; :meth:`apply` uses it."""
        self._vote(d, a, min(offs))
        return self._message(d, a, offs, meas, self._lag(a))

    def _vote(self, d: int, a: int, newest: float) -> None:
        if a // self.bucket_ns != int(self.v_arr[d]) // self.bucket_ns:
            self.o_off[d], self.o_arr[d] = self.v_off[d], self.v_arr[d]
        self.v_off[d], self.v_arr[d] = newest, a

    def _group_lags(self, g_dev: np.ndarray, g_arr: np.ndarray, g_newest: np.ndarray) -> np.ndarray:
        """The fleet lag of each message (sorted by device, arrival), as :meth:`_lag` gives it one by one."""
        lag = np.zeros(len(g_dev))
        known = np.flatnonzero(g_dev >= 0)
        kd, ka, ko = g_dev[known], g_arr[known], g_newest[known]
        kb = ka // self.bucket_ns
        same = np.r_[kd[1:] == kd[:-1], False]
        for b in np.unique(kb).tolist():
            start = b * self.bucket_ns
            before = ka < start  # per device a prefix of its messages: the last of them is its latest vote
            last = np.flatnonzero(before & ~(same & np.r_[before[1:], False]))
            lag[known[kb == b]] = self._lag_at(start, (kd[last], ko[last], ka[last]) if len(last) else None)
        return lag

    def _vote_bulk(self, g_dev: np.ndarray, g_arr: np.ndarray, g_newest: np.ndarray) -> None:
        """The votes of a batch's messages (sorted by device, arrival), as :meth:`_vote` one by one leaves them."""
        known = g_dev >= 0
        d, a, o = g_dev[known], g_arr[known], g_newest[known]
        if not len(d):
            return
        b = a // self.bucket_ns
        new_dev = np.r_[True, d[1:] != d[:-1]]
        run = np.maximum.accumulate(np.where(new_dev | np.r_[True, b[1:] != b[:-1]], np.arange(len(d)), 0))
        first = np.flatnonzero(new_dev)
        last = np.r_[first[1:], len(d)] - 1
        dd, rs = d[last], run[last]
        inner = rs > first  # the device's vote before its last bucket is one of this batch's
        moved = self.v_arr[dd] // self.bucket_ns != b[last]
        self.o_off[dd] = np.where(inner, o[rs - 1], np.where(moved, self.v_off[dd], self.o_off[dd]))
        self.o_arr[dd] = np.where(inner, a[rs - 1], np.where(moved, self.v_arr[dd], self.o_arr[dd]))
        self.v_off[dd], self.v_arr[dd] = o[last], a[last]

    def _fast_groups(self, g_dev, g_arr, g_newest, g_rel, judged) -> np.ndarray:
        """Messages decided in bulk: those of devices whose clock was fine and that no message of this
        batch finds off (in sync, or late without a steady offset: a replay). The rest go one by one."""
        if self._np is None:
            self._np = {k: np.array(getattr(self, k)) for k in ("tol_s", "future_s", "late_s", "horizon_s", "pace_ns")}
        known = g_dev >= 0
        gd = np.where(known, g_dev, 0)
        tol = self._np["tol_s"][gd]
        first = np.r_[True, g_dev[1:] != g_dev[:-1]]  # groups are sorted by (device, arrival)
        prev_off = np.where(first, np.array(self.prev_off)[gd], np.r_[np.nan, g_rel[:-1]])
        prev_arr = np.where(first, np.array(self.prev_arr)[gd], np.r_[0, g_arr[:-1]])
        steady = (judged & (g_rel > tol) & (prev_off > tol) & (np.abs(g_rel - prev_off) <= tol)
                  & (g_arr - prev_arr >= self._np["pace_ns"][gd]))
        off_now = (g_newest < -self._np["future_s"][gd]) | steady
        bad = ~np.isnan(np.array(self.skew_s))  # off at entry
        bad[g_dev[known & off_now]] = True
        return known & ~bad[gd]

    def _observe_fast(self, fast, g_newest, g_rel, starts, sizes, d_sorted, a_sorted, off_sorted, order, action) -> None:
        """What :meth:`_message` decides for messages of clocks that are fine, many at once (same results,
        same state): in-sync offsets join the device's ring; each message's base is the ring's minimum then."""
        h = self.ring[0].maxlen if self.ring else 8
        gi = np.flatnonzero(fast)  # sorted by (device, arrival): each device's messages are contiguous
        fd, fnew = d_sorted[starts[gi]], g_newest[gi]
        in_sync = fnew <= self._np["tol_s"][fd]
        seg = np.flatnonzero(np.r_[True, fd[1:] != fd[:-1]])
        counts = np.diff(np.r_[seg, len(fd)])
        block = np.r_[0, np.cumsum(h + counts)[:-1]]
        flat = np.full(int(block[-1] + h + counts[-1]), np.nan)  # per device: its ring (padded), then in-sync offsets
        devs = fd[seg].tolist()
        for k, d in enumerate(devs):
            r = self.ring[d]
            if r:
                flat[block[k] + h - len(r):block[k] + h] = list(r)
        seg_of = np.repeat(np.arange(len(seg)), counts)
        k_sync = np.cumsum(in_sync) - np.r_[0, np.cumsum(in_sync)][seg][seg_of]  # in-sync messages so far, this one included
        pos = block[seg_of] + h + k_sync - 1  # the ring's newest entry when this message is decided
        flat[(block[seg_of] + h + k_sync - 1)[in_sync]] = fnew[in_sync]
        base = flat[pos]
        for shift in range(1, h):  # the ring: its newest entry and the h - 1 before it
            base = np.fmin(base, flat[pos - shift])
        g_base = np.full(len(fast), np.nan)
        g_base[gi] = np.nan_to_num(base, nan=0.0)  # an empty ring: base 0
        r_group = np.repeat(np.arange(len(fast)), sizes)
        sel = fast[r_group]
        o, b, dd = off_sorted[sel], g_base[r_group[sel]], d_sorted[sel]
        action[order[sel]] = np.where(o > self._np["horizon_s"][dd], TOO_OLD,
                                      np.where(o - b > self._np["late_s"][dd], LATE, LIVE))
        last = np.r_[seg[1:], len(fd)] - 1
        for k, d in enumerate(devs):
            self.ring[d].extend(fnew[seg[k]:last[k] + 1][in_sync[seg[k]:last[k] + 1]].tolist())
            self.prev_off[d] = float(g_rel[gi[last[k]]])
            self.prev_arr[d] = int(a_sorted[starts[gi[last[k]]]])

    def _message(self, d: int, a: int, offs: list[float], meas: list[int], lag: float) -> tuple[list[int], list[int]]:
        """Actions and times to store for one message's readings of device ``d`` arrived at ``a``, the fleet
        lag being ``lag`` s (NaN: not known, no clock is newly found off behind)."""
        newest = min(offs)  # the newest reading of the message has the smallest offset
        rel = newest if math.isnan(lag) else newest - lag  # the offset less the whole fleet's: the clock's
        tol = self.tol_s[d]
        skew = self.skew_s[d]
        if newest < -self.future_s[d]:
            skewed = True  # ahead of arrival: no replay, no backlog looks like that
        elif rel <= tol:
            skewed = False
        elif not math.isnan(skew) and (abs(rel - skew) <= tol or math.isnan(lag)):
            skewed = True  # still off (or the fleet lag is unknown: kept off rather than stored at a wrong time)
        else:  # steady offset at the live pace, twice in a row: the clock, not a replay
            prev = self.prev_off[d]
            skewed = (not math.isnan(lag) and prev > tol and abs(rel - prev) <= tol
                      and a - self.prev_arr[d] >= self.pace_ns[d])
        if skewed:
            out = self._skewed(d, a, newest, rel, meas)
        else:
            if rel <= tol:
                self._in_sync(d, newest, rel)
            ring = self.ring[d]
            base = min(ring) if ring else 0.0
            late, horizon = self.late_s[d], self.horizon_s[d]
            out = [TOO_OLD if o > horizon else LATE if o - base > late else LIVE for o in offs], meas
        self.prev_off[d] = rel
        self.prev_arr[d] = a
        return out

    def _in_sync(self, d: int, newest: float, rel: float) -> None:
        skew = self.skew_s[d]
        if not math.isnan(skew):
            log.info("device %s: clock back in sync (offset %.1f s%s, was %+.0f s)", self.devices[d], newest,
                     f", {rel:.1f} s beyond the whole fleet's delivery delay" if newest - rel >= 1 else "", skew)
            self.skew_s[d] = math.nan
        if newest <= self.tol_s[d]:  # the device's usual delay: from live readings only
            self.ring[d].append(newest)

    def _skewed(self, d: int, a: int, newest: float, rel: float, meas: list[int]) -> tuple[list[int], list[int]]:
        skew = self.skew_s[d]
        if math.isnan(skew):
            skew = rel
            self.skew_since[d] = self.prev_arr[d] if self.prev_arr[d] and newest >= 0 else a
            kind = self.registry.devices[self.devices[d]].kind
            log.warning("device %s (%s): clock off by %+.0f s (arrival - measurement%s); profile %r %s: "
                        "set up NTP on the device", self.devices[d], kind, rel,
                        f", less the {newest - rel:.0f} s every device's readings take now" if newest - rel >= 1 else "",
                        kind, "stores its readings at corrected times" if self.correct[d]
                        else "quarantines its readings (reason clock_skew)")
        else:
            skew += self.alpha * (rel - skew)
        self.skew_s[d] = skew
        if self.correct[d]:
            shift = int(round(skew * 1e9))
            return [CORRECTED] * len(meas), [min(m + shift, a) for m in meas]
        return [SKEWED] * len(meas), meas

    # --- one message, as the collector sees it --------------------------------------------------

    def apply(self, points: list[Point], rejected: list[Rejected], topic: str, payload: bytes
              ) -> tuple[list[Point], list[Rejected]]:
        """The validator's output for one message, with the clock decisions applied (module docstring)."""
        if not points:
            return points, rejected
        groups: dict[int, list[int]] = {}
        for j, p in enumerate(points):
            groups.setdefault(self.index.get(p.device, -1), []).append(j)
        acts, stamps = [LIVE] * len(points), [p.ts_ns for p in points]
        for d, idx in groups.items():
            if d < 0:
                continue
            a = points[idx[0]].arrived_ns  # one message: one arrival time
            got, t = self.decide(d, a, [(a - stamps[j]) / 1e9 for j in idx], [stamps[j] for j in idx])
            for j, g, tt in zip(idx, got, t):
                acts[j], stamps[j] = g, tt
        if not any(acts):
            return points, rejected
        kept: list[Point] = []
        for p, act, t in zip(points, acts, stamps):
            if act == LIVE:
                kept.append(p)
                continue
            d, o = self.index[p.device], (p.arrived_ns - p.ts_ns) / 1e9
            if act == LATE:
                p.fields["historical"] = 1
                kept.append(p)
            elif act == CORRECTED:
                p.fields["time_corrected"] = 1
                kept.append(p._replace(ts_ns=t))
                if p.arrived_ns - self._noted[d] >= self.note_every_ns:
                    self._noted[d] = p.arrived_ns
                    rejected.append(self._reject(p, topic, payload, "clock_skew", self._skew_detail(p, d, o, stored=True)))
            elif act == SKEWED:
                rejected.append(self._reject(p, topic, payload, "clock_skew", self._skew_detail(p, d, o, stored=False)))
            else:
                rejected.append(self._reject(p, topic, payload, "bad_timestamp", (
                    f"reading measured at {_iso(p.ts_ns)} arrived {o:.0f} s later: older than profile {p.kind!r}'s "
                    f"replay horizon of {self.horizon_s[d]:g} s (reporting.replay_horizon_s); not stored")))
        return kept, rejected

    def _skew_detail(self, p: Point, d: int, off_s: float, stored: bool) -> str:
        way = "behind" if off_s > 0 else "ahead of"
        pipe = off_s - self.skew_s[d]  # the part of the offset that is the whole fleet's delivery delay
        head = (f"measurement time {_iso(p.ts_ns)} is {abs(off_s):.0f} s {way} arrival; the device clock is off by "
                f"about {self.skew_s[d]:+.0f} s (clock_offset_s, arrival - measurement"
                + (f", less the {pipe:.0f} s every device's readings take to arrive now" if pipe > self.tol_s[d] else "")
                + f"), beyond profile {p.kind!r}'s clock_tolerance_s of {self.tol_s[d]:g} s")
        if stored:
            return (f"evidence, not a refusal: {head}; clock_policy correct: stored at the corrected time "
                    f"{_iso(p.ts_ns + int(self.skew_s[d] * 1e9))} with time_corrected=1; set up NTP on the device")
        return f"{head}; clock_policy quarantine: not stored; set up NTP on the device (or set clock_policy: correct)"

    @staticmethod
    def _reject(p: Point, topic: str, payload: bytes, reason: str, detail: str) -> Rejected:
        return Rejected(p.arrived_ns, topic, reason, detail, bytes(payload[:RAW_KEEP_BYTES]), p.kind, p.device)

    def offsets(self) -> dict[str, float]:
        """Device -> current clock offset estimate in seconds, for devices whose clock is off."""
        return {self.devices[i]: s for i, s in enumerate(self.skew_s) if not math.isnan(s)}
