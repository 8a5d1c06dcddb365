"""Availability (uptime %, downtime, outages, MTTR, MTBF), the longest outages, the monthly report,
and planned maintenance windows.

Definitions: analytics/availability.py and docs/availability.md.  Periods are local
days, ISO weeks and months of Asia/Ho_Chi_Minh.  Figures and windows are
province-wide: a key with an agency, district or commune scope is refused (403)
rather than shown communes outside its scope.
"""

from __future__ import annotations

import threading
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from analytics import availability, periods
from analytics.maintenance import MaintenanceError, MaintenanceStore

from ..availability_models import (
    AvailabilityOut,
    MaintenanceIn,
    MaintenanceList,
    MaintenanceOut,
    OutageList,
    OutageOut,
    PeriodOut,
    rows,
)
from ..deps import IncidentsDep, NowDep, Operator, RegistryDep, StateDep, Viewer
from ..errors import ApiError, bad_parameter, not_found, responses
from ..params import TIME_HELP, check_district, check_site, parse_time

_OPEN_LOCK = threading.Lock()
router = APIRouter(tags=["availability"], responses=responses(400, 401, 403, 422, 503))

PeriodKind = Annotated[Literal["day", "week", "month"], Query(description="a local day, ISO week or month")]
At = Annotated[str | None, Query(max_length=16, description="2026-10-05 (day; or any day of the week), 2026-W41 "
                                                            "(week), 2026-10 (month); default: the current one",
                                 examples=["2026-10"])]


def maintenance_store(state) -> MaintenanceStore:
    """One MaintenanceStore per app (on its AppState), on the incidents database's file, closed with the app."""
    with _OPEN_LOCK:  # request threads: open it once
        store = getattr(state, "maintenance", None)
        if store is None:
            store = MaintenanceStore(state.incidents.path)
            state.maintenance = store
            state.owned.append(store)
    return store


def _maintenance(state: StateDep) -> MaintenanceStore:
    return maintenance_store(state)


MaintenanceDep = Annotated[MaintenanceStore, Depends(_maintenance)]


def _province_wide(key) -> None:
    if getattr(key, "scope", None):
        raise ApiError(403, "forbidden", f"availability figures are province-wide, and this key is limited to "
                                         f"{key.scope}: use a province-wide key", {"scope": key.scope})


def _period(kind: str, at: str | None, now: int) -> periods.Period:
    if at is None:
        today = periods.local_date(now)
        at = today.strftime("%Y-%m") if kind == "month" else today.isoformat()
    try:
        return periods.parse(kind, at)
    except periods.PeriodError as exc:
        raise bad_parameter("at", str(exc)) from None


def _compute(registry, incidents, maintenance, period: periods.Period, now: int):
    try:
        return availability.load(registry, incidents, maintenance, period, now)
    except ValueError as exc:  # a period that has not started
        raise bad_parameter("at", f"{exc}; ask for a period up to today") from None


@router.get("/api/v1/availability", response_model=AvailabilityOut,
            summary="Availability / Tỷ lệ sẵn sàng",
            description="Uptime %, downtime, outages, MTTR and MTBF over a local day, week or month, per commune "
                        "and data center (`level=site`), district, the province, or device. Planned maintenance is "
                        "excluded; an outage behind a cut uplink or a lost power feed counts against that parent. "
                        "`order=worst` puts the lowest uptime first. See docs/availability.md.")
def get_availability(key: Viewer, registry: RegistryDep, incidents: IncidentsDep, maintenance: MaintenanceDep,
                     now: NowDep, period: PeriodKind = "month", at: At = None,
                     level: Annotated[Literal["site", "district", "province", "device"], Query()] = "site",
                     district: Annotated[str | None, Query(max_length=64, examples=["bat_xat"])] = None,
                     site: Annotated[str | None, Query(max_length=64, examples=["y_ty"])] = None,
                     order: Annotated[Literal["id", "worst"], Query()] = "id") -> AvailabilityOut:
    _province_wide(key)
    check_district(registry, district), check_site(registry, site)
    a = _compute(registry, incidents, maintenance, _period(period, at, now), now)
    out = rows(registry, a, level, district, site)
    out.sort(key=(lambda r: (100.0 if r.uptime_pct is None else r.uptime_pct, -r.downtime_min, r.id))
             if order == "worst" else (lambda r: r.id))
    return AvailabilityOut(period=PeriodOut.of(a), level=level, rows=out, unknown_devices=a.unknown_devices)


@router.get("/api/v1/availability/outages", response_model=OutageList,
            summary="Longest outages and their causes / Sự cố gián đoạn dài nhất",
            description="The outage incidents of the period, longest downtime (inside the period, after planned "
                        "maintenance) first, with their cause and the devices they made unreachable.")
