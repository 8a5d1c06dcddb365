"""Align readings on a regular time grid: [series x time] matrices, NaN where no reading came.

Column j covers measurement times [t0 + j*step, t0 + (j+1)*step); a cell holds
the last reading in it.  Rows follow the order of ``devices`` given by the
caller, so per-series detector state (arrays indexed by row) stays aligned
from one block to the next.
"""

from __future__ import annotations

import numpy as np


def align(frame, devices: list[str], fields: list[str], t0_ns: int, step_ns: int, n_cols: int) -> dict[str, np.ndarray]:
    """Field -> float64 [len(devices) x n_cols] from a storage ``Frame`` (long, columnar)."""
    if step_ns <= 0 or n_cols < 0:
        raise ValueError(f"step_ns must be > 0 and n_cols >= 0, got {step_ns}, {n_cols}")
    out = {f: np.full((len(devices), n_cols), np.nan) for f in fields}
    if len(frame.ts_ns) == 0 or n_cols == 0:
        return out
    row_of = {d: i for i, d in enumerate(devices)}
    frame_rows = np.array([row_of.get(d, -1) for d in frame.devices], dtype=np.intp)
    rows = frame_rows[frame.device_idx]
    cols = (np.asarray(frame.ts_ns, dtype=np.int64) - t0_ns) // step_ns
    keep = (rows >= 0) & (cols >= 0) & (cols < n_cols)
    order = np.argsort(np.asarray(frame.ts_ns)[keep], kind="stable")  # later readings overwrite earlier ones
    r, c = rows[keep][order], cols[keep][order]
    for f in fields:
        v = np.asarray(frame.values[f])[keep][order]
        ok = ~np.isnan(v)
        out[f][r[ok], c[ok]] = v[ok]
    return out
