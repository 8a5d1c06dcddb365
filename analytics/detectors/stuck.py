"""Stuck sensor: the same value repeated for ``k`` columns on a series that normally varies.

A frozen reading is a classic field failure (a hung firmware, a gauge whose
float jammed, a collector re-sending its last value).  A series that is
*always* flat (a switch state, a constant set-point) is not stuck; so the
detector learns, per series, how often consecutive readings differ, and only
series that change on at least ``min_change_rate`` of their columns can be
flagged.
"""

from __future__ import annotations

import numpy as np

from analytics.detectors.column import ColumnDetector


class StuckSensor(ColumnDetector):
    """Score ``run / k`` once a series has repeated one value for ``k`` or more columns.

    Parameters
    ----------
    n_series : int
        Series tracked at first.
    k : int
        Repeats (columns with the value unchanged) before a score is given.
    min_change_rate : float
        Fraction of columns on which the series normally changes; below it the
        series is "naturally flat" and never flagged.
    alpha : float
        EWMA rate of the learned change rate, per column.
    tol : float
        Absolute change below which two readings count as the same value.
    warmup : int
        Observed columns before any non-zero score.
    seed : int
        Unused (deterministic); kept for the protocol.

    Raises
    ------
    ValueError
        If ``k < 2`` or a rate is outside (0, 1).

    Notes
    -----
    Scores are 0 below ``k`` repeats, then ``run / k`` (1 at ``k`` repeats,
    growing while the value stays frozen).  What is flagged is not learned:
    columns scored at or above ``learn_limit`` (1) leave the change rate alone,
    so a long freeze never teaches the detector that the series is flat.  A
    silent column (NaN) neither breaks nor extends a run.
    """

    def __init__(self, n_series: int, k: int = 10, min_change_rate: float = 0.5, alpha: float = 0.01,
                 tol: float = 0.0, warmup: int = 50, seed: int = 0):
        super().__init__(n_series, seed)
        if k < 2:
            raise ValueError(f"k must be >= 2, got {k}")
        for a in (min_change_rate, alpha):
            if not 0.0 < a < 1.0:
                raise ValueError(f"rates must be in (0, 1), got {a}")
        self.k, self.min_change_rate, self.alpha, self.tol = int(k), float(min_change_rate), float(alpha), float(tol)
        self.warmup = int(warmup)
        self.learn_limit = 1.0
        self._declare("last", (), np.float64, np.nan)
        self._declare("run", (), np.int64, 0)
        self._declare("change_rate", (), np.float64, 0.0)

    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        same = ok & (np.abs(x - self.last) <= self.tol)  # False against a NaN "last"
        self.run = np.where(ok, np.where(same, self.run + 1, 0), self.run)
        varies = self.change_rate >= self.min_change_rate
        score = np.where(varies & (self.run >= self.k), self.run / self.k, 0.0)
        had_last = ok & ~np.isnan(self.last)
        learn = had_last & (score < self.learn_limit)
        # The change rate learns at 1/n while young, then at alpha.
        a = np.maximum(self.alpha, 1.0 / np.maximum(self.seen - 1, 1))
        self.change_rate = np.where(learn, self.change_rate + a * ((~same) - self.change_rate), self.change_rate)
        self.last = np.where(ok, x, self.last)
        return score
