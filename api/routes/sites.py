"""Sites: the province's tree (data center, districts, communes) with live status."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from .. import scope
from ..deps import RegistryDep, SnapshotDep, StateDep, Viewer, ViewerScope
from ..errors import responses
from ..models import DeviceSummary, IncidentSummary, SiteDetail, SiteNode

router = APIRouter(prefix="/api/v1/sites", tags=["sites"], responses=responses(401, 403, 422, 503))


def below(view, site_id: str) -> list[str]:
    """The site and every site under it that the view (api.scope.View) holds."""
    out, todo = [], [site_id]
    while todo:
        s = todo.pop()
        out.append(s)
        todo.extend(view.children.get(s, ()))
    return out


def _node(state, view, snap, site_id: str) -> SiteNode:
    s = state.registry.sites[site_id]
    children = [_node(state, view, snap, c) for c in sorted(view.children.get(site_id, ()),
                                                            key=lambda c: state.registry.sites[c].name)]
    own = view.site_devices.get(site_id, [])
    return SiteNode(id=s.id, type=s.type, name=s.name, lat=s.lat, lon=s.lon, status=snap.site[site_id],
                    devices=len(own) + sum(c.devices for c in children),
                    devices_ok=snap.devices_ok(own) + sum(c.devices_ok for c in children),
                    open_incidents=len(snap.site_incidents.get(site_id, [])) + sum(c.open_incidents for c in children),
                    children=children)


@router.get("", response_model=list[SiteNode], summary="The site tree with status / Cây địa bàn",
            description="The province at the root; under it the data center and the districts; under each district "
                        "its communes, wards and towns. Status: ok, degraded (an incident or a device not ok), down "
                        "(uplink or power lost, or every device silent), unknown (never heard from). A scoped key sees the "
                        "sites holding its devices (and shared ones) with their parents; counts and statuses tell "
                        "only of what the key may see.")
def site_tree(key: Viewer, view: ViewerScope, state: StateDep, snap: SnapshotDep) -> list[SiteNode]:
    roots = sorted(s.id for s in state.registry.sites.values() if s.parent is None and scope.site_visible(view, s.id))
    return [_node(state, view, snap, r) for r in roots]


@router.get("/{site_id}", response_model=SiteDetail, responses=responses(404),
            summary="One site: devices, status, open incidents / Chi tiết địa bàn",
            description="For a commune or the data center, its devices; for a district or the province, every device "
                        "and open incident below it too. A site outside the key's scope answers 404, as an unknown one.")
def get_site(key: Viewer, view: ViewerScope, state: StateDep, registry: RegistryDep, snap: SnapshotDep,
             site_id: Annotated[str, Path(description="site id", examples=["y_ty"])]) -> SiteDetail:
    s = scope.site_or_404(registry, view, site_id)
    sites = below(view, site_id)
    devices = sorted(d for sid in sites for d in view.site_devices.get(sid, []))
    incidents = sorted((i for sid in sites for i in snap.site_incidents.get(sid, [])), key=lambda i: i.id)
    district = registry.sites.get(s.district or "")
    return SiteDetail(id=s.id, type=s.type, name=s.name, parent=s.parent, district=s.district,
                      district_name=district.name if district else "", lat=s.lat, lon=s.lon,
                      status=snap.site[site_id], children=sorted(view.children.get(site_id, [])),
                      devices=[DeviceSummary.of(registry, d, snap) for d in devices],
                      open_incidents=[IncidentSummary.of(registry, i) for i in incidents])
