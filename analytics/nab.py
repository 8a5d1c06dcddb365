"""The Numenta Anomaly Benchmark (NAB v1.1): corpus loader and NAB's published scoring.

The corpus lives wherever the caller says (``data/<category>/<file>.csv`` with
``timestamp,value`` rows, and ``labels/combined_windows.json``); nothing here
knows a default path, and the project's tests build tiny corpora in memory.

Scoring follows NAB's own scorer (see DESIGN.md, "Real data to measure
against"):

* rows ``i < P = min(floor(0.15 N), 750)`` of a file of ``N`` rows are
  probationary and ignored;
* ``f(y) = 2 / (1 + exp(5 y)) - 1``, and ``f(y) = -1`` for ``y > 3``;
* inside window ``[l, r]`` (width ``w``) the earliest flagged row ``i`` earns
  ``A_TP f(y) / f(-1)`` with ``y = -(r - i + 1) / w``; a window with no flagged
  row costs ``-A_FN``;
* every flagged row outside windows costs ``-A_FP`` before any window has
  closed, and earns ``A_FP f((i - r) / (w - 1))`` after one (the last closed
  window ``[l, r]``, width ``w``);
* one threshold per profile for the whole corpus, the one maximising the raw
  score among all distinct scores (ties to the highest threshold).  "Flag
  nothing" (threshold +inf) is a candidate too, so a detector never scores
  below the null detector, whose normalised score is 0 by definition.

The sweep is exact and vectorised: every row contributes a step to the
corpus score S(threshold) at its own score value, so the scores are sorted
once and S is a cumulative sum.  Scores are rounded to ``decimals`` (default
4) before the sweep, as NAB's result files do: ties at the threshold then
behave as in a scoreboard run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROFILES: dict[str, tuple[float, float, float]] = {
    # name -> (A_TP, A_FP, A_FN)
    "standard": (1.0, 0.11, 1.0),
    "reward_low_FP_rate": (1.0, 0.22, 1.0),
    "reward_low_FN_rate": (1.0, 0.11, 2.0),
}

#: Published NAB v1.1 scores (standard, reward_low_FP_rate, reward_low_FN_rate).
PUBLISHED: dict[str, tuple[float, float, float]] = {
    "ARTime": (74.9, 65.2, 80.4),
    "Numenta HTM": (70.1, 63.2, 74.3),
    "CAD OSE": (69.9, 67.0, 73.2),
    "Relative Entropy": (54.6, 47.6, 58.8),
    "Windowed Gaussian": (39.6, 20.9, 47.4),
    "random": (17.7, 7.5, 27.6),
}


@dataclass
class NabFile:
    """One corpus file.

    Attributes
    ----------
    name : str
        ``"category/file.csv"``, the key used by the label file.
    timestamps : numpy.ndarray
        ``datetime64[s]``, shape ``(N,)``.
    values : numpy.ndarray
        float64, shape ``(N,)``.
    windows : list of (int, int)
        Inclusive ``(l, r)`` row indices of the labelled anomaly windows, in order.
    """

    name: str
    timestamps: np.ndarray
    values: np.ndarray
    windows: list[tuple[int, int]] = field(default_factory=list)

    @property
    def probation(self) -> int:
        """Number of leading probationary rows ``P = min(floor(0.15 N), 750)``."""
        return probationary_length(len(self.values))


def probationary_length(n_rows: int) -> int:
    """NAB's probationary period for a file of ``n_rows`` rows."""
    return min(int(np.floor(0.15 * n_rows)), 750)


def load_corpus(root: str | Path) -> list[NabFile]:
    """Load every file named in ``labels/combined_windows.json`` under ``root``.

    Parameters
    ----------
    root : path
        The NAB checkout (or its copy): holds ``data/`` and ``labels/``.

    Returns
    -------
    list of NabFile
        Sorted by name.

    Raises
    ------
    FileNotFoundError
        If the label file or a data file it names is missing.
    ValueError
        If a window boundary does not match a row's timestamp exactly.
    """
    root = Path(root)
    labels = json.loads((root / "labels" / "combined_windows.json").read_text())
    return [load_file(root / "data" / name, name, labels[name]) for name in sorted(labels)]


