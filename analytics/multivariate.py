"""Multivariate conditions: a device whose fields no longer fit together (scikit-learn IsolationForest).

Meant for the data-center kinds (:data:`MULTIVARIATE_KINDS`): a server whose CPU
temperature climbs while its CPU load does not, a rack PDU drawing current its
power does not explain, a CRAC whose fans slow while its air warms.  Each field
may still be inside its limits; what is wrong is the combination.

Rows are (device, grid column) samples; features are the kind's numeric fields
in units of each field's valid range (0 = min, 1 = max).  A row with any NaN
field is skipped (not scored, not learned).  One model per kind, pooled over
its devices, so a device is judged against the behaviour of the whole fleet.

Lifecycle:

* warm-up: the clean rows of the first ``train_cols`` observed columns are
  collected (clean = every field inside the profile's limit marks, and not in
  the caller's ``exclude`` mask), then the forest is fitted once with
  ``random_state=seed``.  Scores are 0 until then;
* scoring: every update scores all its complete rows in ONE ``score_samples``
  call (batch scoring is ~3000x faster than row by row); the anomaly score is
  ``-score_samples`` (in (0, 1], about 0.4-0.5 for ordinary rows);
* deciding: score >= ``threshold`` for ``min_cols`` observed columns in a row
  (:class:`~analytics.statistics.Decider`), where the threshold is the
  ``1 - contamination`` quantile of the training rows' scores times ``margin``;
* retraining: clean rows that did not score above the threshold keep feeding
  a bounded ring buffer (at most ``max_train_rows`` rows, thinned at random so
  that it spans about ``window_s`` of history: with a daily cycle the model
  should eventually have seen every hour of the day).  Every ``refit_s`` of
  measurement time the forest is refitted on the buffer and the threshold
  recalibrated; ``refit_s=None`` keeps the first model.  Flagged rows are never
  learned, so a slow fault does not become the new normal.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest

from device_profiles import Profile

from .incidents import Condition
from .statistics import Decider

MULTIVARIATE_KINDS = ("server", "crac", "rack_pdu")


class KindMultivariate:
    """IsolationForest over the numeric fields of all devices of one kind.

    ``update(cols, times_ns, exclude=None)``: ``cols`` maps field -> float64
    [n_devices x n_cols] (profile units, NaN = no reading) on the grid whose
    column times are ``times_ns`` (int64 ns, [n_cols]); ``exclude`` is an
    optional bool [n_devices x n_cols] of rows other detectors flagged (scored,
    never learned).  ``conditions(registry)`` lists one condition per device
    whose decision is active.
    """

    def __init__(self, profile: Profile, devices: list[str], fields: list[str] | None = None,
                 train_cols: int = 360, contamination: float = 0.001, seed: int = 0, margin: float = 1.1,
                 min_cols: int = 6, max_train_rows: int = 20_000, refit_s: float | None = 3600.0,
                 window_s: float = 86400.0, n_estimators: int = 100):
        self.profile = profile
        self.devices = list(devices)
        numeric = [f for f, s in profile.fields.items() if s.type != "bool"]
        self.fields = list(fields) if fields is not None else numeric
        spec = [profile.fields[f] for f in self.fields]
        self._lo = np.array([s.min for s in spec], dtype=np.float64)
        self._span = np.array([s.max - s.min for s in spec], dtype=np.float64)
        inf = np.inf
        lim = [s.limits for s in spec]
        # The warning marks (or the critical ones, if only those are set) bound what counts as clean.
        self._hi = np.array([_first(l, "warn_above", "crit_above", inf) for l in lim])
        self._lo_mark = np.array([_first(l, "warn_below", "crit_below", -inf) for l in lim])
        self.train_cols, self.contamination, self.seed, self.margin = train_cols, contamination, seed, margin
        self.max_rows, self.refit_ns = max_train_rows, None if refit_s is None else int(refit_s * 1e9)
        self.window_s, self.n_estimators = window_s, n_estimators
        n, nf = len(self.devices), len(self.fields)
        self.decider = Decider(n, np.inf, min_cols)  # threshold set when the forest is fitted
        self.model: IsolationForest | None = None
        self.threshold = np.inf
        self.fits = 0
        self._buf = np.empty((max_train_rows, nf))  # ring buffer of clean rows, range units
        self._buf_n = self._buf_pos = 0
        self._seen_cols = 0  # observed columns collected during warm-up
        self._fit_ns = 0
        self._last_t: int | None = None
        self._step_s: float | None = None
        self._rng = np.random.default_rng(seed)
        self._median = np.zeros(nf)  # training medians (range units), for the evidence
        self._last = np.full((n, nf), np.nan)  # last complete row per device (range units)
        self._last_score = np.zeros(n)

    # --- updating ----------------------------------------------------------------------------

    def update(self, cols: dict[str, np.ndarray], times_ns: np.ndarray, exclude: np.ndarray | None = None) -> None:
        if not self.fields or not self.devices:
            return
        times_ns = np.asarray(times_ns, dtype=np.int64)
        T = len(times_ns)
        if T == 0:
            return
        self._learn_step(times_ns)
        raw = np.stack([np.asarray(cols[f], dtype=np.float64) for f in self.fields], axis=2)  # [n_dev, T, nf]
        x = (raw - self._lo) / self._span
        ok = ~np.isnan(x).any(axis=2)
        with np.errstate(invalid="ignore"):
            clean = ok & ~((raw > self._hi) | (raw < self._lo_mark)).any(axis=2)
        if exclude is not None:
            clean &= ~np.asarray(exclude, dtype=bool)
        start = 0
        if self.model is None:
            start = self._warm(x, clean)  # first column to score (T if still warming up)
        scores = np.zeros((len(self.devices), T))
        scored = ok.copy()
        scored[:, :start] = False
        if scored.any():
            scores[scored] = -self.model.score_samples(x[scored])  # the one scoring call of this update
        # Warm-up columns count as observed with score 0: a device's run cannot start before the model exists.
        self.decider.update(scores, ok, times_ns)
        have = ok.any(axis=1)
        if have.any():
            j = T - 1 - np.argmax(ok[:, ::-1], axis=1)
            i = np.arange(len(self.devices))
            self._last = np.where(have[:, None], x[i, j], self._last)
            self._last_score = np.where(have, scores[i, j], self._last_score)
        if self.model is not None and start < T:
            keep = scored & clean & (scores < self.threshold)  # what is flagged is not learned
            rows = x[keep]
            if len(rows):
                self._admit(rows[self._rng.random(len(rows)) < self._keep_p()])
            if self.refit_ns is not None and int(times_ns[-1]) - self._fit_ns >= self.refit_ns:
                self._fit(int(times_ns[-1]))

    def _warm(self, x: np.ndarray, clean: np.ndarray) -> int:
        """Collect training rows column by column; fit once enough columns are seen. Returns the first
        column of this block to score."""
        obs = np.flatnonzero(clean.any(axis=0))
        take = obs[: self.train_cols - self._seen_cols]
        if len(take):
            sub = clean[:, take]
            self._admit(x[:, take][sub])
            self._seen_cols += len(take)
        if self._seen_cols < self.train_cols or self._buf_n == 0:
            return x.shape[1]
        self._fit(int(self._last_t))
        return int(take[-1]) + 1 if len(take) else 0

    def _admit(self, rows: np.ndarray) -> None:
        """Append rows to the ring buffer, overwriting the oldest."""
        rows = rows[-self.max_rows:]
        k = len(rows)
        idx = (self._buf_pos + np.arange(k)) % self.max_rows
        self._buf[idx] = rows
        self._buf_pos = (self._buf_pos + k) % self.max_rows
        self._buf_n = min(self.max_rows, self._buf_n + k)

    def _keep_p(self) -> float:
        """Share of clean rows kept after warm-up, so the buffer spans about ``window_s``."""
        step = self._step_s or 1.0
        per_window = len(self.devices) * self.window_s / step
        return min(1.0, self.max_rows / max(per_window, 1.0))

    def _learn_step(self, times_ns: np.ndarray) -> None:
        if len(times_ns) >= 2:
            self._step_s = float(times_ns[1] - times_ns[0]) / 1e9
        elif self._last_t is not None and times_ns[0] > self._last_t:
            self._step_s = float(times_ns[0] - self._last_t) / 1e9
        self._last_t = int(times_ns[-1])

    def _fit(self, t_ns: int) -> None:
        train = self._buf[: self._buf_n]
        self.model = IsolationForest(n_estimators=self.n_estimators, random_state=self.seed).fit(train)
        own = -self.model.score_samples(train)
        self.threshold = float(np.quantile(own, 1.0 - self.contamination) * self.margin)
        self.decider.threshold = self.threshold
        self._median = np.median(train, axis=0)
        self._fit_ns = t_ns
        self.fits += 1

    # --- conditions --------------------------------------------------------------------------

    def conditions(self, registry) -> list[Condition]:
        if self.model is None:
            return []
        out = []
        units = {f: self.profile.fields[f].unit for f in self.fields}
        for i in np.flatnonzero(self.decider.active()):
            dev = registry.devices[self.devices[i]]
            row = self._last[i]
            dev_range = row - self._median
            order = [k for k in np.argsort(-np.abs(dev_range)) if np.isfinite(dev_range[k])][:3]
            top = [self.fields[k] for k in order]
            values = {f: float(row[k] * self._span[k] + self._lo[k]) for k, f in enumerate(self.fields)}
            usual = {self.fields[k]: float(self._median[k] * self._span[k] + self._lo[k]) for k in order}
            out.append(Condition(
                key=f"multivariate:{dev.id}", kind="multivariate", severity="warning",
                title=f"Bất thường đa biến / Fields no longer fit together: {dev.id} ({', '.join(top)})",
                cause=f"{self.profile.title.en} {dev.id}: " + ", ".join(
                    f"{f} = {values[f]:g} {units[f]} (usual {usual[f]:g})" for f in top)
                      + " do not fit the pattern learned from the fleet",
                site=dev.site, district=dev.district, device=dev.id, started_ns=int(self.decider.since[i]),
                evidence={"values": values, "score": float(self.decider.score[i]), "threshold": self.threshold,
                          "deviation_range_units": {self.fields[k]: float(dev_range[k]) for k in order},
                          "training_median": usual, "detector": "IsolationForest"}))
        return out


def _first(lim, a: str, b: str, default: float) -> float:
    if lim is None:
        return default
    v = getattr(lim, a)
    v = getattr(lim, b) if v is None else v
    return default if v is None else float(v)
