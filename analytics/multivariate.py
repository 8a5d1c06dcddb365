"""Multivariate conditions: a device whose fields no longer fit together (scikit-learn IsolationForest).

Meant for the data-center kinds (:data:`MULTIVARIATE_FIELDS`): a server whose CPU
temperature climbs while its CPU load does not, a rack PDU drawing current its
power does not explain, a CRAC whose fans slow while its air warms.  Each field
may still be inside its limits; what is wrong is the combination.

Rows are (device, grid column) samples; features are the kind's related numeric
fields in units of each field's valid range (0 = min, 1 = max), rotated onto the
principal axes of the clean training rows and scaled to unit variance there
(whitening): IsolationForest cuts parallel to the axes, and after the rotation
"CPU temperature minus what the load explains" is an axis of its own.  A row with
any NaN field is skipped (neither scored nor learned).  One model per kind,
pooled over its devices, so a device is judged against the whole fleet and a
server that simply gets busier, like its neighbours are, stays unremarkable.

Lifecycle:

* warm-up: the clean rows of the first ``train_cols`` observed columns are
  collected (clean = every field inside the profile's limit marks, and not in
  the caller's ``exclude`` mask), then the forest is fitted once with
  ``random_state=seed``.  Scores are 0 until then;
* scoring: every update scores all its complete rows in ONE ``score_samples``
  call (batch scoring is ~3000x faster than row by row); a row's anomaly score
  is ``-score_samples`` (in (0, 1], about 0.45-0.5 for ordinary rows);
* deciding: the row scores of each device are smoothed (EWMA, ``alpha``), since
  a single noisy reading is no finding; the smoothed score must reach
  ``threshold`` for ``min_cols`` observed columns in a row
  (:class:`~analytics.statistics.Decider`).  The threshold is the
  ``1 - contamination`` quantile of the training rows' own (unsmoothed) scores
  times ``margin``: smoothed scores of ordinary devices stay well below it.
  A forest gives every point beyond its training data about the score of the
  most extreme training point, however far beyond; so a row past the training
  edges (whitened, ``contamination`` quantiles) by less than ``gap`` standard
  deviations scores as ordinary: that is the fleet wandering a little (a quieter
  hour than the one trained on), to be learned at the next refit, not a fault;
* retraining: clean rows of devices whose smoothed score is below the threshold
  keep feeding a bounded ring buffer (at most ``max_train_rows`` rows, thinned
  at random so that it spans about ``window_s`` of history: with a daily cycle
  the model should eventually have seen every hour of the day).  Every
  ``refit_s`` of measurement time the forest is refitted on the buffer and the
  threshold recalibrated; ``refit_s=None`` keeps the first model.  What is
  flagged is never learned, so a slow fault does not become the new normal.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest

from device_profiles import Profile

from .incidents import Condition
from .statistics import Decider

# Fields that physically depend on each other. Unrelated fields (a server's disk use, a CRAC's humidity)
# only dilute the forest: it picks the axis of each cut at random, so an outlier on one of d axes takes
# about d cuts to isolate and its score saturates lower as d grows. Kinds not listed use all numeric fields.
MULTIVARIATE_FIELDS = {
    "server": ["cpu_pct", "inlet_temp_c", "cpu_temp_c"],
    "crac": ["supply_temp_c", "return_temp_c", "fan_speed_pct"],
    "rack_pdu": ["power_kw", "current_a", "voltage_v"],
}
MULTIVARIATE_KINDS = tuple(MULTIVARIATE_FIELDS)
SD_FLOOR = 1e-3  # range units: a direction the fleet never moved along still needs 0.1 % of the range to count


class KindMultivariate:
    """IsolationForest over related numeric fields of all devices of one kind.

    ``update(cols, times_ns, exclude=None)``: ``cols`` maps field -> float64
    [n_devices x n_cols] (profile units, NaN = no reading) on the grid whose
    column times are ``times_ns`` (int64 ns, [n_cols]); ``exclude`` is an
    optional bool [n_devices x n_cols] of rows other detectors flagged (scored,
    never learned).  ``conditions(registry)`` lists one condition per device
    whose decision is active.  Memory: the ring buffer, ``max_train_rows`` x
    (n_fields float64 + 1 int32) (560 KB for 20,000 x 3), plus the forest (~1 MB).
    Measured on the simulator: ~7 ms per update call and kind (sklearn's
    per-call overhead), ~0.2 s per refit of 20,000 rows.
    """

    def __init__(self, profile: Profile, devices: list[str], fields: list[str] | None = None,
                 train_cols: int = 360, contamination: float = 0.001, seed: int = 0, margin: float = 0.97,
                 min_cols: int = 6, alpha: float = 0.15, gap: float = 2.0, max_train_rows: int = 20_000,
                 refit_s: float | None = 3600.0, window_s: float = 86400.0, n_estimators: int = 100):
        self.profile = profile
        self.devices = list(devices)
        numeric = [f for f, s in profile.fields.items() if s.type != "bool"]
        self.fields = list(fields) if fields is not None else MULTIVARIATE_FIELDS.get(profile.kind, numeric)
        spec = [profile.fields[f] for f in self.fields]
        self._lo = np.array([s.min for s in spec], dtype=np.float64)
        self._span = np.array([s.max - s.min for s in spec], dtype=np.float64)
        # The warning marks (or the critical ones, if only those are set) bound what counts as clean.
        self._hi_mark = np.array([_mark(s.limits, "warn_above", "crit_above", np.inf) for s in spec])
        self._lo_mark = np.array([_mark(s.limits, "warn_below", "crit_below", -np.inf) for s in spec])
        self.train_cols, self.contamination, self.seed, self.margin = train_cols, contamination, seed, margin
        self.alpha, self.gap, self.n_estimators, self.window_s = alpha, gap, n_estimators, window_s
        self.max_rows, self.refit_ns = max_train_rows, None if refit_s is None else int(refit_s * 1e9)
        n, nf = len(self.devices), len(self.fields)
        self.decider = Decider(n, np.inf, min_cols)  # threshold set when the forest is fitted
        self.model: IsolationForest | None = None
        self.threshold = np.inf
        self.fits = 0
        self._buf = np.empty((max_train_rows, nf))  # ring buffer of clean rows, range units
        self._buf_dev = np.zeros(max_train_rows, dtype=np.int32)  # ... and the device of each
        self._buf_n = self._buf_pos = 0
        self._seen_cols = 0  # observed columns collected during warm-up
        self._fit_ns = 0
        self._last_t: int | None = None
        self._step_s: float | None = None
        self._rng = np.random.default_rng(seed)
        self._mean, self._rot, self._sd = np.zeros(nf), np.eye(nf), np.ones(nf)  # whitening
        self._edge_lo, self._edge_hi = np.full(nf, -np.inf), np.full(nf, np.inf)  # training edges, whitened
        self._ordinary = 0.5  # median training score
        self._median = np.full((n, nf), np.nan)  # each device's training medians (range units), for the evidence
        self._ewma = np.zeros(n)  # smoothed anomaly score per device
        self._last = np.full((n, nf), np.nan)  # last complete row per device (range units)

    # --- updating ----------------------------------------------------------------------------

    def update(self, cols: dict[str, np.ndarray], times_ns: np.ndarray, exclude: np.ndarray | None = None) -> None:
        if not self.fields or not self.devices or len(times_ns) == 0:
            return
        times_ns = np.asarray(times_ns, dtype=np.int64)
        n, T = len(self.devices), len(times_ns)
        self._learn_step(times_ns)
        raw = np.stack([np.asarray(cols[f], dtype=np.float64) for f in self.fields], axis=2)  # [n, T, nf]
        x = (raw - self._lo) / self._span
        ok = ~np.isnan(x).any(axis=2)
        with np.errstate(invalid="ignore"):
            clean = ok & ~((raw > self._hi_mark) | (raw < self._lo_mark)).any(axis=2)
        if exclude is not None:
            clean &= ~np.asarray(exclude, dtype=bool)
        start = self._warm(x, clean) if self.model is None else 0  # first column to score
        scored = ok.copy()
        scored[:, :start] = False
        rows = np.zeros((n, T))
        if scored.any():
            w = self._white(x[scored])
            r = -self.model.score_samples(w)  # the one scoring call of this update
            # A forest scores every point beyond its training data like the most extreme training point,
            # however far beyond. Just past the edge is the fleet wandering (a quieter hour than the
            # training one): score it as ordinary, so it is learned at the next refit instead of flagged.
            past = np.maximum(np.maximum(w - self._edge_hi, self._edge_lo - w), 0.0).max(axis=1)
            rows[scored] = np.where((past > 0) & (past < self.gap), np.minimum(r, self._ordinary), r)
        smooth = np.zeros((n, T))  # 0 during warm-up: a run cannot start before the model exists
        e = self._ewma
        for j in range(start, T):  # the EWMA is sequential in time, vectorized over devices
            e = np.where(scored[:, j], e + self.alpha * (rows[:, j] - e), e)
            smooth[:, j] = e
        self._ewma = e
        self.decider.update(smooth, ok, times_ns)
        have = ok.any(axis=1)
        if have.any():
            last = T - 1 - np.argmax(ok[:, ::-1], axis=1)
            self._last = np.where(have[:, None], x[np.arange(n), last], self._last)
        if self.model is None or start >= T:
            return
        learn = scored & clean & (smooth < self.threshold)  # what is flagged is not learned
        if learn.any():
            keep = self._rng.random(int(learn.sum())) < self._keep_share()
            self._admit(x[learn][keep], np.nonzero(learn)[0][keep])
        if self.refit_ns is not None and int(times_ns[-1]) - self._fit_ns >= self.refit_ns:
            self._fit(int(times_ns[-1]))

    def _warm(self, x: np.ndarray, clean: np.ndarray) -> int:
        """Collect the clean rows of the first ``train_cols`` observed columns, then fit.
        Returns the first column of this block to score (``n_cols`` while still warming up)."""
        obs = np.flatnonzero(clean.any(axis=0))
        take = obs[: self.train_cols - self._seen_cols]
        if len(take):
            self._admit(x[:, take][clean[:, take]], np.nonzero(clean[:, take])[0])
            self._seen_cols += len(take)
        if self._seen_cols < self.train_cols:
            return x.shape[1]
        self._fit(int(self._last_t))
        if self.model is None:
            return x.shape[1]
        return int(take[-1]) + 1 if len(take) else 0

    def _admit(self, rows: np.ndarray, devs: np.ndarray) -> None:
        """Append rows (and their device indexes) to the ring buffer, overwriting the oldest."""
        rows, devs = rows[-self.max_rows:], devs[-self.max_rows:]
        idx = (self._buf_pos + np.arange(len(rows))) % self.max_rows
        self._buf[idx], self._buf_dev[idx] = rows, devs
        self._buf_pos = (self._buf_pos + len(rows)) % self.max_rows
        self._buf_n = min(self.max_rows, self._buf_n + len(rows))

    def _keep_share(self) -> float:
        """Share of clean rows kept after warm-up, so that the buffer spans about ``window_s``."""
        per_window = len(self.devices) * self.window_s / (self._step_s or 1.0)
        return min(1.0, self.max_rows / max(per_window, 1.0))

    def _learn_step(self, times_ns: np.ndarray) -> None:
        if len(times_ns) >= 2:
            self._step_s = float(times_ns[1] - times_ns[0]) / 1e9
        elif self._last_t is not None and times_ns[0] > self._last_t:
            self._step_s = float(times_ns[0] - self._last_t) / 1e9
        self._last_t = int(times_ns[-1])

    def _white(self, x: np.ndarray) -> np.ndarray:
        return (x - self._mean) @ self._rot / self._sd

    def _fit(self, t_ns: int) -> None:
        train = self._buf[: self._buf_n]
        if len(train) < 2:
            return
        self._mean = train.mean(axis=0)
        _, s, vt = np.linalg.svd(train - self._mean, full_matrices=False)
        self._rot = vt.T
        self._sd = np.maximum(s / np.sqrt(len(train)), SD_FLOOR)
        if len(self._sd) < len(self.fields):  # fewer rows than fields: keep the axes as they are
            self._rot, self._sd = np.eye(len(self.fields)), np.ones(len(self.fields))
        w = self._white(train)
        self.model = IsolationForest(n_estimators=self.n_estimators, random_state=self.seed).fit(w)
        own = -self.model.score_samples(w)
        self._edge_lo = np.quantile(w, self.contamination, axis=0)
        self._edge_hi = np.quantile(w, 1.0 - self.contamination, axis=0)
        self._ordinary = float(np.median(own))
        self.threshold = float(np.quantile(own, 1.0 - self.contamination) * self.margin)
        self.decider.threshold = self.threshold
        if self.fits == 0:
            self._ewma[:] = self._ordinary  # start every device at an ordinary score
        fleet = np.median(train, axis=0)
        dev = self._buf_dev[: self._buf_n]
        for i in range(len(self.devices)):  # a device never seen clean is compared with the fleet
            mine = train[dev == i]
            self._median[i] = np.median(mine, axis=0) if len(mine) else fleet
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
            dev_range = row - self._median[i]  # how far each field is from this device's usual
            order = [k for k in np.argsort(-np.abs(dev_range)) if np.isfinite(dev_range[k])][:3]
            # Title: the fields that moved at least half as far as the one that moved most.
            top = [self.fields[k] for k in order if abs(dev_range[k]) >= 0.5 * abs(dev_range[order[0]])] or self.fields
            values = {f: float(row[k] * self._span[k] + self._lo[k]) for k, f in enumerate(self.fields)}
            usual = {self.fields[k]: float(self._median[i, k] * self._span[k] + self._lo[k]) for k in order}
            out.append(Condition(
                key=f"multivariate:{dev.id}", kind="multivariate", severity="warning",
                title=f"Bất thường đa biến / Fields no longer fit together: {dev.id} ({', '.join(top)})",
                cause=f"{self.profile.title.en} {dev.id}: " + ", ".join(
                    f"{f} = {values[f]:.4g} {units[f]} (usual {usual[f]:.4g})" for f in usual)
                      + " do not fit together as they did for the fleet",
                site=dev.site, district=dev.district, device=dev.id, started_ns=int(self.decider.since[i]),
                evidence={"values": values, "score": float(self.decider.score[i]), "threshold": self.threshold,
                          "deviation_range_units": {self.fields[k]: float(dev_range[k]) for k in order},
                          "training_median": usual, "detector": "IsolationForest"}))
        return out


def _mark(lim, a: str, b: str, default: float) -> float:
    """Mark ``a`` of a field's limits, else mark ``b``, else ``default``."""
    if lim is None:
        return default
    v = getattr(lim, a)
    v = getattr(lim, b) if v is None else v
    return default if v is None else float(v)
