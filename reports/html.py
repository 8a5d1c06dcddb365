"""The monthly report as one printable HTML page (Vietnamese with English alongside), charts inline as SVG.

The same page is the PDF's source (reports/pdf.py prints it with headless
Chromium): ``for_print`` only drops the screen margins.  Jinja2 autoescapes
everything taken from the registry and the incidents.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from . import charts
from .monthly import Monthly

TEMPLATES = Path(__file__).resolve().parent / "templates"
_ENV = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]),
                   trim_blocks=True, lstrip_blocks=True)


def pct(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f} %"


def num(x: float | None, digits: int = 1) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def _charts(m: Monthly) -> dict[str, Markup]:
    districts = [(r.name, r.figures.uptime_pct, pct(r.figures.uptime_pct), charts.uptime_color(r.figures.uptime_pct))
                 for r in m.districts]
    lo, hi = charts.uptime_axis([d[1] for d in districts])
    worst = [(r.name, r.figures.uptime_pct, pct(r.figures.uptime_pct),
              charts.uptime_color(r.figures.uptime_pct)) for r in m.worst_communes]
    wlo, whi = charts.uptime_axis([w[1] for w in worst])
    causes = [(label, minutes, f"{minutes:,.0f} phút / min ({n})", charts.BLUE)
              for label, minutes, n in m.by_cause]
    top = max((c[1] for c in causes), default=0.0)
    return {
        "districts": Markup(charts.bars(districts, lo, hi, "%", "Khả dụng theo huyện / Availability by district")),
        "worst": Markup(charts.bars(worst, wlo, whi, "%", f"{len(worst)} xã thấp nhất / Worst communes")),
        "causes": Markup(charts.bars(causes, 0.0, top or 1.0, "", "Thời gian gián đoạn theo nguyên nhân / "
                                                                  "Downtime by cause (phút / min)")),
    }


def render_html(m: Monthly, for_print: bool = False) -> str:
    year, month = m.period.label.split("-")
    return _ENV.get_template("monthly.html").render(
        m=m, year=year, month=int(month), charts=_charts(m), pct=pct, num=num, for_print=for_print,
        names=m.site_names, minutes=lambda ns: ns / 60e9)
