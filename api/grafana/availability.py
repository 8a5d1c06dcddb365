"""Availability metrics of the Grafana data source (the fansipan-availability board).

* ``availability_total``: one time series per site (province, data center, district
  or commune ids in ``site``; default the province and the data center) with ONE
  point at the range's end: uptime % over the whole range (for stat panels).
* ``availability_daily``: uptime % per local day (Asia/Ho_Chi_Minh), one series per
  site in ``site`` (default: every district), a point at each day's start.
* ``availability_sites``: a table of communes (filter ``district``) over the range.
* ``availability_outages``: a table of the outages in the range, longest first.

Definitions: analytics/availability.py.  Figures are province-wide, so a scoped
key is refused (as on /api/v1/availability).  Functions take the query's ``ctx``
(api.grafana.query.Ctx) and its payload, like every metric there.
"""

from __future__ import annotations

from analytics import availability, periods
from analytics.periods import Period

from ..errors import ApiError, bad_parameter
from .models import values

MS = 1_000_000
MAX_DAYS = 400  # a daily series over more than a year is not a panel anyone reads


def _check_scope(ctx) -> None:
    view = getattr(ctx, "view", None)
    if view is not None and not getattr(view, "all", True):
        raise ApiError(403, "forbidden", "availability figures are province-wide: use a province-wide key for the "
                                         "availability board", {})


def _fetch(ctx, start: int, end: int):
    from ..routes.availability import maintenance_store

    _check_scope(ctx)
    return availability.fetch(ctx.state.incidents, maintenance_store(ctx.state), start, end)


def _compute(ctx, start: int, end: int, history=None):
    incs, windows = history or _fetch(ctx, start, end)
    return availability.compute(ctx.registry, incs, windows, Period("range", "range", start, end), ctx.now)


def _end(ctx) -> int:
    end = min(ctx.end, ctx.now)
    if end <= ctx.start:
        raise bad_parameter("range.from", "the range starts in the future: nothing to measure yet")
    return end


def _sites(ctx, p: dict, default: list[str]) -> list[str]:
    sites = ctx.filters(p, ("site",))["site"] if values(p, "site") is not None else None
    return sites or default


def _name(ctx, site_id: str) -> str:
    return ctx.registry.sites[site_id].name


def availability_total(ctx, p: dict) -> list[dict]:
    end = _end(ctx)
    a = _compute(ctx, ctx.start, end)
    dc = [s for s, row in a.sites.items() if row.type == "data_center"]
    out = []
    for site in _sites(ctx, p, [s for s, row in a.sites.items() if row.type == "province"] + dc):
        row = a.sites.get(site)
        pct = row.figures.uptime_pct if row else None
        out.append({"target": _name(ctx, site), "datapoints": [[pct, end // MS]]})
    return out


def availability_daily(ctx, p: dict) -> list[dict]:
    days = periods.days_between(ctx.start, _end(ctx))
    if len(days) > MAX_DAYS:
        raise bad_parameter("range", f"{len(days)} days: at most {MAX_DAYS} daily points; narrow the time range")
    default = sorted(s.id for s in ctx.registry.sites.values() if s.type == "district")
    sites = _sites(ctx, p, default)
    series: dict[str, list] = {s: [] for s in sites}
    history = _fetch(ctx, days[0].start_ns, days[-1].end_ns)  # one read; each day clips it
    for d in days:
        a = _compute(ctx, d.start_ns, min(d.end_ns, ctx.now), history)
        for s in sites:
            row = a.sites.get(s)
            series[s].append([row.figures.uptime_pct if row else None, d.start_ns // MS])
    return [{"target": _name(ctx, s), "datapoints": pts} for s, pts in series.items()]


def availability_sites(ctx, p: dict) -> list[dict]:
    f = ctx.filters(p, ("district",))
    a = _compute(ctx, ctx.start, _end(ctx))
    cols = [("site", "string"), ("commune", "string"), ("district", "string"), ("uptime_pct", "number"),
            ("downtime_min", "number"), ("outages", "number"), ("mttr_min", "number"), ("mtbf_h", "number"),
            ("maintenance_min", "number")]
    rows = []
    for s in sorted(a.sites.values(), key=lambda s: (s.figures.uptime_pct or 0.0, s.site)):
        if s.type not in ("commune", "data_center") or (f["district"] is not None and s.district not in f["district"]):
            continue
        fig = s.figures
        rows.append([s.site, _name(ctx, s.site), _name(ctx, s.district) if s.district else "",
                     fig.uptime_pct, round(fig.downtime_min, 2), fig.outages, fig.mttr_min, fig.mtbf_h,
                     round(fig.maintenance_min, 2)])
    return [_table(cols, rows)]


def availability_outages(ctx, p: dict) -> list[dict]:
    f = ctx.filters(p, ("district",))
    a = _compute(ctx, ctx.start, _end(ctx))
    cols = [("started", "time"), ("resolved", "time"), ("downtime_min", "number"), ("kind", "string"),
            ("title", "string"), ("cause", "string"), ("commune", "string"), ("device", "string"),
            ("unreachable", "number"), ("id", "number")]
    rows = [[o.incident.started_ns // MS, None if o.incident.resolved_ns is None else o.incident.resolved_ns // MS,
             round(o.downtime_ns / 60e9, 2), o.incident.kind, o.incident.title, o.incident.cause,
             _name(ctx, o.incident.site) if o.incident.site in ctx.registry.sites else o.incident.site,
             o.incident.device, o.unreachable, o.incident.id]
            for o in a.outages if o.downtime_ns > 0
            and (f["district"] is None or o.incident.district in f["district"])]
    return [_table(cols, rows)]


def _table(cols, rows) -> dict:
    return {"type": "table", "columns": [{"text": t, "type": ty} for t, ty in cols], "rows": rows}


METRICS = {"availability_total": availability_total, "availability_daily": availability_daily,
           "availability_sites": availability_sites, "availability_outages": availability_outages}
# For the Builder mode catalogue (api/grafana/catalog.py): label, payload names.
CATALOG = {
    "availability_total": ("Khả dụng cả kỳ / Availability over the range", ("site",)),
    "availability_daily": ("Khả dụng theo ngày / Daily availability", ("site",)),
    "availability_sites": ("Khả dụng theo xã / Availability by commune", ("district",)),
    "availability_outages": ("Gián đoạn dài nhất / Longest outages", ("district",)),
}
