"""``POST /query`` (panels and annotations) and the older ``POST /annotations``.

Every metric of docs/grafana-datasource.md is one function ``(ctx, payload) -> list``
returning time series ``{"target", "datapoints": [[value, ms], ...]}`` or tables
``{"type": "table", "columns": [...], "rows": [...]}``.  Payload values are checked
against the registry before any store is asked, and against the caller's scope (api.scope):
a scoped key's panels hold only the devices, sites and incidents it can see.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from analytics.incidents import SEVERITIES, Incident

from .. import scope
from ..errors import ApiError, bad_parameter
from ..params import NS, parse_time
from . import availability, catalog
from .models import AnnotationsIn, QueryIn, one, payload_dict, values

MS = 1_000_000
MAX_SERIES = 50  # series per telemetry target: beyond that a panel is unreadable and slow
MAX_POINTS = 10_000  # per series, as for the REST telemetry route
MAX_STEPS = 10_000
_SITE_CODE = {"ok": 0, "degraded": 1, "down": 2, "unknown": 3}
_DEVICE_CODE = {"ok": 0, "silent": 1, "unreachable (inferred)": 2, "unknown": 3}


class Ctx:
    """One /query request: the range, the step rules, the ad hoc filters, a lazily taken live snapshot."""

    def __init__(self, state, now: int, start: int, end: int, interval_ms: float | None = None,
                 max_points: int | None = None, adhoc: dict[str, list[str]] | None = None, view=None):
        self.state, self.registry, self.now = state, state.registry, now
        self.view = view if view is not None else state.scopes.view(None)
        self.start, self.end = start, end
        self.interval_ms = interval_ms or 0
        self.max_points = max_points or 1000
        self.adhoc = adhoc or {}
        self._snap = None
        self.series: dict[tuple[str, str, str, int], list] = {}  # (device, field, agg, window_s) -> rows, prefetched

    @classmethod
    def of(cls, state, now: int, body: QueryIn, view=None) -> Ctx:
        start, end = _range(body.range, now)
        adhoc: dict[str, list[str]] = {}
        for i, f in enumerate(body.adhocFilters):
            if f.operator != "=" or f.key not in catalog.TAG_KEYS:
                raise bad_parameter(f"adhocFilters[{i}]", f"{f.key} {f.operator} {f.value!r}: only '=' on "
                                                          f"{', '.join(catalog.TAG_KEYS)} is supported")
            adhoc.setdefault(f.key, []).append(f.value)
        return cls(state, now, start, end, body.intervalMs, body.maxDataPoints, adhoc, view)

    def snap(self):
        if self._snap is None:
            self._snap = scope.restrict(self.view, self.state.live.snapshot(self.state.store, self.state.incidents,
                                                                            self.now))
        return self._snap

    def step_ns(self, floor_s: float = 1.0) -> int:
        span_s = (self.end - self.start) / NS
        step_s = max(self.interval_ms / 1000, span_s / self.max_points, span_s / MAX_STEPS, floor_s)
        return math.ceil(step_s) * NS

    def filters(self, payload: dict[str, Any], keys, metric: str = "") -> dict[str, list[str] | None]:
        out = {}
        for key in keys:
            vals = values(payload, key)
            extra = self.adhoc.get(key)
            if extra is not None:
                vals = extra if vals is None else [v for v in vals if v in extra]
            out[key] = catalog.check(self.registry, key, vals, metric, self.view)
        return out


def _range(rng, now: int) -> tuple[int, int]:
    start = parse_time("range.from", rng.from_, now, now)
    end = parse_time("range.to", rng.to, now, now)
    if start >= end:
        raise bad_parameter("range.from", "range.from must be before range.to")
    return start, end


def _keep(inc: Incident, f: dict) -> bool:
    return all(f.get(k) is None or getattr(inc, k) in f[k] for k in ("district", "site", "severity", "kind"))


def _telemetry_plan(ctx: Ctx, p: dict) -> tuple[str, str, str, int, list[str]]:
    """(kind, field, agg, window_s, devices) of a telemetry target, every value checked."""
    reg = ctx.registry
    kind = one(p, "kind")
    if kind is None:
        raise bad_parameter("payload.kind", "telemetry needs a kind, e.g. commune_router")
    catalog.check(reg, "kind", [kind])
    field = one(p, "field")
    if field not in reg.kinds[kind].fields:
        raise bad_parameter("payload.field", f"{field!r} is not a field of {kind}; its fields: "
                                             f"{', '.join(reg.kinds[kind].fields)}")
    agg = catalog.check(reg, "agg", [one(p, "agg", "mean")])[0]
    f = ctx.filters(p, ("device", "site", "district"))
    devs = sorted(d.id for d in reg.devices_of(kind) if (f["device"] is None or d.id in f["device"])
                  and (f["site"] is None or d.site in f["site"]) and (f["district"] is None or d.district in f["district"])
                  and scope.device_visible(ctx.view, d.id))
    if len(devs) > MAX_SERIES:
        raise bad_parameter("payload.device", f"{len(devs)} {kind} devices match, more than {MAX_SERIES} series: "
                                              "narrow with device, site or district")
    span_s = (ctx.end - ctx.start) / NS
    floor = max(reg.kinds[kind].reporting.interval_s, span_s / MAX_POINTS)
    return kind, field, agg, ctx.step_ns(floor) // NS, devs


def prefetch_telemetry(ctx: Ctx, payloads: list) -> None:
    """Ask the store once per (kind, field, agg, window) for every series the telemetry targets name.

    A Grafana panel sends one target per series; a store that can answer many
    series in one request (``query_many``) is then asked once, not once per target.
    Targets with a bad payload are left to :func:`telemetry`, which names the fault.
    """
    wanted: dict[tuple[str, str, str, int], set[str]] = {}
    for p in payloads:
        try:
            kind, field, agg, window_s, devs = _telemetry_plan(ctx, payload_dict(p, "payload"))
        except ApiError:
            continue
        wanted.setdefault((kind, field, agg, window_s), set()).update(devs)
    store = ctx.state.store
    if not hasattr(store, "query_many"):
        return
    for (_kind, field, agg, window_s), devs in wanted.items():
        if len(devs) > 1:
            found = store.query_many(sorted(devs), field, ctx.start, ctx.end, window_s, agg)
            ctx.series.update({(d, field, agg, window_s): rows for d, rows in found.items()})


def telemetry(ctx: Ctx, p: dict) -> list[dict]:
    _kind, field, agg, window_s, devs = _telemetry_plan(ctx, p)
    store, out = ctx.state.store, []
    for dev in devs:
        rows = ctx.series.get((dev, field, agg, window_s))
        if rows is None:
            rows = store.query(dev, field, ctx.start, ctx.end, window_s, agg)
        out.append({"target": f"{dev} {field}", "datapoints": [(v, t // MS) for t, v in rows]})  # tuples: cheaper
    return out


def incidents_open(ctx: Ctx, p: dict) -> list[dict]:
    f = ctx.filters(p, ("district", "site", "severity", "kind"))
    reg = ctx.registry
    incs = sorted((i for i in ctx.snap().open if _keep(i, f)),
                  key=lambda i: (-SEVERITIES.index(i.severity), i.started_ns, i.id))
    cols = [("id", "number"), ("started", "time"), ("severity", "string"), ("status", "string"), ("kind", "string"),
            ("title", "string"), ("commune", "string"), ("district", "string"), ("site", "string"),
            ("device", "string"), ("unreachable", "number"), ("assignee", "string"), ("acknowledged_by", "string")]
    rows = [[i.id, i.started_ns // MS, i.severity, i.status, i.kind, i.title, _name(reg, i.site),
             _name(reg, i.district), i.site, i.device, sum(1 for _, r in i.members if r == "unreachable (inferred)"),
             i.assignee or "", i.acknowledged_by or ""] for i in incs]
    return [_table(cols, rows)]


def _overlapping(ctx: Ctx, f: dict) -> list[Incident]:
    found, _ = ctx.state.incidents.find(since_ns=ctx.start, limit=50_000)
    return [i for i in found if i.started_ns < ctx.end and _keep(i, f) and scope.incident_visible(ctx.view, i)]


def incidents_timeline(ctx: Ctx, p: dict) -> list[dict]:
    incs = _overlapping(ctx, ctx.filters(p, ("district", "site", "kind")))
    step = ctx.step_ns()
    times = ctx.start + step * np.arange(max(1, -(-(ctx.end - ctx.start) // step)), dtype=np.int64)
    out = []
    for sev in reversed(SEVERITIES):
        starts = np.sort(np.array([i.started_ns for i in incs if i.severity == sev], dtype=np.int64))
        ends = np.sort(np.array([i.resolved_ns if i.resolved_ns is not None else np.iinfo(np.int64).max
                                 for i in incs if i.severity == sev], dtype=np.int64))
        counts = np.searchsorted(starts, times, "right") - np.searchsorted(ends, times, "right")
        out.append({"target": sev, "datapoints": [[int(c), int(t) // MS] for c, t in zip(counts, times)]})
    return out


def site_status(ctx: Ctx, p: dict) -> list[dict]:
    f = ctx.filters(p, ("district", "status"), "site_status")
    snap, reg, view = ctx.snap(), ctx.registry, ctx.view
    cols = [("site", "string"), ("commune", "string"), ("district", "string"), ("district_id", "string"),
            ("status", "string"), ("status_code", "number"), ("lat", "number"), ("lon", "number"),
            ("open_incidents", "number"), ("devices", "number"), ("devices_ok", "number")]
    rows = []
    for s in sorted(reg.sites.values(), key=lambda s: (s.district or "", s.name)):
        devs = view.site_devices.get(s.id)
        if not devs:  # no device, or none the key may see
            continue
        status = snap.site[s.id]
        if (f["district"] and s.district not in f["district"]) or (f["status"] and status not in f["status"]):
            continue
        rows.append([s.id, s.name, _name(reg, s.district), s.district or "", status, _SITE_CODE[status], s.lat, s.lon,
                     len(snap.site_incidents.get(s.id, [])), len(devs), snap.devices_ok(devs)])
    return [_table(cols, rows)]


def device_status(ctx: Ctx, p: dict) -> list[dict]:
    f = ctx.filters(p, ("district", "site", "kind", "status"), "device_status")
    snap, reg = ctx.snap(), ctx.registry
    cols = [("device", "string"), ("kind", "string"), ("commune", "string"), ("site", "string"),
            ("district", "string"), ("status", "string"), ("status_code", "number"), ("last_seen", "time"),
            ("uplink", "string"), ("power", "string"), ("open_incidents", "number")]
    rows = []
    for d in sorted(reg.devices.values(), key=lambda d: d.id):
        if not scope.device_visible(ctx.view, d.id):
            continue
        status = snap.device[d.id]
        if any(f[k] and v not in f[k] for k, v in (("district", d.district), ("site", d.site), ("kind", d.kind),
                                                    ("status", status))):
            continue
        seen = snap.last_seen.get(d.id)
        rows.append([d.id, d.kind, _name(reg, d.site), d.site, _name(reg, d.district), status, _DEVICE_CODE[status],
                     None if seen is None else seen // MS, d.uplink or "", d.power or "",
                     len(snap.device_incidents.get(d.id, []))])
    return [_table(cols, rows)]


def quarantine_rate(ctx: Ctx, p: dict) -> list[dict]:
    reasons = ctx.filters(p, ("reason",))["reason"]
    # NotImplementedError (VictoriaMetrics keeps no quarantine) becomes 501 not_supported in api.errors
    rows = [r for r in ctx.state.store.quarantined(ctx.start, ctx.end, MAX_POINTS) if scope.rejected_visible(ctx.view, r)]
    step = ctx.step_ns(60.0)
    n = max(1, -(-(ctx.end - ctx.start) // step))
    times = ctx.start + step * np.arange(n, dtype=np.int64)
    out = []
    for reason in sorted(set(r.reason for r in rows) if reasons is None else reasons):
        arrived = np.array([r.arrived_ns for r in rows if r.reason == reason], dtype=np.int64)
        counts = np.bincount((arrived - ctx.start) // step, minlength=n)[:n]
        out.append({"target": reason, "datapoints": [[int(c), int(t) // MS] for c, t in zip(counts, times)]})
    return out


def incidents_annotations(ctx: Ctx, p: dict) -> list[dict]:
    cols = [("time", "time"), ("timeEnd", "time"), ("title", "string"), ("text", "string"), ("tags", "string")]
    rows = [[a["time"], a["timeEnd"], a["title"], a["text"], ",".join(a["tags"])] for a in _annotations(ctx, p)]
    return [_table(cols, rows)]


def _annotations(ctx: Ctx, p: dict) -> list[dict]:
    out = []
    for i in _overlapping(ctx, ctx.filters(p, ("district", "site", "severity", "kind"))):
        end = i.resolved_ns if i.resolved_ns is not None else ctx.now
        out.append({"time": i.started_ns // MS, "timeEnd": max(end, i.started_ns) // MS, "title": i.title,
                    "text": f"{i.cause} [{i.status}; #{i.id}; {i.device or i.site}]",
                    "tags": [i.kind, i.severity, i.district or "", i.site, i.status]})
    return out


METRICS = {"telemetry": telemetry, "incidents_open": incidents_open, "incidents_timeline": incidents_timeline,
           "site_status": site_status, "device_status": device_status, "quarantine_rate": quarantine_rate,
           "incidents_annotations": incidents_annotations}
METRICS.update(availability.METRICS)  # the availability board's metrics (api/grafana/availability.py)


def run(state, now: int, body: QueryIn, view=None) -> list[dict]:
    ctx = Ctx.of(state, now, body, view)
    prefetch_telemetry(ctx, [t.payload for t in body.targets if t.target == "telemetry" and not t.hide])
    out: list[dict] = []
    for i, t in enumerate(body.targets):
        if t.hide or not t.target:
            continue
        fn = METRICS.get(t.target)
        if fn is None:
            raise bad_parameter(f"targets[{i}].target", f"unknown metric {t.target!r}; known: {', '.join(METRICS)}")
        out += fn(ctx, payload_dict(t.payload, f"targets[{i}].payload"))
    return out


def simplejson_annotations(state, now: int, body: AnnotationsIn, view=None) -> list[dict]:
    start, end = _range(body.range, now)
    query = body.annotation.get("query") if isinstance(body.annotation, dict) else None
    payload = payload_dict(query if isinstance(query, (str, dict)) else None, "annotation.query")
    ctx = Ctx(state, now, start, end, view=view)
    return [{"annotation": body.annotation, "isRegion": True, **a} for a in _annotations(ctx, payload)]


def _table(cols, rows) -> dict:
    return {"type": "table", "columns": [{"text": t, "type": ty} for t, ty in cols], "rows": rows}


def _name(reg, site_id: str | None) -> str:
    s = reg.sites.get(site_id or "")
    return s.name if s else ""
