"""The detector protocol: every detector scores blocks of a [series x time] matrix.

A block is a float64 array of shape ``(n_series, n_cols)``: one row per series
(a device field), one column per step of a regular time grid, NaN where no
reading came.  ``update`` scores the block column by column, oldest first, and
learns from it as it goes; it returns scores of the same shape, higher meaning
more anomalous, 0 during warm-up, NaN where the input was NaN.

Rules every detector keeps (checked by tests/test_detector_contract.py):

* the input is never mutated;
* scoring is separate from deciding: a detector returns scores, a decider
  (threshold, hysteresis, minimum duration) turns them into alarms;
* what the detector itself scores as clearly anomalous (``score >=
  learn_limit``) is not learned, so an outage never becomes the new normal;
* warm-up is explicit: ``warmup`` columns of data per series before any
  non-zero score;
* series may appear (``grow``) and fall silent (NaN) at any time;
* per-series state lives in arrays indexed by series, so memory per series
  is fixed and ``nbytes_per_series`` says how much;
* deterministic given the constructor's ``seed``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Detector(Protocol):
    n_series: int
    warmup: int

    def update(self, block: np.ndarray) -> np.ndarray:
        """Score ``block`` [n_series x n_cols] and learn from it; return scores of the same shape."""

    def grow(self, n_series: int) -> None:
        """Make room for series up to ``n_series`` (new series start cold)."""

    def nbytes_per_series(self) -> int: ...


def check_block(block: np.ndarray, n_series: int) -> np.ndarray:
    """Validate a block's shape and type; returns it as float64 (a copy only if needed)."""
    block = np.asarray(block, dtype=np.float64)
    if block.ndim != 2:
        raise ValueError(f"block must be 2-D [series x time], got {block.ndim}-D of shape {block.shape}")
    if block.shape[0] != n_series:
        raise ValueError(f"block has {block.shape[0]} series, but the detector is tracking {n_series}; call grow() first")
    return block
