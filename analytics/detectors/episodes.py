"""Post-processing wrappers: report the start of an anomalous episode once, then keep quiet.

An operator (and NAB's scorer) wants the first column of trouble, not the
hundred that follow: every repeat outside a labelled window is a false positive,
and inside one only the earliest flag counts.  :class:`EpisodeStart` wraps any
column detector and passes a score through only when it beats everything the
series scored in the recent past (a decaying running peak); repeats of an
episode already reported are damped to 0.  All state is per series, in arrays.
"""

from __future__ import annotations

import numpy as np

from analytics.detectors.column import ColumnDetector


class EpisodeStart(ColumnDetector):
    """Emit an inner detector's score only where it sets a new recent peak.

    The running peak ``p`` follows ``p <- max(s, p * decay)`` with ``decay =
    0.5 ** (1 / half_life)``: after an episode scoring ``s`` the series stays
    quiet until a score above ``s / 2`` (after ``half_life`` columns), ``s / 4``
    (after two), ...  A score that does not beat ``margin * p`` is output as 0.

    Parameters
    ----------
    n_series : int
        Series tracked at first.
    inner : ColumnDetector, optional
        The wrapped detector, tracking the same number of series
        (default: a :class:`~analytics.detectors.robust.RobustShift`).
    half_life : float
        Columns for the remembered peak to halve.
    margin : float
        A new episode must exceed ``margin`` times the decayed peak.
    seed : int
        Passed on to the default inner detector.

    Raises
    ------
    ValueError
        If ``inner`` tracks a different number of series or ``half_life <= 0``.
    """

    def __init__(self, n_series: int, inner: ColumnDetector | None = None, half_life: float = 200.0,
                 margin: float = 1.0, seed: int = 0):
        super().__init__(n_series, seed)
        if inner is None:
            from analytics.detectors.robust import RobustShift
            inner = RobustShift(n_series, seed=seed)
        if inner.n_series != n_series:
            raise ValueError(f"inner detector tracks {inner.n_series} series, wrapper {n_series}")
        if half_life <= 0:
            raise ValueError(f"half_life must be > 0, got {half_life}")
        self.inner = inner
        self.warmup = inner.warmup
        self.learn_limit = inner.learn_limit
        self.decay = 0.5 ** (1.0 / half_life)
        self.margin = float(margin)
        self._declare("peak", (), np.float64, 0.0)

    def _children(self) -> list[ColumnDetector]:
        return [self.inner]

    def step(self, x: np.ndarray) -> np.ndarray:
        s = self.inner.step(x)
        ok = ~np.isnan(s)
        s0 = np.where(ok, s, 0.0)
        decayed = self.peak * self.decay
        out = np.where(s0 > self.margin * decayed, s0, 0.0)
        # A silent column (NaN) neither scores nor ages the peak: silence is not calm.
        self.peak = np.where(ok, np.maximum(s0, decayed), self.peak)
        return np.where(ok, out, np.nan)
