"""Contextual novelty: has this series ever been in this situation before?

Values are quantised into a few coarse levels; the *contexts* of a column are
the tuples of its level and the levels of the ``order - 1`` columns before it
(``(l_t)``, ``(l_t, l_t-1)``, ``(l_t, l_t-1, l_t-2)``, ...).  Each series counts
the contexts it has met in a hashed table of saturating 8-bit counters.  The raw
score of a column is the fraction of its contexts never met before (fewer than
``min_count`` times); this is the core idea of the Contextual Anomaly Detector
(CAD OSE, NAB 69.9), reduced to table look-ups that run on all series at once.

Two refinements matter on real data:

* novelty is worth less on a series that is often novel (noisy, or still
  young): the score is the raw novelty times ``1 - rate``, where ``rate`` is the
  series' EWMA of its raw novelty (rate ``rate_alpha`` per column);
* the level grid.  Given a value range per series (a device profile's valid
  range, or the input range NAB hands every detector), ``levels`` levels span it.
  Without one, the grid is learned: its origin and base step come from the
  warm-up's min and max, and the table learns the same contexts at ``n_res``
  resolutions (steps ``s0 * 2**k``) at once; a column is scored at the finest
  resolution at which the range seen so far still fits in ``levels`` levels, so
  a series whose range grows moves to a coarser grid whose contexts are already
  known, instead of finding everything novel again.

What is flagged is not learned, in this detector's terms: a novel context is
recorded when met, so it is novel once (or ``min_count`` times); the range that
picks the resolution is learned only from columns scored below ``learn_limit``,
so an outage level does not coarsen the grid.  The first occurrence of a context
is the event this detector exists to report; :class:`EpisodeStart` turns it into
one report per episode.
"""

from __future__ import annotations

import numpy as np

from analytics.detectors.column import ColumnDetector

_MIX = np.int64(0x9E3779B1)  # Knuth's multiplicative constant; products wrap in int64, deterministically
_MOD = np.int64(1 << 40)  # keeps running hashes far from int64 overflow


