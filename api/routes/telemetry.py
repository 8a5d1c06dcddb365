"""Telemetry: one series (raw or downsampled, JSON or CSV), and the latest values per device.

A response holds at most MAX_POINTS points.  The bound is checked *before* the
store is asked (from the range and the profile's reporting interval, or the
window), so a year of raw one-second data is refused in microseconds instead
of being read into memory; the message names the smallest window that fits.
"""

from __future__ import annotations

import csv
import io
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Path, Query, Request, Response

from .. import scope
from ..deps import NowDep, RegistryDep, StoreDep, Viewer, ViewerScope
from ..errors import ApiError, bad_parameter, not_found, responses
from ..models import LatestList, LatestReading, Series, SeriesPoint
from ..params import (
    NS,
    TIME_HELP,
    check_district,
    check_kind,
    check_site,
    iso,
    min_window_for,
    parse_range,
    parse_window,
    to_dt,
)

router = APIRouter(prefix="/api/v1/telemetry", tags=["telemetry"], responses=responses(400, 401, 403, 422, 503))

MAX_POINTS = 10_000
LATEST_INTERVALS = 3  # "latest" looks back this many reporting intervals (plus jitter) of each kind

_CSV_EXAMPLE = "time,device,field,value\n2026-11-27T10:00:00Z,yty-router,latency_ms,42.5\n"
StartQ = Annotated[str | None, Query(description=f"range start (default: end - 1 h); {TIME_HELP}",
                                     examples=["2026-11-27T10:00:00Z", "now-6h", "1795687200"])]
EndQ = Annotated[str | None, Query(description=f"range end, exclusive (default: now); {TIME_HELP}",
                                   examples=["2026-11-27T11:00:00Z", "now"])]


@router.get("/latest", response_model=LatestList,
            summary="Latest values per device / Giá trị mới nhất",
            description="Each device's newest value of every field, looking back three reporting intervals of its "
                        "kind. Devices that did not report in that time are left out (see /api/v1/devices for "
                        "their status). A scoped key gets only the devices of its scope and the shared ones.")
def latest(key: Viewer, view: ViewerScope, registry: RegistryDep, store: StoreDep, now: NowDep,
           kind: Annotated[str | None, Query(description="device kind", examples=["commune_router"])] = None,
           site: Annotated[str | None, Query(description="site id (commune or data center)", examples=["y_ty"])] = None,
           district: Annotated[str | None, Query(description="district id", examples=["bat_xat"])] = None,
           ) -> LatestList:
    check_kind(registry, kind), check_site(registry, site), check_district(registry, district)
    items: list[LatestReading] = []
    earliest = now
    for k in sorted([kind] if kind else registry.kinds):
        devices = sorted(d.id for d in registry.devices_of(k) if (site is None or d.site == site)
                         and (district is None or d.district == district) and scope.device_visible(view, d.id))
        if not devices:
            continue
        rep = registry.kinds[k].reporting
        start = now - int(LATEST_INTERVALS * (rep.interval_s + rep.jitter_s) * NS)
        earliest = min(earliest, start)
        items += _latest_of(registry, store.frame(k, start, now, devices), k)
    return LatestList(start=to_dt(earliest), end=to_dt(now), count=len(items), items=items)


def _latest_of(registry, frame, kind: str) -> list[LatestReading]:
    if frame.ts_ns.size == 0:
        return []
    idx = frame.device_idx
    last_row = np.flatnonzero(np.r_[idx[1:] != idx[:-1], True])  # rows are sorted by (device, time)
    values: dict[int, dict[str, float | int]] = {int(idx[r]): {} for r in last_row}
    for name, col in frame.values.items():
        have = np.flatnonzero(~np.isnan(col))
        if have.size == 0:
            continue
        ends = have[np.r_[idx[have][1:] != idx[have][:-1], True]]
        as_int = registry.kinds[kind].fields[name].type != "float"
        for r in ends:
            v = float(col[r])
            values[int(idx[r])][name] = int(v) if as_int else v
    out = []
    for r in last_row:
        dev = registry.devices[frame.devices[int(idx[r])]]
        out.append(LatestReading(device=dev.id, kind=kind, site=dev.site, district=dev.district,
                                 time=to_dt(int(frame.ts_ns[r])), values=values[int(idx[r])]))
    return out