def get_outages(key: Viewer, registry: RegistryDep, incidents: IncidentsDep, maintenance: MaintenanceDep,
                now: NowDep, period: PeriodKind = "month", at: At = None,
                district: Annotated[str | None, Query(max_length=64)] = None,
                site: Annotated[str | None, Query(max_length=64)] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 20) -> OutageList:
    _province_wide(key)
    check_district(registry, district), check_site(registry, site)
    a = _compute(registry, incidents, maintenance, _period(period, at, now), now)
    found = [o for o in a.outages if (not district or o.incident.district == district)
             and (not site or o.incident.site == site)]
    return OutageList(period=PeriodOut.of(a), items=[OutageOut.of(registry, o) for o in found[:limit]],
                      total=len(found))


@router.get("/api/v1/availability/report", summary="Monthly report / Báo cáo tháng",
            response_class=Response, responses={**responses(501), 200: {"content": {
                "text/csv": {"example": "Cấp / Level,Mã / Id,Tên / Name,...\r\ncommune,y_ty,Xã Y Tý,..."},
                "text/html": {"example": "<!DOCTYPE html>..."}, "application/pdf": {"example": "%PDF-1.4 ..."}},
                "description": "the report file"}},
            description="The leadership's monthly report in Vietnamese and English: CSV (every commune, district, "
                        "the data center and the province), or printable HTML / PDF with charts (availability by "
                        "district, worst communes, longest outages and their causes). PDF needs chromium on the "
                        "API's machine (501 otherwise). Same as `fansipan report`.")
def get_report(key: Viewer, registry: RegistryDep, incidents: IncidentsDep, maintenance: MaintenanceDep,
               now: NowDep, month: Annotated[str | None, Query(max_length=7, description="YYYY-MM, local; "
                                                               "default: this month so far", examples=["2026-10"])] = None,
               format: Annotated[Literal["csv", "html", "pdf"], Query()] = "html") -> Response:
    import reports
    from reports import monthly
    from reports.pdf import PdfError

    _province_wide(key)
    month = month or periods.local_date(now).strftime("%Y-%m")
    try:
        content = monthly.build(registry, incidents, maintenance, month, now)
    except periods.PeriodError as exc:
        raise bad_parameter("month", str(exc)) from None
    except ValueError as exc:
        raise bad_parameter("month", f"{exc}; ask for this month or an earlier one") from None
    try:
        body = reports.render(content, format)
    except PdfError as exc:
        raise ApiError(501, "not_supported", f"{exc}", {"format": format}) from None
    name = f"fansipan-availability-{content.period.label}.{format}"
    return Response(body, media_type=reports.MEDIA_TYPES[format],
                    headers={"Content-Disposition": f'{"inline" if format == "html" else "attachment"}; '
                                                    f'filename="{name}"'})


# ---------------------------------------------------------------- maintenance windows

WindowId = Annotated[int, Path(ge=1, le=2**53, description="maintenance window id")]


@router.get("/api/v1/maintenance", response_model=MaintenanceList,
            summary="Maintenance windows / Lịch bảo trì",
            description="Windows with any part between `start` (default now-31d) and `end` (default now+31d).")
def list_windows(key: Viewer, maintenance: MaintenanceDep, now: NowDep,
                 start: Annotated[str | None, Query(description=TIME_HELP)] = None,
                 end: Annotated[str | None, Query(description=TIME_HELP)] = None) -> MaintenanceList:
    _province_wide(key)
    month = 31 * 86_400 * periods.NS
    lo, hi = parse_time("start", start, now, now - month), parse_time("end", end, now, now + month)
    if hi <= lo:
        raise bad_parameter("end", "end must be after start")
    return MaintenanceList(items=[MaintenanceOut.of(w) for w in maintenance.overlapping(lo, hi)])


@router.post("/api/v1/maintenance", response_model=MaintenanceOut, status_code=201,
             summary="Declare planned maintenance / Khai báo bảo trì",
             description="Operator. A site (covering its devices and the sites under it) or one device, start, end "
                         "(at most 31 days later) and the reason; that time is left out of availability.")
def add_window(key: Operator, registry: RegistryDep, maintenance: MaintenanceDep, now: NowDep,
               body: MaintenanceIn) -> MaintenanceOut:
    _province_wide(key)
    start = parse_time("start", body.start, now, now)
    end = parse_time("end", body.end, now, now)
    try:
        w = maintenance.add(registry, site=body.site, device=body.device, start_ns=start, end_ns=end,
                            reason=body.reason, created_by=key.name, now_ns=now)
    except MaintenanceError as exc:
        name = str(exc).split(":", 1)[0]
        raise bad_parameter(name, str(exc).split(": ", 1)[1]) from None
    return MaintenanceOut.of(w)


@router.delete("/api/v1/maintenance/{window_id}", response_model=MaintenanceOut, responses=responses(404),
               summary="Cancel maintenance / Hủy lịch bảo trì",
               description="Operator. Deletes the window (its time counts as scheduled again) and returns it.")
def delete_window(key: Operator, maintenance: MaintenanceDep, window_id: WindowId) -> MaintenanceOut:
    _province_wide(key)
    window = maintenance.get(window_id)
    if window is None or not maintenance.delete(window_id):
        raise not_found("maintenance window", window_id, "GET /api/v1/maintenance lists them")
    return MaintenanceOut.of(window)
