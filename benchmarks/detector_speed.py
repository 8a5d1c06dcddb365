"""Detector speed: 10,000 series x 1,440 columns on one core, vectorised vs one series at a time.

    python -m benchmarks.detector_speed [--series 10000] [--cols 1440] [--loop-subset 20]

For each detector: time to score the whole [series x cols] block; time for one
new column of all series (mean over 50 calls on a warm detector); the same
detector run series by series in a Python loop (``--loop-subset`` series, each its
own 1-series detector, timed and extrapolated linearly to all series); and state
bytes per series.  Run it with OPENBLAS_NUM_THREADS=1 (numpy's elementwise
operations are single-threaded anyway).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import numpy as np

from analytics.detectors import ContextNovelty, CusumDrift, RobustShift, StuckSensor, nab_detector

TARGET_BLOCK_S = 1.0
TARGET_COLUMN_MS = 10.0


def measure(make, data: np.ndarray, loop_subset: int) -> dict[str, float]:
    """Block, single-column and per-series-loop timings of one detector factory ``make(n)``."""
    n, t = data.shape
    det = make(n)
    t0 = time.perf_counter()
    det.update(data)
    block_s = time.perf_counter() - t0
    cols = [data[:, [j % t]] for j in range(50)]
    t0 = time.perf_counter()
    for c in cols:
        det.update(c)
    column_ms = (time.perf_counter() - t0) / len(cols) * 1e3
    t0 = time.perf_counter()
    for i in range(loop_subset):
        make(1).update(data[i:i + 1])
    loop_s = (time.perf_counter() - t0) * n / loop_subset
    return {"block_s": block_s, "column_ms": column_ms, "loop_s": loop_s,
            "bytes": det.nbytes_per_series(), "points_per_s": n * t / block_s}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--cols", type=int, default=1_440)
    ap.add_argument("--loop-subset", type=int, default=20, help="series timed in the per-series loop")
    ap.add_argument("--all", action="store_true", help="also time the NAB detector (contextual novelty; slow)")
    args = ap.parse_args(argv)
    argv = argv if argv is not None else sys.argv[1:]
    print("command: python -m benchmarks.detector_speed " + " ".join(shlex.quote(a) for a in argv))

    rng = np.random.default_rng(0)
    t = np.arange(args.cols)
    data = (50 + 10 * np.sin(2 * np.pi * t / 1440)[None, :]
            + rng.standard_normal((args.series, args.cols)))
    data[rng.random(data.shape) < 0.01] = np.nan  # 1% missed readings
    makers = {"RobustShift (spike / level shift)": RobustShift, "StuckSensor": StuckSensor,
              "CusumDrift": CusumDrift}
    if args.all:
        makers["ContextNovelty + EpisodeStart (NAB)"] = lambda n: nab_detector(n)
        makers["ContextNovelty alone"] = ContextNovelty
    print(f"{args.series:,} series x {args.cols:,} columns; loop: {args.loop_subset} series timed, "
          "extrapolated to all")
    print(f"{'detector':38s} {'block s':>8s} {'Mpts/s':>7s} {'1 col ms':>9s} {'loop s':>8s} "
          f"{'ratio':>6s} {'B/series':>8s}")
    ok = True
    for name, make in makers.items():
        m = measure(make, data, args.loop_subset)
        print(f"{name:38s} {m['block_s']:8.3f} {m['points_per_s'] / 1e6:7.1f} {m['column_ms']:9.3f} "
              f"{m['loop_s']:8.1f} {m['loop_s'] / m['block_s']:6.0f} {m['bytes']:8d}")
        if make is RobustShift:
            ok = m["block_s"] < TARGET_BLOCK_S and m["column_ms"] < TARGET_COLUMN_MS
    print(f"targets (RobustShift): block < {TARGET_BLOCK_S} s, one column < {TARGET_COLUMN_MS} ms: "
          f"{'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
