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
        """One condition per (site, field): a CRAC failure that heats twelve servers is one incident.

        The condition's device is the one furthest past its mark; every affected
        device is a member. Its key does not depend on how many devices are
        affected, so the incident grows and shrinks instead of being replaced.
        """
        out = []
        for f, fl in self.fields.items():
            by_site: dict[str, list[int]] = {}
            for i in np.flatnonzero(fl.level > 0):
                by_site.setdefault(registry.devices[self.devices[i]].site, []).append(int(i))
            for site, idx in by_site.items():
                worst = max(idx, key=lambda i: (fl.level[i], abs(fl.value[i] - self._mark(fl, i))))
                dev = registry.devices[self.devices[worst]]
                level = LEVELS[int(max(fl.level[i] for i in idx))]
                v = float(fl.value[worst])
                marks = {"warn_above": fl.above[0], "crit_above": fl.above[1], "warn_below": fl.below[0], "crit_below": fl.below[1]}
                marks = {k: m for k, m in marks.items() if np.isfinite(m)}
                what = f"{self.profile.title.en} {f}"
                many = f" on {len(idx)} devices" if len(idx) > 1 else ""
                out.append(Condition(
                    key=f"limit:{site}:{self.profile.kind}:{f}", kind="limit", severity=level,
                    title=f"Vượt ngưỡng / {what} {level}{many} at {registry.sites[site].name}: {v:g} {fl.unit} at {dev.id}",
                    cause=f"{f} crosses the profile's {level} mark ({', '.join(f'{k} {m:g}' for k, m in marks.items())}); "
                          f"worst {dev.id} at {v:g} {fl.unit}",
                    site=site, district=dev.district, device=dev.id, started_ns=int(min(fl.since[i] for i in idx)),
                    evidence={"field": f, "value": v, "unit": fl.unit, "marks": marks,
                              "values": {self.devices[i]: float(fl.value[i]) for i in idx}},
                    members=tuple((self.devices[i], LEVELS[int(fl.level[i])]) for i in idx if i != worst)))
        return out

    @staticmethod
    def _mark(fl: _FieldLimits, i: int) -> float:
        v = fl.value[i]
        return fl.above[0] if v >= fl.above[0] else fl.below[0] if v <= fl.below[0] else v