def load_file(path: str | Path, name: str, windows: list[list[str]]) -> NabFile:
    """Read one ``timestamp,value`` CSV and map its label windows to row indices.

    Raises
    ------
    ValueError
        If a window boundary is not one of the file's timestamps.
    """
    raw = np.loadtxt(path, delimiter=",", skiprows=1, dtype=str, ndmin=2)
    ts = raw[:, 0].astype("datetime64[s]")
    values = raw[:, 1].astype(np.float64)
    rows = []
    for start, end in windows:
        # Labels carry microseconds (".000000"); rows are whole seconds.
        bounds = np.array([start, end], dtype="datetime64[us]").astype("datetime64[s]")
        idx = np.searchsorted(ts, bounds)
        if np.any(idx >= len(ts)) or np.any(ts[np.minimum(idx, len(ts) - 1)] != bounds):
            raise ValueError(f"{name}: window {start} .. {end} does not match rows of the file")
        rows.append((int(idx[0]), int(idx[1])))
    return NabFile(name, ts, values, rows)


def scaled_sigmoid(y: np.ndarray | float) -> np.ndarray:
    """NAB's ``f(y) = 2 / (1 + exp(5 y)) - 1``, forced to -1 for ``y > 3``."""
    y = np.asarray(y, dtype=np.float64)
    with np.errstate(over="ignore"):
        out = 2.0 / (1.0 + np.exp(5.0 * y)) - 1.0
    return np.where(y > 3.0, -1.0, out)


_F_MINUS_1 = float(scaled_sigmoid(-1.0))


def file_events(scores: np.ndarray, windows: list[tuple[int, int]], probation: int) -> tuple[np.ndarray, np.ndarray]:
    """The steps one file adds to S(threshold) as the threshold falls through its scores.

    For a threshold ``t`` the file's score is ``-A_FN * n_windows`` plus the sum of
    the steps ``(value, coef)`` with ``value >= t``; ``coef`` holds the
    coefficients of ``(A_TP, A_FP, A_FN)``.  Outside windows each flagged row is one
    step.  Inside a window only the rows that set a new running maximum (strictly)
    matter: lowering the threshold past such a row makes it the earliest flagged
    row, replacing the later record row's reward by its own.

    Parameters
    ----------
    scores : numpy.ndarray
        Shape ``(N,)``, already rounded; NaN counts as never flagged.
    windows : list of (int, int)
        Inclusive row ranges, sorted and disjoint.
    probation : int
        Rows before this index are ignored.

    Returns
    -------
    values : numpy.ndarray, shape (k,)
    coefs : numpy.ndarray, shape (k, 3)
    """
    n = len(scores)
    s = np.where(np.isnan(scores), -np.inf, scores)
    idx = np.arange(n)
    in_window = np.zeros(n, dtype=bool)
    fp_weight = np.full(n, -1.0)  # f() value for a flagged row outside windows
    vals, coefs = [], []
    for k, (lo, hi) in enumerate(windows):
        in_window[lo:hi + 1] = True
        w = hi - lo + 1
        nxt = windows[k + 1][0] if k + 1 < len(windows) else n
        after = idx[hi + 1:nxt]
        # Between this window and the next, FPs are weighted from this window's end.
        fp_weight[hi + 1:nxt] = scaled_sigmoid((after - hi) / (w - 1)) if w > 1 else -1.0
        start = max(lo, probation)
        if start > hi:
            continue  # wholly probationary: it can only be missed
        seg = s[start:hi + 1]
        prev_max = np.concatenate(([-np.inf], np.maximum.accumulate(seg)[:-1]))
        rec = np.flatnonzero((seg > prev_max) & np.isfinite(seg))
        if rec.size == 0:
            continue
        rows = start + rec
        reward = scaled_sigmoid(-(hi - rows + 1) / w) / _F_MINUS_1
        # Records come in increasing score order; the latest record is reached first
        # as the threshold falls, turning -A_FN into its reward; each earlier record
        # then swaps the later reward for its own (larger) one.
        later = np.concatenate((reward[1:], [np.nan]))
        tp = reward - np.where(np.isnan(later), 0.0, later)
        fn = np.zeros_like(tp)
        fn[-1] = 1.0  # removes the -A_FN
        vals.append(seg[rec])
        coefs.append(np.stack([tp, np.zeros_like(tp), fn], axis=1))
    out = (~in_window) & (idx >= probation) & np.isfinite(s)
    vals.append(s[out])
    coefs.append(np.stack([np.zeros(out.sum()), fp_weight[out], np.zeros(out.sum())], axis=1))
    return np.concatenate(vals), np.concatenate(coefs)


@dataclass
class SweepResult:
    """Best threshold and score of one profile over a corpus."""

    profile: str
    threshold: float
    raw: float
    normalised: float
    tp: float  # windows detected at that threshold
    fp: int  # flagged rows outside windows
    fn: float  # windows missed


