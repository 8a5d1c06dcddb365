"""Limits from the profiles (UPS on battery, inlet above the ASHRAE mark, water over the flood mark).

Vectorized over every device of one kind: for each field with ``limits`` in the
profile, a level per device (0 ok, 1 warning, 2 critical) is kept in arrays and
moved column by column over the time grid:

* hysteresis: once a mark is crossed, the value must come back past it by
  ``hysteresis`` before the level drops, so a value hovering at the mark does
  not flap;
* minimum duration: a new level counts only after it has held for ``for_s``
  (measurement time);
* NaN (no reading) changes nothing: silence is the silence detector's business.
"""

from __future__ import annotations

import numpy as np

from device_profiles import Profile

from .incidents import Condition

LEVELS = ("ok", "warning", "critical")


class _FieldLimits:
    def __init__(self, profile: Profile, field: str, n: int):
        spec = profile.fields[field]
        lim = spec.limits
        span = (spec.max - spec.min) if spec.min is not None and spec.max is not None else 1.0
        self.field = field
        self.unit = spec.unit
        self.hyst = lim.hysteresis if lim.hysteresis is not None else 0.02 * span
        self.for_ns = int((lim.for_s if lim.for_s is not None else 2 * profile.reporting.interval_s) * 1e9)
        inf = np.inf
        self.above = (lim.warn_above if lim.warn_above is not None else inf, lim.crit_above if lim.crit_above is not None else inf)
        self.below = (lim.warn_below if lim.warn_below is not None else -inf, lim.crit_below if lim.crit_below is not None else -inf)
        if spec.type == "bool":  # a bool alarm (on_battery): true is the warning/critical state, no hysteresis
            self.hyst = 0.0
        self.level = np.zeros(n, dtype=np.int8)
        self.since = np.zeros(n, dtype=np.int64)
        self.cand = np.zeros(n, dtype=np.int8)
        self.cand_since = np.zeros(n, dtype=np.int64)
        self.value = np.full(n, np.nan)

    def _raw(self, v: np.ndarray) -> np.ndarray:
        h = self.hyst
        (wa, ca), (wb, cb) = self.above, self.below
        with np.errstate(invalid="ignore"):
            up = (v >= wa).astype(np.int8) + (v >= ca)
            up_h = (v >= wa - h).astype(np.int8) + (v >= ca - h)
            dn = (v <= wb).astype(np.int8) + (v <= cb)
            dn_h = (v <= wb + h).astype(np.int8) + (v <= cb + h)
        held = np.minimum(self.level, np.maximum(up_h, dn_h))  # hysteresis: keep what is still within h of its mark
        return np.maximum(np.maximum(up, dn), held).astype(np.int8)

    def step(self, col: np.ndarray, t_ns: int) -> None:
        have = ~np.isnan(col)
        raw = self._raw(col)
        changed = have & (raw != self.cand)
        self.cand = np.where(changed, raw, self.cand)
        self.cand_since = np.where(changed, t_ns, self.cand_since)
        promote = have & (self.cand != self.level) & (t_ns - self.cand_since >= self.for_ns)
        self.level = np.where(promote, self.cand, self.level)
        self.since = np.where(promote, self.cand_since, self.since)
        self.value = np.where(have, col, self.value)


class LimitDetector:
    """All limit-bearing fields of one device kind."""

    def __init__(self, profile: Profile, devices: list[str]):
        self.profile = profile
        self.devices = list(devices)
        self.fields = {f: _FieldLimits(profile, f, len(devices)) for f, spec in profile.fields.items() if spec.limits is not None}

    def update(self, columns: dict[str, np.ndarray], times_ns: np.ndarray) -> None:
        """``columns``: field -> [n_devices x n_cols] float64 on the grid whose column times are ``times_ns``."""
        for f, fl in self.fields.items():
            block = columns.get(f)
            if block is None:
                continue
            for j, t in enumerate(times_ns):
                fl.step(block[:, j], int(t))

    def conditions(self, registry) -> list[Condition]:
        out = []
        for f, fl in self.fields.items():
            for i in np.flatnonzero(fl.level > 0):
                dev = registry.devices[self.devices[i]]
                level = LEVELS[fl.level[i]]
                v = fl.value[i]
                marks = {"warn_above": fl.above[0], "crit_above": fl.above[1], "warn_below": fl.below[0], "crit_below": fl.below[1]}
                marks = {k: m for k, m in marks.items() if np.isfinite(m)}
                out.append(Condition(
                    key=f"limit:{dev.id}:{f}", kind="limit", severity=level,
                    title=f"Vượt ngưỡng / {self.profile.title.en} {f} {level}: {v:g} {fl.unit} at {dev.id}",
                    cause=f"{f} = {v:g} {fl.unit} crosses the profile's {level} mark ({', '.join(f'{k} {m:g}' for k, m in marks.items())})",
                    site=dev.site, district=dev.district, device=dev.id, started_ns=int(fl.since[i]),
                    evidence={"field": f, "value": float(v), "unit": fl.unit, "marks": marks}))
        return out
