"""Sparklines for the status page: the last hour of one field per device, as SVG polylines.

Rendered on the server (no JavaScript on the page): each device's readings are
averaged per minute, and every run of minutes with data becomes one polyline,
so a gap in the data is a gap in the line, not a straight lie across it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NS = 1_000_000_000
WIDTH, HEIGHT = 120, 28


@dataclass(frozen=True)
class Sparkline:
    device: str
    site: str
    polylines: tuple[str, ...]  # SVG "x,y x,y ..." strings
    last: float | None
    low: float | None
    high: float | None


def minute_means(frame, field: str, start_ns: int, minutes: int) -> dict[str, np.ndarray]:
    """device -> float[minutes] of per-minute means (NaN where no reading)."""
    out = {}
    col = frame.values[field]
    bucket = (frame.ts_ns - start_ns) // (60 * NS)
    for i, dev in enumerate(frame.devices):
        rows = (frame.device_idx == i) & ~np.isnan(col) & (bucket >= 0) & (bucket < minutes)
        sums = np.bincount(bucket[rows], weights=col[rows], minlength=minutes)
        counts = np.bincount(bucket[rows], minlength=minutes)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[dev] = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return out


def polylines(series: np.ndarray, low: float, high: float) -> tuple[str, ...]:
    n = len(series)
    span = (high - low) or 1.0
    xs = np.linspace(1, WIDTH - 1, n) if n > 1 else np.array([WIDTH / 2])
    ys = HEIGHT - 2 - (series - low) / span * (HEIGHT - 4)
    lines, run = [], []
    for x, y, v in zip(xs, ys, series):
        if np.isnan(v):
            if run:
                lines.append(run)
            run = []
        else:
            run.append(f"{x:.1f},{y:.1f}")
    if run:
        lines.append(run)
    # a lone minute has no line to draw: double it so it shows as a short tick
    return tuple(" ".join(r if len(r) > 1 else r * 2) for r in lines)


def sparklines(registry, store, kind: str, field: str, now_ns: int, minutes: int = 60) -> list[Sparkline]:
    """One sparkline per device of ``kind``, on a shared scale so heights compare across devices."""
    start = (now_ns // (60 * NS) - minutes + 1) * 60 * NS
    devices = sorted(d.id for d in registry.devices_of(kind))
    if not devices:
        return []
    means = minute_means(store.frame(kind, start, now_ns, devices), field, start, minutes)
    every = np.concatenate([m[~np.isnan(m)] for m in means.values()] or [np.array([])])
    low = float(min(0.0, every.min())) if every.size else 0.0
    high = float(np.percentile(every, 99)) if every.size else 1.0  # one spike must not flatten every line
    out = []
    for dev in devices:
        m = means.get(dev, np.full(minutes, np.nan))
        have = m[~np.isnan(m)]
        clipped = np.clip(m, low, high) if high > low else m
        out.append(Sparkline(dev, registry.devices[dev].site, polylines(clipped, low, high),
                             float(have[-1]) if have.size else None,
                             float(have.min()) if have.size else None, float(have.max()) if have.size else None))
    return out
