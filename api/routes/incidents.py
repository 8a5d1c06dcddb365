"""Incidents: list with filters, detail (members, events, comments), and the operator's actions.

Actions are recorded under the name of the API key that made them (keys are
per person or per service), in the incident's events.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from analytics.incidents import IncidentStateError

from .. import scope
from ..deps import IncidentsDep, NowDep, Operator, OperatorScope, RegistryDep, Viewer, ViewerScope
from ..errors import ApiError, responses
from ..models import (
    AcknowledgeIn,
    AssignIn,
    CommentIn,
    CommentOut,
    IncidentDetail,
    IncidentEvent,
    IncidentList,
    IncidentSummary,
    Member,
    ResolveIn,
)
from ..params import TIME_HELP, check_district, check_site, parse_time, to_dt

router = APIRouter(prefix="/api/v1/incidents", tags=["incidents"], responses=responses(400, 401, 403, 422, 503))

IncidentId = Annotated[int, Path(ge=1, le=2**53, description="incident id", examples=[7])]
_ACTION_ERRORS = responses(404, 409)
SCOPED_SCAN = 50_000  # a scoped key's list is filtered here, not in SQL: at most this many incidents are read


def _detail(registry, view, incidents, incident_id: int) -> IncidentDetail:
    inc = scope.cut(view, scope.incident_or_404(view, incidents.get(incident_id), incident_id))
    return IncidentDetail(
        **IncidentSummary.of(registry, inc).model_dump(), evidence=inc.evidence,
        members=[Member(device=d, role=r) for d, r in scope.visible_members(view, inc)],
        events=[IncidentEvent(time=to_dt(ts), event=ev, detail=detail)
                for _, ts, ev, detail in incidents.events(incident_id)],
        comments=[CommentOut.of(c) for c in incidents.comments(incident_id)])


def _act(registry, view, incidents, incident_id: int, action) -> IncidentDetail:
    scope.incident_or_404(view, incidents.get(incident_id), incident_id)
    try:
        action()
    except IncidentStateError as exc:
        raise ApiError(409, "conflict", f"{exc}; GET /api/v1/incidents/{incident_id} shows its status",
                       {"incident": incident_id}) from None
    return _detail(registry, view, incidents, incident_id)


@router.get("", response_model=IncidentList, responses=responses(400), summary="List incidents / Danh sách sự cố",
            description="Newest first. `status=active` means open or acknowledged. `since` keeps the incidents "
                        "active at any time since then (still active, or resolved after it). A scoped key sees an "
                        "incident when its device at fault is visible to it, when one of the devices it covers is in "
                        "the scope, or (district and commune scopes) when it sits in the scope.")
def list_incidents(key: Viewer, view: ViewerScope, registry: RegistryDep, incidents: IncidentsDep, now: NowDep,
                   status: Annotated[Literal["open", "acknowledged", "resolved", "active"] | None,
                                     Query(description="lifecycle state; active = open or acknowledged")] = None,
                   kind: Annotated[str | None, Query(max_length=64, description="uplink_down, power_loss, silence, "
                                                     "limit, stuck, ...", examples=["uplink_down"])] = None,
                   severity: Annotated[Literal["info", "warning", "critical"] | None, Query()] = None,
                   site: Annotated[str | None, Query(description="site id", examples=["y_ty"])] = None,
                   district: Annotated[str | None, Query(description="district id", examples=["bat_xat"])] = None,
                   since: Annotated[str | None, Query(description=TIME_HELP, examples=["now-24h"])] = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                   offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> IncidentList:
    check_site(registry, site), check_district(registry, district)
    since_ns = parse_time("since", since, now, None) if since else None
    if view.all:
        found, total = incidents.find(status=status, kind=kind, severity=severity, site=site, district=district,
                                      since_ns=since_ns, limit=limit, offset=offset)
    else:
        every, _ = incidents.find(status=status, kind=kind, severity=severity, site=site, district=district,
                                  since_ns=since_ns, limit=SCOPED_SCAN)
        seen = scope.visible_incidents(view, every)
        found, total = [scope.cut(view, i) for i in seen[offset:offset + limit]], len(seen)
    return IncidentList(items=[IncidentSummary.of(registry, i) for i in found], count=len(found), total=total,
                        limit=limit, offset=offset)


@router.get("/{incident_id}", response_model=IncidentDetail, responses=responses(404),
            summary="One incident with members, events and comments / Chi tiết sự cố",
            description="Members are the devices it covers, with their role (for an uplink or power incident: "
                        "'unreachable (inferred)'); events are its lifecycle, oldest first.")
def get_incident(key: Viewer, view: ViewerScope, registry: RegistryDep, incidents: IncidentsDep,
                 incident_id: IncidentId) -> IncidentDetail:
    return _detail(registry, view, incidents, incident_id)


@router.post("/{incident_id}/acknowledge", response_model=IncidentDetail, responses=_ACTION_ERRORS,
             summary="Acknowledge / Xác nhận sự cố",
             description="Operator, on an incident the key can see (404 otherwise). Only an open incident can be acknowledged (409 otherwise).")
def acknowledge(key: Operator, view: OperatorScope, registry: RegistryDep, incidents: IncidentsDep, now: NowDep,
                incident_id: IncidentId, body: AcknowledgeIn) -> IncidentDetail:
    return _act(registry, view, incidents, incident_id,
                lambda: incidents.acknowledge(incident_id, key.name, now, body.comment))


@router.post("/{incident_id}/assign", response_model=IncidentDetail, responses=_ACTION_ERRORS,
             summary="Assign / Giao xử lý",
             description="Operator, on an incident the key can see (404 otherwise). Hands an open or acknowledged incident to someone (again to reassign); 409 if "
                         "it is resolved.")
def assign(key: Operator, view: OperatorScope, registry: RegistryDep, incidents: IncidentsDep, now: NowDep,
           incident_id: IncidentId, body: AssignIn) -> IncidentDetail:
    return _act(registry, view, incidents, incident_id,
                lambda: incidents.assign(incident_id, body.assignee.strip(), key.name, now))


@router.post("/{incident_id}/resolve", response_model=IncidentDetail, responses=_ACTION_ERRORS,
             summary="Resolve / Đóng sự cố",
             description="Operator, on an incident the key can see (404 otherwise). Resolves by hand; if the detector still sees the condition, its next cycle "
                         "reopens the incident (event 'reopened'). 409 if already resolved.")
def resolve(key: Operator, view: OperatorScope, registry: RegistryDep, incidents: IncidentsDep, now: NowDep,
            incident_id: IncidentId, body: ResolveIn) -> IncidentDetail:
    return _act(registry, view, incidents, incident_id,
                lambda: incidents.resolve(incident_id, key.name, now, body.comment))


@router.post("/{incident_id}/comments", response_model=CommentOut, status_code=201, responses=responses(404),
             summary="Comment / Ghi chú", description="Operator, on an incident the key can see (404 otherwise). Adds a comment under the key's name.")
def add_comment(key: Operator, view: OperatorScope, incidents: IncidentsDep, now: NowDep,
                incident_id: IncidentId, body: CommentIn) -> CommentOut:
    scope.incident_or_404(view, incidents.get(incident_id), incident_id)
    return CommentOut.of(incidents.comment(incident_id, key.name, body.text.strip(), now))