def sweep(files: list[NabFile], scores: list[np.ndarray], decimals: int | None = 4,
          profiles: dict[str, tuple[float, float, float]] = PROFILES) -> dict[str, SweepResult]:
    """Score a detector's output on a corpus, one best threshold per profile.

    Parameters
    ----------
    files : list of NabFile
    scores : list of numpy.ndarray
        One array of shape ``(N,)`` per file, same order; NaN never flags.
    decimals : int or None
        Round scores to this many decimals before the sweep (None: as given).
    profiles : dict
        Name -> ``(A_TP, A_FP, A_FN)``.

    Returns
    -------
    dict of SweepResult, by profile name.

    Raises
    ------
    ValueError
        If the number or lengths of score arrays do not match the files.
    """
    if len(files) != len(scores):
        raise ValueError(f"{len(scores)} score arrays for {len(files)} files")
    vals, coefs = [], []
    n_windows = 0
    for f, sc in zip(files, scores):
        sc = np.asarray(sc, dtype=np.float64)
        if sc.shape != f.values.shape:
            raise ValueError(f"{f.name}: scores of shape {sc.shape}, file has {f.values.shape}")
        if decimals is not None:
            sc = np.round(sc, decimals)
        v, c = file_events(sc, f.windows, f.probation)
        vals.append(v)
        coefs.append(c)
        n_windows += len(f.windows)
    v = np.concatenate(vals)
    c = np.concatenate(coefs)
    order = np.argsort(-v, kind="stable")
    v, c = v[order], c[order]
    cum = np.cumsum(c, axis=0)
    # Cumulative counts (TP windows, FP rows) ride along for the report.
    is_fp = (c[:, 0] == 0) & (c[:, 2] == 0)
    fp_count = np.cumsum(is_fp)
    tp_count = np.cumsum(c[:, 2])
    # The last row of each group of equal scores = threshold at that score.
    last = np.flatnonzero(np.r_[v[1:] != v[:-1], True]) if v.size else np.array([], dtype=int)
    results = {}
    for name, (a_tp, a_fp, a_fn) in profiles.items():
        s_null = -a_fn * n_windows
        s_perfect = a_tp * n_windows
        raw = s_null + cum[last] @ np.array([a_tp, a_fp, a_fn]) if last.size else np.array([])
        # Candidate +inf (flag nothing) first: argmax keeps the first maximum, and
        # thresholds are in descending order, so ties go to the highest threshold.
        raws = np.r_[s_null, raw]
        best = int(np.argmax(np.round(raws, 9)))
        if best == 0:
            thr, tp, fp = np.inf, 0.0, 0
        else:
            j = last[best - 1]
            thr, tp, fp = float(v[j]), float(tp_count[j]), int(fp_count[j])
        denom = s_perfect - s_null
        norm = 100.0 * (raws[best] - s_null) / denom if denom else 0.0
        results[name] = SweepResult(name, thr, float(raws[best]), float(norm), tp, fp, n_windows - tp)
    return results


def window_start_scores(files: list[NabFile]) -> list[np.ndarray]:
    """Cross-check detector: 1 at the first row of every window, 0 elsewhere."""
    out = []
    for f in files:
        s = np.zeros(len(f.values))
        for lo, _ in f.windows:
            s[lo] = 1.0
        out.append(s)
    return out


def raw_score(files: list[NabFile], scores: list[np.ndarray], threshold: float,
              weights: tuple[float, float, float], decimals: int | None = 4) -> float:
    """The corpus raw score at one threshold, straight from the rules (reference for the sweep).

    Parameters
    ----------
    files, scores : as for :func:`sweep`.
    threshold : float
        Rows whose (rounded) score is >= this are flagged.
    weights : (A_TP, A_FP, A_FN)

    Returns
    -------
    float
    """
    a_tp, a_fp, a_fn = weights
    total = 0.0
    for f, sc in zip(files, scores):
        sc = np.asarray(sc, dtype=np.float64)
        if decimals is not None:
            sc = np.round(sc, decimals)
        flagged = np.nan_to_num(sc, nan=-np.inf) >= threshold
        flagged[: f.probation] = False
        inside = np.zeros(len(sc), dtype=bool)
        for lo, hi in f.windows:
            inside[lo:hi + 1] = True
            hits = np.flatnonzero(flagged[lo:hi + 1])
            w = hi - lo + 1
            total += a_tp * float(scaled_sigmoid(-(hi - (lo + hits[0]) + 1) / w)) / _F_MINUS_1 if hits.size else -a_fn
        for i in np.flatnonzero(flagged & ~inside):
            closed = [(lo, hi) for lo, hi in f.windows if hi < i]
            if not closed:
                total -= a_fp
            else:
                lo, hi = closed[-1]
                total += a_fp * float(scaled_sigmoid((i - hi) / (hi - lo)))
    return total
