"""One contract suite, run on every detector class in analytics.detectors (rules of analytics/base.py)."""

import numpy as np
import pytest

import analytics.detectors as detectors
from analytics.detectors import DETECTORS, ColumnDetector

N, T = 4, 600


def background(n=N, t=T, seed=1):
    """Noisy daily-like waves, one per series, at different levels and scales."""
    rng = np.random.default_rng(seed)
    tt = np.arange(t)
    base = 10.0 * (np.arange(n)[:, None] + 1)
    wave = np.sin(2 * np.pi * tt / 48.0)[None, :] * (np.arange(n)[:, None] + 1)
    return base + wave + 0.2 * rng.standard_normal((n, t))


def planted(cls, x, at):
    """The trouble each detector is for, planted in every series from column ``at``; returns (data, end)."""
    x = x.copy()
    if cls is detectors.StuckSensor:
        x[:, at:at + 40] = x[:, at:at + 1]
        return x, at + 40
    if cls is detectors.CusumDrift:
        spread = np.arange(1, N + 1)[:, None]
        x[:, at:] += 0.05 * spread * np.arange(x.shape[1] - at)[None, :]
        return x, x.shape[1]
    x[:, at:at + 3] += 60.0 * np.arange(1, N + 1)[:, None]  # a spike far above every level
    return x, at + 3


def test_every_detector_class_is_in_the_suite():
    found = {c for c in vars(detectors).values()
             if isinstance(c, type) and issubclass(c, ColumnDetector) and c is not ColumnDetector}
    assert found == set(DETECTORS)


@pytest.fixture(params=DETECTORS, ids=lambda c: c.__name__)
def cls(request):
    return request.param


def test_input_not_mutated_and_shape(cls):
    x = background()
    x[1, 100:120] = np.nan
    copy = x.copy()
    out = cls(N, seed=0).update(x)
    assert np.array_equal(x, copy, equal_nan=True)
    assert out.shape == x.shape and out.dtype == np.float64


def test_nan_in_nan_out_and_all_nan_columns(cls):
    x = background()
    x[2, 200:260] = np.nan
    x[:, 300:310] = np.nan  # every series silent
    out = cls(N, seed=0).update(x)
    assert np.array_equal(np.isnan(out), np.isnan(x))
    assert np.all(np.isfinite(out[~np.isnan(x)]))
    assert np.all(out[~np.isnan(x)] >= 0)


def test_all_nan_block_from_cold(cls):
    det = cls(N, seed=0)
    assert np.all(np.isnan(det.update(np.full((N, 5), np.nan))))
    assert det.update(np.full((N, 0), np.nan)).shape == (N, 0)


def test_cold_start_zeros_during_warmup(cls):
    det = cls(N, seed=0)
    x = background()
    x[0, :10] = np.nan  # series 0 starts late: its warm-up counts observed columns
    out = det.update(x)
    assert det.warmup >= 1
    assert np.all(out[1:, : det.warmup] == 0)
    first = np.flatnonzero(~np.isnan(x[0]))[: det.warmup]
    assert np.all(out[0, first] == 0)


def test_grow_new_series_start_cold(cls):
    det = cls(2, seed=0)
    x = background(4, 400)
    det.update(x[:2, :200])
    with pytest.raises(ValueError):
        det.update(x[:, 200:])
    det.grow(4)
    with pytest.raises(ValueError):
        det.grow(3)
    out = det.update(x[:, 200:])
    assert det.n_series == 4 and out.shape == (4, 200)
    assert np.all(out[2:, : det.warmup] == 0)
    # The old series carry on exactly as a detector that never grew.
    ref = cls(2, seed=0).update(x[:2])
    assert np.allclose(out[:2], ref[:, 200:], equal_nan=True)


def test_deterministic_with_seed(cls):
    x = background()
    assert np.array_equal(cls(N, seed=7).update(x), cls(N, seed=7).update(x), equal_nan=True)


def test_block_size_invariance(cls):
    x = background()
    x[3, 150:170] = np.nan
    whole = cls(N, seed=0).update(x)
    for size in (1, 7):
        det = cls(N, seed=0)
        parts = np.concatenate([det.update(x[:, j:j + size]) for j in range(0, T, size)], axis=1)
        assert np.array_equal(parts, whole, equal_nan=True)


def test_planted_trouble_scores_above_background(cls):
    x, end = planted(cls, background(), 450)
    out = cls(N, seed=0).update(x)
    calm = out[:, 300:450]
    trouble = out[:, 450:end]
    assert np.all(np.nanmax(trouble, axis=1) > np.nanmax(calm, axis=1))


def test_what_is_flagged_is_not_learned(cls):
    """An outage-like step (to a level never seen, held 200 columns) is not absorbed at once."""
    x = background(N, 3000)
    x[:, 2500:2700] += 80.0
    det = cls(N, seed=0)
    out = det.update(x)
    onset = out[:, 2500:2503].max(axis=1)
    if cls is detectors.EpisodeStart:
        # Reported once at the onset, then kept quiet for the rest period: one report per episode.
        assert np.all(onset > np.nanmax(out[:, 2000:2500], axis=1))
        assert np.all(out[:, 2503:2500 + det.rest] == 0)
    elif cls is detectors.ContextNovelty:
        # Novel once, by design (its contexts are then known); but the flagged onset
        # does not widen the learned range that sets the grid's resolution.
        fresh = cls(N, seed=0)
        first = fresh.update(x[:, :2501])[:, 2500]
        assert np.all(first >= fresh.learn_limit)
        assert np.all(fresh.hi == x[:, :2500].max(axis=1))
    elif cls is detectors.StuckSensor:
        # A long freeze keeps scoring, and growing: it never becomes "naturally flat".
        y = background(N, 1500)
        y[:, 500:] = y[:, 499:500]
        s = cls(N, seed=0).update(y)
        assert np.all(s[:, -1] > s[:, 600]) and np.all(s[:, 600:] >= 1.0)
    else:
        # Still flagged 100 columns into the step: the baseline did not follow the outage.
        assert np.all(out[:, 2600] >= det.learn_limit)


def test_memory_per_series_reported_and_bounded(cls):
    det = cls(10, seed=0)
    per = det.nbytes_per_series()
    assert 0 < per <= 20_000  # Netdata's per-metric ML: about 18 KB
    det.grow(30)
    assert det.nbytes_per_series() == per
