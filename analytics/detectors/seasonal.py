"""Seasonal baseline: what is normal for this series at this time of day.

Signals in a province follow the day: uplink traffic rises when offices open,
street lights draw power at night, air warms in the afternoon. A flat baseline
either flags every morning or learns to ignore everything. This detector keeps,
per series, a robust baseline (EWMA mean and mean absolute deviation) for each
slot of the local day and scores a reading against its own slot.
"""

from __future__ import annotations

import numpy as np

from analytics.detectors.column import ColumnDetector

_MAD_TO_SIGMA = 1.2533  # mean absolute deviation -> sigma for a normal distribution
DAY_NS = 86_400 * 10**9


class SeasonalShift(ColumnDetector):
    """Deviation from the series' own time-of-day baseline, in robust sigmas.

    Parameters
    ----------
    n_series : int
        Series tracked at first.
    step_s : float
        Grid step, seconds: used to time the columns when ``update`` is not
        given their times.
    slots : int
        Slots per day (24: one baseline an hour).
    utc_offset_s : float
        Local time offset (Asia/Ho_Chi_Minh: +7 h, no daylight saving).
    alpha : float
        Learning rate per observation of a slot, once the slot has ``1/alpha`` readings.
    slot_warmup : int
        Readings a slot needs before it scores (explicit warm-up; the service
        asks for three days of a slot's readings: 180 for one-minute data in 24 slots).
    learn_limit : float
        Scores at or above this are not learned: an outage does not become the new normal.
    abs_floor : float
        Absolute floor of sigma, in the series' units.
    seed : int
        Unused (deterministic).

    Raises
    ------
    ValueError
        If ``slots`` < 1, ``step_s`` <= 0 or ``alpha`` outside (0, 1).
    """

    def __init__(self, n_series: int, step_s: float = 60.0, slots: int = 24, utc_offset_s: float = 7 * 3600,
                 alpha: float = 0.02, slot_warmup: int = 30, learn_limit: float = 8.0, abs_floor: float = 0.0,
                 seed: int = 0):
        super().__init__(n_series, seed)
        if slots < 1 or step_s <= 0 or not 0.0 < alpha < 1.0:
            raise ValueError(f"need slots >= 1, step_s > 0 and 0 < alpha < 1; got {slots}, {step_s}, {alpha}")
        self.step_ns = int(step_s * 1e9)
        self.slots = int(slots)
        self.offset_ns = int(utc_offset_s * 1e9)
        self.alpha, self.slot_warmup = float(alpha), int(slot_warmup)
        self.learn_limit, self.abs_floor = float(learn_limit), float(abs_floor) + 1e-9
        self.warmup = 1  # the real warm-up is per slot, below
        self._declare("mu", (self.slots,), np.float64, np.nan)
        self._declare("dev", (self.slots,), np.float64, 0.0)
        self._declare("slot_seen", (self.slots,), np.int64, 0)
        self._next_t = 0
        self._times: np.ndarray | None = None
        self._j = 0

    def update(self, block: np.ndarray, times_ns: np.ndarray | None = None) -> np.ndarray:
        """As :meth:`ColumnDetector.update`; ``times_ns`` [n_cols] are the columns' measurement times
        (default: consecutive steps after the previous block)."""
        n_cols = np.shape(block)[1] if np.ndim(block) == 2 else 0
        if times_ns is None:
            times_ns = self._next_t + self.step_ns * np.arange(n_cols, dtype=np.int64)
        self._times, self._j = np.asarray(times_ns, dtype=np.int64), 0
        out = super().update(block)  # raises on a bad block before any state moves
        if n_cols:
            self._next_t = int(self._times[-1]) + self.step_ns
        return out

    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        t = int(self._times[self._j])
        self._j += 1
        slot = int(((t + self.offset_ns) % DAY_NS) * self.slots // DAY_NS)
        mu, dev, n = self.mu[:, slot], self.dev[:, slot], self.slot_seen[:, slot]
        cold = ok & np.isnan(mu)
        mu = np.where(cold, x, mu)
        resid = x - mu
        sigma = np.maximum(_MAD_TO_SIGMA * dev, self.abs_floor)
        score = np.where(n >= self.slot_warmup, np.abs(resid) / sigma, 0.0)
        learn = ok & (score < self.learn_limit)
        rate = np.maximum(self.alpha, 1.0 / np.maximum(n + 1, 1))
        self.mu[:, slot] = np.where(learn, mu + rate * resid, mu)
        self.dev[:, slot] = np.where(learn & ~cold, dev + rate * (np.abs(resid) - dev), dev)
        self.slot_seen[:, slot] = n + learn
        return np.minimum(np.nan_to_num(score, nan=0.0), 1e3)
