"""Server-side SVG charts for the report: horizontal bars, no JavaScript, no plotting library.

Inline SVG prints sharp in Chromium's PDF and needs nothing installed; the charts
are simple enough (one bar per district, commune or cause) that a plotting
library would not earn its place.  Labels are escaped: site names come from the
registry, causes from incidents.
"""

from __future__ import annotations

import math
from xml.sax.saxutils import escape

GREEN, ORANGE, RED, BLUE = "#2e7d32", "#ef6c00", "#c62828", "#1565c0"
TARGET_PCT = 99.0  # bars under it are orange, under TARGET_PCT - 1 red


def _short(label: str, n: int = 38) -> str:
    return label if len(label) <= n else label[:n - 1] + "\u2026"


def uptime_color(pct: float | None) -> str:
    if pct is None:
        return "#9e9e9e"
    return GREEN if pct >= TARGET_PCT else ORANGE if pct >= TARGET_PCT - 1 else RED


def uptime_axis(values: list[float | None]) -> tuple[float, float]:
    """From a whole percent under the lowest bar to 100: 99.2 % and 99.9 % must not both look full."""
    low = min((v for v in values if v is not None), default=100.0)
    return (max(0.0, math.floor(low) - 1.0), 100.0)


def bars(items: list[tuple[str, float | None, str, str]], lo: float, hi: float, unit: str, title: str,
         width: int = 700, bar_h: int = 18, label_w: int = 250) -> str:
    """``items``: (label, value, value text, colour), drawn top to bottom; the axis runs ``lo``..``hi``."""
    gap, top, bottom = 6, 28, 24
    plot_w = width - label_w - 80
    height = top + bottom + len(items) * (bar_h + gap)
    span = (hi - lo) or 1.0
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" class="chart">'),
           f'<text x="0" y="16" font-size="13" font-weight="bold">{escape(title)}</text>']
    for i in range(5):  # grid and axis labels
        x = label_w + plot_w * i / 4
        v = lo + span * i / 4
        out.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - bottom}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{height - 8}" font-size="10" text-anchor="middle">{v:g}{escape(unit)}</text>')
    for i, (label, value, text, color) in enumerate(items):
        y = top + i * (bar_h + gap)
        frac = 0.0 if value is None else min(max((value - lo) / span, 0.0), 1.0)
        out.append(f'<text x="{label_w - 6}" y="{y + bar_h - 5}" font-size="11" text-anchor="end">'
                   f'{escape(_short(label))}</text>')
        out.append(f'<rect x="{label_w}" y="{y}" width="{max(plot_w * frac, 1.0):.1f}" height="{bar_h}" '
                   f'fill="{color}"/>')
        out.append(f'<text x="{label_w + plot_w * frac + 4:.1f}" y="{y + bar_h - 5}" font-size="11">'
                   f'{escape(text)}</text>')
    out.append("</svg>")
    return "".join(out)
