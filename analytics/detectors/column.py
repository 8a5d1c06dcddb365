"""Shared machinery of the column-stepping detectors: per-series state arrays, grow, warm-up.

A detector built on :class:`ColumnDetector` declares its per-series state once
(name, trailing shape, dtype, fill value for a cold series) and implements
``_step``: one column for all series at once, numpy operations only.  The base
class owns the one Python loop allowed, over the columns of a block, so every
detector is block-size invariant by construction: feeding one column at a time
or a whole block runs the very same steps.
"""

from __future__ import annotations

import numpy as np

from analytics.base import check_block


class ColumnDetector:
    """Base of the vectorised detectors (implements the :class:`analytics.base.Detector` protocol).

    Subclasses set ``self.warmup`` and ``self.learn_limit``, call
    :meth:`_declare` for each per-series state array, and implement
    :meth:`_step`.

    Parameters
    ----------
    n_series : int
        Number of series tracked at first (rows of every block); ``grow`` adds more.
    seed : int
        Seed of the detector's random generator (kept for the protocol; the
        detectors here are deterministic without it).

    Raises
    ------
    ValueError
        If ``n_series`` is negative.
    """

    warmup: int = 0
    learn_limit: float = np.inf

    def __init__(self, n_series: int, seed: int = 0):
        if n_series < 0:
            raise ValueError(f"n_series must be >= 0, got {n_series}")
        self.n_series = int(n_series)
        self.seed = seed
        self._specs: dict[str, tuple[tuple[int, ...], np.dtype, float]] = {}
        # Observed (non-NaN) columns per series: drives the per-series warm-up.
        self._declare("seen", (), np.int64, 0)

    # -- state -----------------------------------------------------------------
    def _declare(self, name: str, shape: tuple[int, ...], dtype, fill) -> None:
        """Create per-series state ``self.<name>`` of shape ``(n_series, *shape)``."""
        self._specs[name] = (tuple(shape), np.dtype(dtype), fill)
        setattr(self, name, np.full((self.n_series, *shape), fill, dtype=dtype))

    def grow(self, n_series: int) -> None:
        """Make room for series up to ``n_series``; new series start cold.

        Raises
        ------
        ValueError
            If ``n_series`` is smaller than the number already tracked.
        """
        if n_series < self.n_series:
            raise ValueError(f"cannot shrink from {self.n_series} to {n_series} series")
        extra = n_series - self.n_series
        for name, (shape, dtype, fill) in self._specs.items():
            old = getattr(self, name)
            setattr(self, name, np.concatenate([old, np.full((extra, *shape), fill, dtype=dtype)]))
        self.n_series = int(n_series)
        for child in self._children():
            child.grow(n_series)

    def _children(self) -> list["ColumnDetector"]:
        """Detectors this one wraps (they grow with it and count in its memory)."""
        return []

    def nbytes_per_series(self) -> int:
        """Bytes of state per series (this detector and those it wraps)."""
        own = 0
        for name, (shape, dtype, _) in self._specs.items():
            own += int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        return own + sum(c.nbytes_per_series() for c in self._children())

    # -- scoring ---------------------------------------------------------------
    def update(self, block: np.ndarray) -> np.ndarray:
        """Score ``block`` [n_series x n_cols] column by column and learn from it.

        Parameters
        ----------
        block : array_like, shape (n_series, n_cols)
            New columns, oldest first; NaN where no reading came.  Not mutated.

        Returns
        -------
        numpy.ndarray, float64, shape (n_series, n_cols)
            Scores, higher = more anomalous; 0 during a series' warm-up; NaN where
            the input was NaN.

        Raises
        ------
        ValueError
            If the block is not 2-D or its row count is not ``n_series``.
        """
        block = check_block(block, self.n_series)
        # Columns of a C-ordered [series x time] block are strided in memory; one
        # transpose up front makes every column step read and write contiguously.
        cols = np.ascontiguousarray(block.T)
        out = np.empty(cols.shape, dtype=np.float64)
        for j in range(cols.shape[0]):
            out[j] = self.step(cols[j])
        return out.T  # a (n_series, n_cols) view in Fortran order: no second copy

    def step(self, x: np.ndarray) -> np.ndarray:
        """Score one column ``x`` of shape ``(n_series,)``; the unit that wrappers call."""
        ok = x == x  # not NaN
        self.seen += ok
        score = self._step(x, ok)
        out = score * (self.seen > self.warmup)
        np.copyto(out, np.nan, where=~ok)
        return out

    def _step(self, x: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """Score and learn one column; ``ok`` marks non-NaN entries (``seen`` already counts them).

        Must leave the state of series with ``ok == False`` untouched and may
        return anything for them (NaN is put back by :meth:`step`).
        """
        raise NotImplementedError
