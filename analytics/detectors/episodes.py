"""Post-processing: report the start of an anomalous episode once, then rest.

An operator (and NAB's scorer) wants the first column of trouble, not the
hundred that follow: every repeat outside a labelled window is a false positive,
and inside a window only the earliest flag counts.  :class:`EpisodeStart` wraps
any column detector and passes its score through only when the series has been
calm (no inner score at or above ``on``) for the previous ``rest`` columns; in
between, scores are output as 0.  This is the "rest period" of the Contextual
Anomaly Detector (CAD OSE, NAB 69.9), kept per series in one integer array.
"""

from __future__ import annotations

import numpy as np

from analytics.detectors.column import ColumnDetector


class EpisodeStart(ColumnDetector):
    """Pass an inner score only at the start of an episode; 0 for ``rest`` columns after.

    Parameters
    ----------
    n_series : int
        Series tracked at first.
    inner : ColumnDetector, optional
        The wrapped detector, tracking ``n_series`` series (default: a
        :class:`~analytics.detectors.novelty.ContextNovelty`).
    on : float
        An inner score at or above this starts (or prolongs) an episode.
    rest : int
        Calm columns needed before a score is passed through again.  Silent
        (NaN) columns neither count as calm nor end the rest: silence is not
        evidence that things are fine.
    seed : int
        Passed on to the default inner detector.

    Raises
    ------
    ValueError
        If ``inner`` tracks another number of series or ``rest < 0``.
    """

    def __init__(self, n_series: int, inner: ColumnDetector | None = None, on: float = 0.5,
                 rest: int = 100, seed: int = 0):
        super().__init__(n_series, seed)
        if inner is None:
            from analytics.detectors.novelty import ContextNovelty
            inner = ContextNovelty(n_series, seed=seed)
        if inner.n_series != n_series:
            raise ValueError(f"inner detector tracks {inner.n_series} series, the wrapper {n_series}")
        if rest < 0:
            raise ValueError(f"rest must be >= 0, got {rest}")
        self.inner = inner
        self.warmup = inner.warmup
        self.learn_limit = inner.learn_limit
        self.on = float(on)
        self.rest = int(rest)
        # Columns since the last inner score >= on; "long ago" for a cold series.
        self._declare("calm", (), np.int64, np.iinfo(np.int32).max)

    def _children(self) -> list[ColumnDetector]:
        return [self.inner]

    def step(self, x: np.ndarray) -> np.ndarray:
        s = self.inner.step(x)
        ok = ~np.isnan(s)
        s0 = np.where(ok, s, 0.0)
        out = np.where(self.calm >= self.rest, s0, 0.0)
        self.calm = np.where(ok, np.where(s0 >= self.on, 0, self.calm + 1), self.calm)
        return np.where(ok, out, np.nan)
