"""NAB scoring on hand-computed tiny corpora (no NAB files needed)."""

import math

import numpy as np
import pytest

from analytics import nab

STD = nab.PROFILES["standard"]


def f(y):
    return -1.0 if y > 3 else 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def corpus(n=100, windows=((40, 49),)):
    ts = np.arange(n).astype("datetime64[m]").astype("datetime64[s]")
    return nab.NabFile("cat/file.csv", ts, np.zeros(n), list(windows))


def flags(n, rows):
    s = np.zeros(n)
    s[list(rows)] = 1.0
    return s


def raw(rows, n=100, windows=((40, 49),), weights=STD):
    c = corpus(n, windows)
    return nab.raw_score([c], [flags(n, rows)], 1.0, weights)


def test_probationary_length():
    assert nab.probationary_length(100) == 15
    assert nab.probationary_length(10_000) == 750


def test_first_row_of_window_earns_a_tp():
    assert raw([40]) == pytest.approx(1.0)
    assert raw([40], weights=(2.0, 0.11, 1.0)) == pytest.approx(2.0)


def test_only_earliest_flag_in_window_counts():
    # w = 10, earliest flagged row 42: y = -(49 - 42 + 1) / 10 = -0.8
    assert raw([42, 45, 49]) == pytest.approx(f(-0.8) / f(-1.0))


def test_flag_before_any_window_costs_a_fp():
    assert raw([20, 40]) == pytest.approx(1.0 - 0.11)


def test_flags_after_a_closed_window_weighted_by_sigmoid():
    # Window [40, 49] (w = 10): row 54 is at y = (54 - 49) / 9; row 90 is past 3 widths.
    assert raw([40, 54]) == pytest.approx(1.0 + 0.11 * f(5 / 9))
    assert raw([40, 90]) == pytest.approx(1.0 - 0.11)
    assert raw([40, 50]) == pytest.approx(1.0 + 0.11 * f(1 / 9))


def test_missed_window_costs_a_fn():
    assert raw([]) == pytest.approx(-1.0)
    assert raw([], weights=nab.PROFILES["reward_low_FN_rate"]) == pytest.approx(-2.0)


def test_probationary_rows_ignored():
    assert raw([5, 40]) == pytest.approx(1.0)  # P = 15
    # A window reaching into probation is scored from its first non-probationary row.
    assert raw([12, 14], windows=((10, 29),)) == pytest.approx(-1.0)


def test_sweep_matches_reference_at_every_threshold():
    rng = np.random.default_rng(3)
    files = [corpus(200, ((60, 79), (150, 169))), corpus(120, ((30, 39),)), corpus(150, ())]
    scores = [np.round(rng.random(len(c.values)) ** 4, 2) for c in files]
    for name, w in nab.PROFILES.items():
        best = nab.sweep(files, scores, decimals=None)[name]
        assert best.raw == pytest.approx(nab.raw_score(files, scores, best.threshold, w, decimals=None))
        every = [nab.raw_score(files, scores, t, w, decimals=None) for t in np.unique(np.concatenate(scores))]
        assert best.raw == pytest.approx(max(max(every), -w[2] * 3))


def test_sweep_ties_go_to_the_highest_threshold():
    c = corpus()
    # Window start scored 0.9, a later in-window row 0.5: thresholds 0.9 and 0.5 both give A_TP.
    s = np.zeros(100)
    s[40], s[45] = 0.9, 0.5
    best = nab.sweep([c], [s])["standard"]
    assert best.threshold == 0.9 and best.raw == pytest.approx(1.0)


def test_normalisation_null_is_0_and_perfect_is_100():
    files = [corpus(100, ((40, 49),)), corpus(200, ((60, 69), (150, 159)))]
    null = nab.sweep(files, [np.zeros(len(c.values)) for c in files])
    perfect = nab.sweep(files, nab.window_start_scores(files))
    for p in nab.PROFILES:
        assert null[p].normalised == 0.0 and null[p].threshold == np.inf
        assert perfect[p].normalised == pytest.approx(100.0)


def test_nan_scores_never_flag_and_rounding():
    c = corpus()
    s = np.full(100, np.nan)
    s[40] = 0.99996  # rounds to 1.0 at 4 decimals
    r = nab.sweep([c], [s])["standard"]
    assert r.threshold == 1.0 and r.normalised == pytest.approx(100.0)


def test_sweep_rejects_mismatched_scores():
    with pytest.raises(ValueError):
        nab.sweep([corpus()], [np.zeros(99)])
    with pytest.raises(ValueError):
        nab.sweep([corpus()], [])


def test_load_corpus(tmp_path):
    (tmp_path / "data" / "cat").mkdir(parents=True)
    (tmp_path / "labels").mkdir()
    rows = "\n".join(f"2020-01-01 00:{m:02d}:00,{m}.5" for m in range(20))
    (tmp_path / "data" / "cat" / "a.csv").write_text("timestamp,value\n" + rows + "\n")
    (tmp_path / "labels" / "combined_windows.json").write_text(
        '{"cat/a.csv": [["2020-01-01 00:05:00.000000", "2020-01-01 00:07:00.000000"]]}')
    [a] = nab.load_corpus(tmp_path)
    assert a.name == "cat/a.csv" and a.windows == [(5, 7)] and a.values[3] == 3.5
    (tmp_path / "labels" / "combined_windows.json").write_text(
        '{"cat/a.csv": [["2020-01-01 00:05:30.000000", "2020-01-01 00:07:00.000000"]]}')
    with pytest.raises(ValueError):
        nab.load_corpus(tmp_path)


def test_benchmark_stream_does_not_depend_on_block_size():
    from analytics.detectors import nab_detector
    from benchmarks.nab import stream

    rng = np.random.default_rng(5)
    files = []
    for n, lo in ((400, 300), (250, 120)):
        c = corpus(n, ((lo, lo + 19),))
        c.values = np.sin(np.arange(n) / 7.0) + 0.1 * rng.standard_normal(n)
        c.values[lo + 5] += 9.0
        files.append(c)
    runs = [stream(files, nab_detector(2), block)[0] for block in (1, 37, 1000)]
    for other in runs[1:]:
        for a, b in zip(runs[0], other):
            assert np.array_equal(a, b, equal_nan=True)
    ranged = stream(files, nab_detector(2, value_range=([-2, -2], [12, 12])), 50)[0]
    assert all(np.isfinite(s).all() for s in ranged)