class ContextNovelty(ColumnDetector):
    """Score columns by the fraction of never-seen contexts of quantised values.

    Parameters
    ----------
    n_series : int
        Series tracked at first.
    levels : int
        Quantisation levels across the value range.
    order : int
        Longest context (current level plus ``order - 1`` previous ones).
    value_range : (array_like, array_like), optional
        Per-series ``(lo, hi)`` (shape ``(n_series,)`` each, or scalars); NaN
        entries, and series added by ``grow``, learn their range instead.
    n_res : int
        Resolutions learned when the range is not given (covers a range growth
        of ``2 ** (n_res - 1)``).
    table : int
        Hashed counters per series (bytes of memory per series).
    min_count : int
        A context met fewer times than this is novel.
    rate_alpha : float
        EWMA rate of the novelty rate that discounts habitually novel series.
    learn_limit : float
        Scores at or above this do not widen the learned range.
    warmup : int
        Observed columns per series before any non-zero score; the learned grid
        is fixed at the end of warm-up.
    seed : int
        Unused (deterministic); kept for the protocol.

    Raises
    ------
    ValueError
        If ``levels < 2``, ``order < 1``, ``n_res < 1``, ``table < 16``, or a
        value range has the wrong shape.
    """

    def __init__(self, n_series: int, levels: int = 6, order: int = 3, value_range=None, n_res: int = 8,
                 table: int = 8192, min_count: int = 1, rate_alpha: float = 0.003, learn_limit: float = 0.5,
                 warmup: int = 150, seed: int = 0):
        super().__init__(n_series, seed)
        if levels < 2 or order < 1 or n_res < 1 or table < 16:
            raise ValueError(f"need levels >= 2, order >= 1, n_res >= 1, table >= 16; got {levels}, {order}, {n_res}, {table}")
        self.levels, self.order, self.n_res, self.table = int(levels), int(order), int(n_res), int(table)
        self.min_count = int(min_count)
        self.rate_alpha = float(rate_alpha)
        self.learn_limit = float(learn_limit)
        self.warmup = int(warmup)
        self._pow = 2.0 ** np.arange(self.n_res)
        self._declare("lo", (), np.float64, np.inf)  # range seen (learned) or given
        self._declare("hi", (), np.float64, -np.inf)
        self._declare("given", (), np.bool_, False)
        self._declare("origin", (), np.float64, np.nan)  # grid: origin and base step
        self._declare("step0", (), np.float64, np.nan)
        self._declare("past", (max(self.order - 1, 1),), np.float64, np.nan)  # previous raw values
        self._declare("rate", (), np.float32, 1.0)  # a young series is "always novel"
        self._declare("counts", (self.table,), np.uint8, 0)
        if value_range is not None:
            self.set_range(np.arange(self.n_series), *value_range)

    def set_range(self, series: np.ndarray, lo, hi) -> None:
        """Fix the value range (hence the grid) of some series; NaN bounds are ignored.

        Parameters
        ----------
        series : array_like of int
            Series indices.
        lo, hi : array_like or float
            Bounds, broadcast to ``series``.

        Raises
        ------
        ValueError
            If a bound pair has ``hi < lo``.
        """
        series = np.asarray(series, dtype=np.int64)
        lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), series.shape)
        hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), series.shape)
        good = np.isfinite(lo) & np.isfinite(hi)
        if np.any(hi[good] < lo[good]):
            raise ValueError("value range with hi < lo")
        s, lo, hi = series[good], lo[good], hi[good]
        span = hi - lo
        self.lo[s], self.hi[s], self.given[s] = lo, hi, True
        self.origin[s] = lo
        # A constant series still gets a grid: a step of 1e-3 of its magnitude.
        # (The step is a hair wider than span / levels so that hi itself falls in the top level.)
        self.step0[s] = np.where(span > 0, span * (1 + 1e-9) / self.levels, np.maximum(np.abs(hi), 1.0) * 1e-3)

    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        n = self.n_series
        rows = np.arange(n)
        # Fix a learned grid when warm-up ends: origin = warm-up min, base step = its span / levels.
        fix = ok & ~self.given & np.isnan(self.step0) & (self.seen > self.warmup)
        span = self.hi - self.lo
        self.step0 = np.where(fix, np.where(span > 0, span * (1 + 1e-9) / self.levels,
                                            np.maximum(np.abs(self.hi), 1.0) * 1e-3), self.step0)
        self.origin = np.where(fix, self.lo, self.origin)
        grid = ok & ~np.isnan(self.step0)

        # Resolution: the finest at which the range, this value included, fits the levels.
        wide = np.fmax(self.hi, x) - np.fmin(self.lo, x)
        with np.errstate(invalid="ignore", divide="ignore"):
            res = np.ceil(np.log2(np.maximum(wide / (self.step0 * self.levels), 1.0)))
        res = np.clip(np.nan_to_num(res), 0, self.n_res - 1).astype(np.int64)

        # Levels of this and the previous order-1 values at every resolution:
        # (n, order, n_res); unknown (NaN) history gets a level of its own.
        vals = np.concatenate([x[:, None], self.past[:, : self.order - 1]], axis=1)
        steps = self.step0[:, None] * self._pow[None, :]
        with np.errstate(invalid="ignore"):
            lev = np.floor((vals[:, :, None] - self.origin[:, None, None]) / steps[:, None, :])
        lev = np.nan_to_num(lev, nan=-(1 << 20), posinf=1 << 20, neginf=-(1 << 20)).astype(np.int64)
        lev = np.clip(lev, -(1 << 20), 1 << 20)
        # Running hash over the context's levels, one per (order, resolution).
        h = np.broadcast_to(np.arange(self.n_res, dtype=np.int64) * 7919, (n, self.n_res))
        keys = np.empty((n, self.order, self.n_res), dtype=np.int64)
        for o in range(self.order):
            h = (h * 1_000_003 + lev[:, o, :] + 99_991) % _MOD
            keys[:, o, :] = (h * _MIX + o * 104_729) % self.table
        seen_ctx = self.counts[rows[:, None], keys[rows, :, res]]  # (n, order)
        known = self._history_mask(n)
        novel = ((seen_ctx < self.min_count) & known).sum(axis=1) / np.maximum(known.sum(axis=1), 1)
        score = np.where(grid, novel * (1.0 - self.rate), 0.0)

        # Learn: record every context of a gridded column, at every resolution.
        learn = np.flatnonzero(grid)
        if learn.size:
            k = keys[learn].reshape(learn.size, -1)
            r = learn[:, None]
            self.counts[r, k] = np.minimum(self.counts[r, k].astype(np.int16) + 1, 255).astype(np.uint8)
        # The rate starts at 1 and learns from warm-up columns as if they were calm, so
        # a series is trusted gradually after warm-up rather than all at once.
        warm = self.seen > self.warmup
        self.rate = np.where(grid, self.rate + self.rate_alpha * (np.where(warm, novel, 0.0) - self.rate),
                             self.rate).astype(np.float32)
        # The range widens with calm columns only (and before the grid is fixed, with all).
        widen = ok & ~self.given & ((score < self.learn_limit) | ~grid)
        self.lo = np.where(widen, np.fmin(self.lo, x), self.lo)
        self.hi = np.where(widen, np.fmax(self.hi, x), self.hi)
        if self.order > 1:
            shifted = np.concatenate([x[:, None], self.past[:, :-1]], axis=1)
            self.past = np.where(ok[:, None], shifted, self.past)
        return score

    def _history_mask(self, n: int) -> np.ndarray:
        """Which contexts are complete: order o needs o previous values (n, order)."""
        have = np.concatenate([np.ones((n, 1), bool), ~np.isnan(self.past[:, : self.order - 1])], axis=1)
        return np.logical_and.accumulate(have, axis=1)
