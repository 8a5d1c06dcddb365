"""NAB v1.1 benchmark: stream every corpus file through the detector and score it as NAB does.

    python -m benchmarks.nab --data /work/shared/data/nab [--block 288] [--out benchmarks/results/nab.md]

Each file is one series; all 58 run together through one detector (rows of one
matrix, shorter files padded with NaN at the end, which the detectors neither
score nor learn), fed ``--block`` columns at a time.  Two runs: with NAB's
per-file input range (the ``inputMin``/``inputMax`` NAB hands every detector,
as a device profile hands ours a field's valid range) and with no range at all
(the grid learned from the warm-up: fully causal).  Scores are rounded to 4
decimals before the threshold sweep.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from analytics import nab
from analytics.detectors import nab_detector

DECIMALS = 4

NOTES = """\
How: `analytics.detectors.nab_detector` = `EpisodeStart(ContextNovelty)`, one detector
for all 58 series, vectorised over series. Each value is quantised into 8 levels of its
range (6 when the range is learned); a column's contexts are its level and the tuples
with the 1 and 2 levels before it, counted per series in a hashed table of 8-bit
counters (8 KB a series). Score = fraction of never-seen contexts x (1 - the series'
recent novelty rate), so habitually novel (noisy, young) series count for less.
`EpisodeStart` passes a score only after 100 calm columns (no inner score >= 0.5):
one report per episode, as NAB rewards the earliest flag in a window and charges
every repeat outside one. "NAB input range" uses the per-file min/max that NAB
hands every detector (HTM's encoders and CAD OSE use it too); "learned range" uses
nothing but the past (warm-up min/max, then multi-resolution grids). Thresholds
are tuned on the corpus itself, as for every scoreboard entry."""


def stream(files: list[nab.NabFile], detector, block: int) -> tuple[list[np.ndarray], float]:
    """Feed the corpus as one [file x time] matrix, ``block`` columns per update; scores per file."""
    width = max(len(f.values) for f in files)
    data = np.full((len(files), width), np.nan)
    for i, f in enumerate(files):
        data[i, : len(f.values)] = f.values
    out = np.empty_like(data)
    t0 = time.perf_counter()
    for j in range(0, width, block):
        out[:, j:j + block] = detector.update(data[:, j:j + block])
    return [out[i, : len(f.values)] for i, f in enumerate(files)], time.perf_counter() - t0


def cross_checks(files: list[nab.NabFile]) -> dict[str, dict[str, nab.SweepResult]]:
    """Scores of reference outputs: never flag (0 by definition), flag each window's first row (100), random."""
    rng = np.random.default_rng(0)
    return {
        "null (all scores 0)": nab.sweep(files, [np.zeros(len(f.values)) for f in files], DECIMALS),
        "first row of every window": nab.sweep(files, nab.window_start_scores(files), DECIMALS),
        "uniform random, seed 0": nab.sweep(files, [rng.random(len(f.values)) for f in files], DECIMALS),
    }


def fmt(r: dict[str, nab.SweepResult]) -> str:
    return " | ".join(f"{r[p].normalised:.1f}" for p in nab.PROFILES)


def report(files, runs, checks, command: str) -> str:
    n_rows = sum(len(f.values) for f in files)
    n_win = sum(len(f.windows) for f in files)
    lines = [
        "## NAB v1.1 (Numenta Anomaly Benchmark)",
        "",
        f"Corpus: {len(files)} files, {n_rows:,} rows, {n_win} windows. Command: `{command}`",
        "",
        "| detector | standard | reward_low_FP | reward_low_FN |",
        "|---|---|---|---|",
    ]
    for name, (res, _) in runs.items():
        lines.append(f"| **{name}** | {fmt(res)} |")
    for name, scores in nab.PUBLISHED.items():
        lines.append(f"| {name} (published) | {' | '.join(f'{s:.1f}' for s in scores)} |")
    lines += ["", "Thresholds chosen by the exhaustive sweep (scores rounded to "
              f"{DECIMALS} decimals; ties to the highest threshold):", ""]
    for name, (res, secs) in runs.items():
        parts = ", ".join(f"{p}: thr {r.threshold:.4g}, {r.tp:.0f}/{n_win} windows, {r.fp} FP rows"
                          for p, r in res.items())
        lines.append(f"- {name}: {parts}; streamed in {secs:.1f} s")
    lines += ["", "Cross-checks of the scorer (normalised standard | low FP | low FN):", ""]
    for name, res in checks.items():
        lines.append(f"- {name}: {fmt(res)}")
    lines += ["", NOTES]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="NAB checkout: holds data/ and labels/")
    ap.add_argument("--block", type=int, default=288, help="columns per update() call (default 288)")
    ap.add_argument("--out", help="also write the markdown results section to this file")
    args = ap.parse_args(argv)
    command = "python -m benchmarks.nab " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))

    files = nab.load_corpus(args.data)
    n = len(files)
    lo = np.array([f.values.min() for f in files])
    hi = np.array([f.values.max() for f in files])
    runs = {}
    for name, rng in [("Fansipan, NAB input range", (lo, hi)), ("Fansipan, learned range (causal)", None)]:
        scores, secs = stream(files, nab_detector(n, value_range=rng), args.block)
        runs[name] = (nab.sweep(files, scores, DECIMALS), secs)
    text = report(files, runs, cross_checks(files), command)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
