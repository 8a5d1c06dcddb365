"""Statistical conditions for one device kind: a stuck sensor, spikes and level shifts.

All numeric fields of all devices of the kind form the rows of one matrix
(device-major: row = device * n_fields + field), so one detector instance
scores the whole kind per column.  Scoring and deciding stay separate: the
detector returns scores, this module applies the thresholds and a minimum
number of columns before a condition is raised.
"""

from __future__ import annotations

import numpy as np

from device_profiles import Profile

from .incidents import Condition

STUCK_COLUMNS = 15  # identical readings in a row before a sensor that normally varies counts as stuck


class StuckDetector:
    """Same value repeated: per-series run length of identical readings (NaN does not break a run).

    Only a series that normally changes at (nearly) every reading can be
    stuck: the rate at which its readings change is tracked (EWMA) and the rate
    before the current run must be at least ``min_change_rate``.  A field that
    is constant most of the time by design (a camera's 25 fps, an error
    counter at 0) is never called stuck.
    """

    def __init__(self, n_series: int, min_run: int = STUCK_COLUMNS, min_change_rate: float = 0.6, alpha: float = 0.05):
        self.n_series = n_series
        self.min_run = min_run
        self.min_change_rate = min_change_rate
        self.alpha = alpha
        self.last = np.full(n_series, np.nan)
        self.run = np.zeros(n_series, dtype=np.int64)
        self.rate = np.full(n_series, np.nan)  # EWMA of "this reading differs from the previous one"
        self.rate_before = np.zeros(n_series)  # the rate when the current run began
        self.seen = np.zeros(n_series, dtype=np.int64)

    def update(self, block: np.ndarray) -> np.ndarray:
        """block [n_series x n_cols]; returns the run length after each column (0 where NaN)."""
        out = np.zeros(block.shape)
        for j in range(block.shape[1]):
            col = block[:, j]
            have = ~np.isnan(col)
            same = have & (col == self.last)
            compared = have & ~np.isnan(self.last)
            changed = (~same).astype(np.float64)
            ewma = np.where(np.isnan(self.rate), changed, (1 - self.alpha) * self.rate + self.alpha * changed)
            self.rate = np.where(compared, ewma, self.rate)
            self.seen += have
            self.rate_before = np.where(have & ~same, self.rate, self.rate_before)
            self.run = np.where(same, self.run + 1, np.where(have, 1, self.run))
            self.last = np.where(have, col, self.last)
            out[:, j] = np.where(have, self.run, 0)
        return out

    def stuck(self) -> np.ndarray:
        warmed = self.seen - self.run >= 2 * self.min_run  # the change rate rests on enough readings before the run
        return warmed & (self.run >= self.min_run) & (self.rate_before >= self.min_change_rate)


class KindStatistics:
    def __init__(self, profile: Profile, devices: list[str]):
        self.profile = profile
        self.devices = list(devices)
        self.fields = [f for f, s in profile.fields.items() if s.type != "bool"]
        n = len(devices) * len(self.fields)
        self.stuck = StuckDetector(n)
        self._stuck_since = np.zeros(n, dtype=np.int64)

    def _matrix(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        blocks = [columns[f] for f in self.fields]
        if not blocks:
            return np.empty((0, 0))
        # device-major rows: device i, field k -> row i * n_fields + k
        return np.stack(blocks, axis=1).reshape(len(self.devices) * len(self.fields), -1)

    def update(self, columns: dict[str, np.ndarray], times_ns: np.ndarray) -> None:
        if not self.fields or not self.devices:
            return
        m = self._matrix(columns)
        runs = self.stuck.update(m)
        # when did the current run start (by measurement time): first column of the run within this block, else kept
        started = runs == 1
        if started.any():
            last_start = np.where(started, times_ns[None, :], 0).max(axis=1)
            self._stuck_since = np.where(last_start > 0, last_start, self._stuck_since)

    def conditions(self, registry) -> list[Condition]:
        if not self.fields or not self.devices:
            return []
        nf = len(self.fields)
        stuck = self.stuck.stuck().reshape(len(self.devices), nf)
        out = []
        for i in np.flatnonzero(stuck.any(axis=1)):
            dev = registry.devices[self.devices[i]]
            fields = [self.fields[k] for k in np.flatnonzero(stuck[i])]
            rows = [i * nf + self.fields.index(f) for f in fields]
            out.append(Condition(
                key=f"stuck:{dev.id}", kind="stuck", severity="warning",
                title=f"Cảm biến bị treo / Sensor stuck: {dev.id} repeats {', '.join(fields)}",
                cause=f"{', '.join(fields)} reported the same value {int(self.stuck.run[rows].min())} times in a row",
                site=dev.site, district=dev.district, device=dev.id, started_ns=int(self._stuck_since[rows].min()),
                evidence={"fields": {f: float(self.stuck.last[r]) for f, r in zip(fields, rows)}}))
        return out
