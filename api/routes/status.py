"""GET /status: a small read-only status page, Vietnamese with English alongside, no JavaScript.

Communes by status (a grid grouped by district), the open incidents, and the
last hour of two key signals as server-rendered SVG sparklines.  It refreshes
itself every 30 s (a meta refresh), so it can run on a wall screen.  Public only
with FANSIPAN_STATUS_PUBLIC=1; otherwise it needs a viewer key like every route.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from analytics.incidents import SEVERITIES

from .. import scope
from ..deps import NowDep, StateDep, StatusReader, StatusScope, StatusSnapshotDep
from ..errors import responses
from ..sparklines import sparklines

router = APIRouter(tags=["status"])
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent.parent / "templates"))
LOCAL = timezone(timedelta(hours=7))  # Asia/Ho_Chi_Minh: no daylight saving since 1975
NS = 1_000_000_000

SITE_LABELS = {"ok": ("Bình thường", "OK"), "degraded": ("Suy giảm", "Degraded"),
               "down": ("Mất kết nối", "Down"), "unknown": ("Chưa rõ", "Unknown")}
SEVERITY_LABELS = {"critical": ("Nghiêm trọng", "Critical"), "warning": ("Cảnh báo", "Warning"),
                   "info": ("Thông tin", "Info")}
SIGNALS = (  # (kind, field, Vietnamese, English, unit)
    ("commune_router", "latency_ms", "Độ trễ đường truyền xã", "Commune uplink latency", "ms"),
    ("server", "inlet_temp_c", "Nhiệt độ gió vào máy chủ", "Server inlet temperature", "°C"),
)


def _local(ns: int) -> str:
    return datetime.fromtimestamp(ns / NS, LOCAL).strftime("%H:%M %d/%m")


def _groups(state, view, snap) -> list[dict]:
    reg = state.registry
    groups = []
    dcs = [s for s in reg.sites.values() if s.type == "data_center" and scope.site_visible(view, s.id)]
    if dcs:
        groups.append({"name": "Trung tâm dữ liệu / Data center", "sites": dcs})
    for d in sorted((s for s in reg.sites.values() if s.type == "district"), key=lambda s: s.name):
        communes = sorted((s for s in reg.sites.values() if s.type == "commune" and s.district == d.id
                           and scope.site_visible(view, s.id)), key=lambda s: s.name)
        if communes:
            groups.append({"name": d.name, "sites": communes})
    return [{"name": g["name"], "sites": [{"id": s.id, "name": s.name, "status": snap.site[s.id],
                                           "label": SITE_LABELS[snap.site[s.id]]} for s in g["sites"]]}
            for g in groups]


@router.get("/status", response_class=HTMLResponse,
            responses={200: {"content": {"text/html": {"example": "<!doctype html><html lang=\"vi\">...<h2>Xã theo "
                                                                  "trạng thái / Communes by status</h2>..."}},
                             "description": "the page"}, **responses(401, 403, 503, html_route=True)},
            summary="Status page / Trang trạng thái",
            description="Server-rendered HTML, Vietnamese with English alongside: communes by status, open "
                        "incidents, the last hour of key signals. Needs a viewer key unless FANSIPAN_STATUS_PUBLIC=1 "
                        "(then it shows the whole province); a scoped key sees its scope and the shared data.")
def status_page(key: StatusReader, view: StatusScope, request: Request, state: StateDep, snap: StatusSnapshotDep,
                now: NowDep) -> HTMLResponse:
    reg = state.registry
    incidents = sorted(snap.open, key=lambda i: (-SEVERITIES.index(i.severity), i.started_ns))
    site_name = {s.id: s.name for s in reg.sites.values()}
    signals = []
    for kind, field, vi, en, unit in SIGNALS:
        seen = any(scope.device_visible(view, d.id) for d in reg.devices_of(kind))  # else no store query at all
        lines = [replace(s, site=site_name.get(s.site, s.site)) for s in
                 (sparklines(reg, state.store, kind, field, now) if seen else []) if scope.device_visible(view, s.device)]
        signals.append({"vi": vi, "en": en, "unit": unit, "lines": sorted(lines, key=lambda s: s.site)})
    counts = {k: sum(1 for s in reg.sites.values() if s.type in ("commune", "data_center")
                     and scope.site_visible(view, s.id) and snap.site[s.id] == k) for k in SITE_LABELS}
    context = {"groups": _groups(state, view, snap), "counts": counts, "labels": SITE_LABELS,
               "incidents": [{"title": i.title, "severity": i.severity, "label": SEVERITY_LABELS[i.severity],
                              "site": site_name.get(i.site, i.site), "since": _local(i.started_ns),
                              "status": i.status, "unreachable": sum(1 for _, r in scope.visible_members(view, i)
                                                                     if r == "unreachable (inferred)")}
                             for i in incidents],
               "signals": signals, "updated": _local(now)}
    return templates.TemplateResponse(request, "status.html", context)
