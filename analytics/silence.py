"""Silence: a device that misses its profile's reporting contract.

Vectorized over every device of the registry at once: per-device arrays of the
expected interval, the tolerated jitter and the time last heard from.  A device
is *silent* when at least ``missed`` consecutive expected reports are missing:

    expected(t_last, now) = floor((active_seconds(t_last, now) - jitter) / interval)

where ``active_seconds`` counts only the time inside the profile's duty-cycle
windows (a loudspeaker cluster that reports only in broadcast windows is not
silent at night).  A device never heard from counts from ``since_ns`` (when the
detector started watching).  Silence is a fact about the last report, so it
ends only when the device reports again; a series that vanishes stays silent.
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np

from device_profiles import Registry

DAY_S = 86_400


def _window_seconds(kind_windows: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray, float]:
    starts = np.array([w[0] for w in kind_windows], dtype=np.float64)
    ends = np.array([w[1] for w in kind_windows], dtype=np.float64)
    return starts, ends, float((ends - starts).sum())


class DutyClock:
    """Seconds of duty-cycle time elapsed since the epoch: active(t2) - active(t1) is the in-window time between them.

    Windows are daily, in a fixed UTC offset (Asia/Ho_Chi_Minh has had no daylight
    saving since 1975), so the function is piecewise linear and vectorizes.
    """

    def __init__(self, windows: list[tuple[float, float]], utc_offset_s: float):
        self.starts, self.ends, self.per_day = _window_seconds(windows)
        self.offset = utc_offset_s

    def active(self, t_s: np.ndarray) -> np.ndarray:
        local = np.asarray(t_s, dtype=np.float64) + self.offset
        days = np.floor(local / DAY_S)
        sod = local - days * DAY_S  # seconds of the local day
        partial = np.clip(sod[..., None] - self.starts, 0.0, None)
        partial = np.minimum(partial, self.ends - self.starts).sum(axis=-1)
        return days * self.per_day + partial


def _clock_for(profile) -> DutyClock | None:
    dc = profile.reporting.duty_cycle
    if dc is None:
        return None
    offset = datetime.now(ZoneInfo(dc.timezone)).utcoffset().total_seconds()
    windows = []
    for w in dc.windows:
        s = w.start.hour * 3600 + w.start.minute * 60 + w.start.second
        e = w.end.hour * 3600 + w.end.minute * 60 + w.end.second
        if e <= s:  # a window over midnight: split it in two
            windows += [(s, DAY_S), (0, e)]
        else:
            windows.append((s, e))
    return DutyClock(windows, offset)


class SilenceDetector:
    """Which devices are silent now, all devices at once."""

    def __init__(self, registry: Registry, missed: int = 3, since_ns: int | None = None):
        if missed < 1:
            raise ValueError(f"missed must be >= 1 (reports in a row), got {missed}")
        self.registry = registry
        self.missed = missed
        self.devices = tuple(sorted(registry.devices))
        self.index = {d: i for i, d in enumerate(self.devices)}
        kinds = [registry.devices[d].kind for d in self.devices]
        self.interval = np.array([registry.kinds[k].reporting.interval_s for k in kinds])
        self.jitter = np.array([registry.kinds[k].reporting.jitter_s for k in kinds])
        self.since_s = (since_ns if since_ns is not None else datetime.now(timezone.utc).timestamp() * 1e9) / 1e9
        self._clocks = {}  # kind -> (DutyClock, device positions)
        for kind, profile in registry.kinds.items():
            clock = _clock_for(profile)
            if clock is not None:
                pos = np.array([i for i, k in enumerate(kinds) if k == kind], dtype=np.intp)
                self._clocks[kind] = (clock, pos)

    def evaluate(self, last_seen_ns: dict[str, int], now_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Returns (silent bool[n], missed float[n], last_s float[n]) over ``self.devices``.

        ``last_s`` is the last measurement time heard, in epoch seconds (the
        detector's start for devices never heard from).
        """
        last = np.full(len(self.devices), self.since_s)
        for d, ts in last_seen_ns.items():
            i = self.index.get(d)
            if i is not None:
                last[i] = ts / 1e9
        now_s = now_ns / 1e9
        elapsed = np.maximum(now_s - last, 0.0)
        for clock, pos in self._clocks.values():
            elapsed[pos] = clock.active(np.full(len(pos), now_s)) - clock.active(last[pos])
        missed = np.floor(np.maximum(elapsed - self.jitter, 0.0) / self.interval)
        return missed >= self.missed, missed, last
