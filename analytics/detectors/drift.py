"""Slow drift: a two-sided CUSUM on the residual of a slow, gated EWMA baseline.

A sensor that creeps (a clogging filter, a battery losing capacity, a chiller
slowly losing efficiency) never makes a spike; each reading is only a little
off.  CUSUM adds those small deviations up: with ``z`` the residual in units of
the series' spread, ``S+ <- max(0, S+ + z - slack)`` and ``S- <- max(0, S- - z -
slack)``; the score is ``max(S+, S-) / limit`` (1 = the classic decision limit).
The baseline learns only while the score is below ``learn_limit``, so the drift
it is measuring is not absorbed into it; after ``relearn`` consecutive flagged
columns the series is re-baselined (accepted as the new normal) explicitly.
"""

from __future__ import annotations

import numpy as np

from analytics.detectors.column import ColumnDetector

_MAD_TO_SIGMA = 1.2533


class CusumDrift(ColumnDetector):
    """Two-sided CUSUM of standardised residuals against a gated slow EWMA.

    Parameters
    ----------
    n_series : int
        Series tracked at first.
    alpha : float
        Learning rate of the baseline mean and spread, per column.
    slack : float
        CUSUM allowance ``k`` in sigmas (half the shift to detect, classically).
    limit : float
        CUSUM decision limit ``h`` in sigmas; the score is ``S / h``.
    learn_limit : float
        Scores at or above this are not learned.
    relearn : int
        Consecutive flagged columns after which baseline and sums reset.
    warmup : int
        Observed columns before any non-zero score.
    seed : int
        Unused (deterministic); kept for the protocol.

    Raises
    ------
    ValueError
        If ``alpha`` is outside (0, 1) or ``limit <= 0``.
    """

    def __init__(self, n_series: int, alpha: float = 0.005, slack: float = 0.5, limit: float = 8.0,
                 learn_limit: float = 1.0, relearn: int = 2000, warmup: int = 100, seed: int = 0):
        super().__init__(n_series, seed)
        if not 0.0 < alpha < 1.0:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if limit <= 0:
            raise ValueError(f"limit must be > 0, got {limit}")
        self.alpha, self.slack, self.limit = float(alpha), float(slack), float(limit)
        self.learn_limit, self.relearn, self.warmup = float(learn_limit), int(relearn), int(warmup)
        self._declare("mu", (), np.float64, np.nan)
        self._declare("dev", (), np.float64, 0.0)
        self._declare("pos", (), np.float64, 0.0)
        self._declare("neg", (), np.float64, 0.0)
        self._declare("flagged_run", (), np.int64, 0)

    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        self.mu = np.where(ok & np.isnan(self.mu), x, self.mu)
        warm = self.seen > self.warmup
        resid = x - self.mu
        sigma = np.maximum(_MAD_TO_SIGMA * self.dev, 1e-9 + 1e-6 * np.abs(self.mu))
        # Clipped: one wild reading must not trip a detector meant for creeping change.
        z = np.clip(resid / sigma, -4.0, 4.0)
        pos = np.where(warm, np.maximum(0.0, self.pos + z - self.slack), 0.0)
        neg = np.where(warm, np.maximum(0.0, self.neg - z - self.slack), 0.0)
        score = np.maximum(pos, neg) / self.limit
        learn = ok & (score < self.learn_limit)
        a = np.maximum(self.alpha, 1.0 / np.maximum(self.seen, 1))
        self.mu = np.where(learn, self.mu + a * resid, self.mu)
        self.dev = np.where(learn, self.dev + a * (np.abs(resid) - self.dev), self.dev)
        self.flagged_run = np.where(ok, np.where(learn, 0, self.flagged_run + 1), self.flagged_run)
        reset = self.flagged_run >= self.relearn
        self.mu = np.where(reset, x, self.mu)
        self.pos = np.where(ok, np.where(reset, 0.0, pos), self.pos)
        self.neg = np.where(ok, np.where(reset, 0.0, neg), self.neg)
        self.flagged_run = np.where(reset, 0, self.flagged_run)
        return score
