"""Statistical conditions for one device kind: stuck sensors, spikes and level shifts, slow drift.

All numeric fields of all devices of the kind form the rows of one matrix
(device-major: row = device * n_fields + field), so each detector scores the
whole kind per column.  Scoring and deciding stay separate: the detectors in
:mod:`analytics.detectors` return scores; a :class:`Decider` per detector turns
them into decisions (a threshold held for a minimum number of columns), and
this module turns decisions into incident conditions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from device_profiles import Profile
from device_profiles.models import DEFAULT_DETECTORS

from .detectors import CusumDrift, RobustShift, SeasonalShift, StuckSensor  # noqa: F401 (CusumDrift: see DRIFT)
from .incidents import Condition


class Decider:
    """Per-series decision: score >= threshold for at least ``min_cols`` observed columns in a row."""

    def __init__(self, n_series: int, threshold: float, min_cols: int):
        self.threshold, self.min_cols = threshold, min_cols
        self.run = np.zeros(n_series, dtype=np.int64)
        self.since = np.zeros(n_series, dtype=np.int64)
        self.score = np.zeros(n_series)

    def update(self, scores: np.ndarray, observed: np.ndarray, times_ns: np.ndarray) -> None:
        for j in range(scores.shape[1]):
            ok = observed[:, j]
            hot = ok & (scores[:, j] >= self.threshold)
            start = hot & (self.run == 0)
            self.since = np.where(start, times_ns[j], self.since)
            self.run = np.where(ok, np.where(hot, self.run + 1, 0), self.run)
            self.score = np.where(ok, scores[:, j], self.score)

    def active(self) -> np.ndarray:
        return self.run >= self.min_cols


@dataclass(frozen=True)
class Check:
    kind: str  # incident kind
    severity: str
    title_vi: str
    title_en: str
    detector: type
    params: dict
    threshold: float
    min_cols: int


CHECKS = (
    Check("stuck", "warning", "Cảm biến bị treo", "Sensor stuck", StuckSensor,
          {"k": 15, "warmup": 30, "min_change_rate": 0.6}, 1.0, 1),
    # Rows are in units of the field's valid range (see KindStatistics._matrix): a spike must be
    # at least 12 robust sigmas AND the sigma is never taken below 1% of the valid range.
    Check("anomaly", "warning", "Bất thường", "Spike or level shift", RobustShift,
          {"warmup": 60, "learn_limit": 8.0, "abs_floor": 0.01}, 12.0, 3),
    # Against the series' own hour of the day; silent for its first three days (explicit warm-up).
    Check("seasonal", "warning", "Bất thường theo giờ", "Unusual for the time of day", SeasonalShift,
          {"slots": 24, "abs_floor": 0.01, "learn_limit": 10.0}, 10.0, 3),
)
# CusumDrift is not in the default set: on signals with a daily cycle (traffic, temperature) a
# drift test against a flat baseline fires every morning. It needs the seasonal baseline first.
DRIFT = Check("drift", "info", "Trôi chậm", "Slow drift", CusumDrift, {"warmup": 60}, 1.0, 5)


class KindStatistics:
    def __init__(self, profile: Profile, devices: list[str], checks=CHECKS):
        self.profile = profile
        self.devices = list(devices)
        self.fields = [f for f, s in profile.fields.items() if s.type != "bool"]
        n = len(devices) * len(self.fields)
        self.checks = [(c, c.detector(n, **self._params(c, profile)), Decider(n, c.threshold, c.min_cols)) for c in checks]
        spec = [profile.fields[f] for f in self.fields]
        # A value frozen at the edge of the valid range (0 V on battery, 0 % load) is a state, not a stuck sensor.
        self._last = np.full(n, np.nan)
        # Which rows each check may raise conditions for: the profile says which checks watch which field.
        watch = [s.detectors if s.detectors is not None else DEFAULT_DETECTORS for s in spec]
        self._watched = {c.kind: np.array([c.kind in w for w in watch] * len(devices), dtype=bool) for c in checks}
        self._lo = np.array([s.min for s in spec] * len(devices), dtype=np.float64)
        self._span = np.array([s.max - s.min for s in spec] * len(devices), dtype=np.float64)

    @staticmethod
    def _params(check: Check, profile: Profile) -> dict:
        if check.detector is not SeasonalShift:
            return dict(check.params)
        step = profile.reporting.interval_s
        per_slot_day = 86_400 / check.params["slots"] / step
        return {**check.params, "step_s": step, "slot_warmup": max(3, int(3 * per_slot_day))}

    def _matrix(self, columns: dict[str, np.ndarray]) -> np.ndarray:
        """Device-major rows in units of each field's valid range (0 = min, 1 = max)."""
        blocks = [columns[f] for f in self.fields]
        m = np.stack(blocks, axis=1).reshape(len(self.devices) * len(self.fields), -1)
        return (m - self._lo[:, None]) / self._span[:, None]

    def update(self, columns: dict[str, np.ndarray], times_ns: np.ndarray) -> None:
        if not self.fields or not self.devices:
            return
        m = self._matrix(columns)
        observed = ~np.isnan(m)
        for _, det, decider in self.checks:
            scores = det.update(m, times_ns) if isinstance(det, SeasonalShift) else det.update(m)
            decider.update(scores, observed, times_ns)
        have = observed.any(axis=1)
        if have.any():
            last_col = m.shape[1] - 1 - np.argmax(observed[:, ::-1], axis=1)
            self._last = np.where(have, m[np.arange(m.shape[0]), last_col], self._last)

    def conditions(self, registry) -> list[Condition]:
        if not self.fields or not self.devices:
            return []
        nf = len(self.fields)
        out = []
        for check, _, decider in self.checks:
            active = decider.active() & self._watched[check.kind]
            if check.kind == "stuck":
                active &= (self._last != 0.0) & (self._last != 1.0)
            per_device = active.reshape(len(self.devices), nf)
            for i in np.flatnonzero(per_device.any(axis=1)):
                dev = registry.devices[self.devices[i]]
                rows = [i * nf + k for k in np.flatnonzero(per_device[i])]
                fields = [self.fields[r - i * nf] for r in rows]
                values = {f: float(self._lo[r] + self._last[r] * self._span[r]) for f, r in zip(fields, rows)}
                out.append(Condition(
                    key=f"{check.kind}:{dev.id}", kind=check.kind, severity=check.severity,
                    title=f"{check.title_vi} / {check.title_en}: {dev.id} ({', '.join(fields)})",
                    cause=f"{check.title_en.lower()} on {', '.join(f'{f} = {v:g}' for f, v in values.items())}",
                    site=dev.site, district=dev.district, device=dev.id, started_ns=int(decider.since[rows].min()),
                    evidence={"fields": values, "scores": {f: float(decider.score[r]) for f, r in zip(fields, rows)},
                              "detector": check.detector.__name__}))
        return out