def _too_many(n: int, span_ns: int) -> ApiError:
    w = min_window_for(span_ns, MAX_POINTS)
    return ApiError(413, "too_many_points",
                    f"window: the answer would hold about {n} points, more than {MAX_POINTS}: use a window of at "
                    f"least {w} seconds (window={w}s, with agg=mean|min|max|last|count), or a shorter range",
                    {"parameter": "window", "max_points": MAX_POINTS, "min_window_s": w, "estimated_points": n})


def _check_bound(registry, dev, span_ns: int, window_s: int | None) -> None:
    if window_s is not None:
        n = -(-span_ns // (window_s * NS))
    else:  # raw: what the reporting contract says the device sends in the span
        n = int(span_ns / NS / registry.kinds[dev.kind].reporting.interval_s)
    if n > MAX_POINTS:
        raise _too_many(n, span_ns)


def _wants_csv(request: Request, fmt: str | None) -> bool:
    if fmt is not None:
        return fmt == "csv"
    accept = request.headers.get("accept", "")
    return "text/csv" in accept and "application/json" not in accept


@router.get("/{device}/{field}", response_model=Series,
            responses={200: {"content": {"text/csv": {"schema": {"type": "string"}, "example": _CSV_EXAMPLE}},
                             "description": "the series, as JSON (default) or CSV"}, **responses(404, 413)},
            summary="One series, raw or downsampled / Chuỗi dữ liệu của một thiết bị",
            description=f"Readings of one field of one device in [start, end). Without `window`: raw readings; "
                        f"with `window`: one row per window holding readings, at the window's start, aggregated by "
                        f"`agg` (default mean). At most {MAX_POINTS} points: a larger answer is refused with 413 "
                        f"naming the smallest window that fits. CSV with `format=csv` or `Accept: text/csv`. A device "
                        f"outside the key's scope answers 404, exactly as an unknown device.")
def series(key: Viewer, view: ViewerScope, registry: RegistryDep, store: StoreDep, now: NowDep, request: Request,
           device: Annotated[str, Path(description="device id", examples=["yty-router"])],
           field: Annotated[str, Path(description="a field of the device's kind", examples=["latency_ms"])],
           start: StartQ = None, end: EndQ = None,
           window: Annotated[str | None, Query(description="downsample to windows: seconds or 30s, 5m, 1h, 1d",
                                               examples=["5m"])] = None,
           agg: Annotated[Literal["mean", "min", "max", "last", "count"] | None,
                          Query(description="aggregate per window (needs window; default mean)")] = None,
           format: Annotated[Literal["json", "csv"] | None, Query(description="json (default) or csv")] = None,
           ) -> Series | Response:
    dev = scope.device_or_404(registry, view, device)
    spec = registry.kinds[dev.kind].fields.get(field)
    if spec is None:
        raise not_found("field", field, f"device {device} ({dev.kind}) has the fields "
                                        f"{', '.join(registry.kinds[dev.kind].fields)}")
    start_ns, end_ns = parse_range(start, end, now)
    window_s = parse_window(window)
    if agg is not None and window_s is None:
        raise bad_parameter("agg", f"agg={agg} needs a window: add window=5m (or leave agg out for raw readings)")
    if window_s is not None and agg is None:
        agg = "mean"
    _check_bound(registry, dev, end_ns - start_ns, window_s)
    rows = store.query(device, field, start_ns, end_ns, window_s, agg)
    if len(rows) > MAX_POINTS:  # the device sent more often than its contract says
        raise _too_many(len(rows), end_ns - start_ns)
    if _wants_csv(request, format):
        return _csv(device, field, rows)
    return Series(device=device, kind=dev.kind, field=field, unit=spec.unit, site=dev.site, district=dev.district,
                  start=to_dt(start_ns), end=to_dt(end_ns), window_s=window_s, agg=agg, count=len(rows),
                  points=[SeriesPoint(time=to_dt(t), value=v) for t, v in rows])


def _csv(device: str, field: str, rows) -> Response:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["time", "device", "field", "value"])
    w.writerows((iso(t), device, field, v) for t, v in rows)
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{device}_{field}.csv"'})
