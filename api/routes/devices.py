"""Devices: the registry's devices with their profile, dependencies and live status."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query

from .. import scope
from ..deps import RegistryDep, SnapshotDep, Viewer, ViewerScope
from ..errors import responses
from ..models import DeviceDetail, DeviceSummary, FieldInfo, Reporting
from ..params import check_district, check_kind, check_site

router = APIRouter(prefix="/api/v1/devices", tags=["devices"], responses=responses(401, 403, 422, 503))

DeviceStatus = Literal["ok", "silent", "unreachable (inferred)", "unknown"]


@router.get("", response_model=list[DeviceSummary], responses=responses(400),
            summary="List devices with live status / Danh sách thiết bị",
            description="Every device of the site registry, sorted by id, with its live status: ok, silent (missed "
                        "its reporting contract), unreachable (inferred) (its uplink or power feed is down), unknown "
                        "(never heard from). A scoped key lists only the devices of its scope and the shared ones.")
def list_devices(key: Viewer, view: ViewerScope, registry: RegistryDep, snap: SnapshotDep,
                 kind: Annotated[str | None, Query(description="device kind", examples=["ip_loudspeaker"])] = None,
                 site: Annotated[str | None, Query(description="site id", examples=["y_ty"])] = None,
                 district: Annotated[str | None, Query(description="district id", examples=["bat_xat"])] = None,
                 status: Annotated[DeviceStatus | None, Query(description="live status")] = None,
                 ) -> list[DeviceSummary]:
    check_kind(registry, kind), check_site(registry, site), check_district(registry, district)
    out = []
    for d in sorted(registry.devices.values(), key=lambda d: d.id):
        if (kind and d.kind != kind) or (site and d.site != site) or (district and d.district != district):
            continue
        if not scope.device_visible(view, d.id):
            continue
        if status and snap.device[d.id] != status:
            continue
        out.append(DeviceSummary.of(registry, d.id, snap))
    return out


@router.get("/{device_id}", response_model=DeviceDetail, responses=responses(404),
            summary="One device: profile, dependencies, live status / Chi tiết thiết bị",
            description="The device's fields with units, valid ranges and alarm marks, its reporting contract, "
                        "what it depends on (uplink, power feed) and what depends on it, its last report and status. "
                        "A device outside the key's scope answers 404, as an unknown one; dependencies outside it "
                        "are left out.")
def get_device(key: Viewer, view: ViewerScope, registry: RegistryDep, snap: SnapshotDep,
               device_id: Annotated[str, Path(description="device id", examples=["yty-router"])]) -> DeviceDetail:
    dev = scope.device_or_404(registry, view, device_id)
    profile = registry.kinds[dev.kind]
    fields = [FieldInfo(name=n, type=f.type, unit=f.unit, min=f.min, max=f.max, description=f.description,
                        limits=f.limits.model_dump(exclude_none=True) if f.limits else None)
              for n, f in profile.fields.items()]
    dc = profile.reporting.duty_cycle
    reporting = Reporting(interval_s=profile.reporting.interval_s, jitter_s=profile.reporting.jitter_s,
                          duty_cycle=[{"start": w.start.strftime("%H:%M"), "end": w.end.strftime("%H:%M")}
                                      for w in dc.windows] if dc else None)
    summary = DeviceSummary.of(registry, dev.id, snap)
    return DeviceDetail(**summary.model_dump(), fields=fields, reporting=reporting,
                        depends_on=[d for d in registry.ancestors(dev.id) if scope.device_visible(view, d)],
                        dependants=sorted(d.id for d in registry.children(dev.id) if scope.device_visible(view, d.id)))
