"""Sparklines for the status page: the last hour of one field per device, as SVG polylines.

Rendered on the server (no JavaScript on the page): each device's readings are
averaged per minute by the store (one small windowed query per device, a few
at a time: reading whole frames would fetch every field of the kind), and every
run of minutes with data becomes one polyline, so a gap in the data is a gap in
the line, not a straight lie across it.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

NS = 1_000_000_000
WIDTH, HEIGHT = 120, 28
# Long-lived, so its threads (and the per-thread SQLite connections the store opens) are reused,
# not opened anew on every page view.
_POOL = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fansipan-sparklines")


@dataclass(frozen=True)
class Sparkline:
    device: str
    site: str
    polylines: tuple[str, ...]  # SVG "x,y x,y ..." strings
    last: float | None
    low: float | None
    high: float | None


def minute_means(store, devices: list[str], field: str, start_ns: int, end_ns: int,
                 minutes: int) -> dict[str, np.ndarray]:
    """device -> float[minutes] of per-minute means (NaN where no reading)."""
    def one(dev: str) -> np.ndarray:
        out = np.full(minutes, np.nan)
        for t, v in store.query(dev, field, start_ns, end_ns, 60, "mean"):
            i = (t - start_ns) // (60 * NS)
            if 0 <= i < minutes:
                out[i] = v
        return out

    return dict(zip(devices, _POOL.map(one, devices)))  # InfluxDB answers several queries at once


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
    means = minute_means(store, devices, field, start, now_ns, minutes)
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
