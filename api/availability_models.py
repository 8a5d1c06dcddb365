"""Input and output models of the availability, outage, report and maintenance routes.

Built from analytics.availability's objects by the ``of`` class methods; inputs
refuse unknown keys, as in api/models.py.  Figures are rounded for people
(uptime to 4 decimals, minutes to 2): the raw nanoseconds are not an API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from analytics.availability import Availability, Figures, Outage
from analytics.maintenance import Window
from analytics.periods import TZ
from device_profiles import Registry

from .params import to_dt

LEVELS = ("site", "district", "province", "device")


def _ex(example: dict, **extra) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]}, **extra)


def _r(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


class PeriodOut(BaseModel):
    model_config = _ex({"kind": "month", "label": "2026-10", "start": "2026-09-30T17:00:00Z",
                        "end": "2026-10-31T17:00:00Z", "until": "2026-10-31T17:00:00Z", "timezone": "Asia/Ho_Chi_Minh"})
    kind: Literal["day", "week", "month", "range"]
    label: str = Field(description="2026-10-05, 2026-W41 or 2026-10 (local dates, Asia/Ho_Chi_Minh)")
    start: datetime
    end: datetime = Field(description="exclusive")
    until: datetime = Field(description="measured up to here: the end, or now for a period still running")
    timezone: str = str(TZ)

    @classmethod
    def of(cls, a: Availability) -> PeriodOut:
        p = a.period
        return cls(kind=p.kind, label=p.label, start=to_dt(p.start_ns), end=to_dt(p.end_ns), until=to_dt(a.until_ns))


class AvailabilityRow(BaseModel):
    model_config = _ex({"id": "y_ty", "name": "Xã Y Tý", "type": "commune", "district": "bat_xat",
                        "uptime_pct": 99.8611, "downtime_min": 62.0, "outages": 2, "mttr_min": 31.0, "mtbf_h": 356.9,
                        "maintenance_min": 120.0, "scheduled_min": 44520.0, "units": 1, "unreachable_min": None})
    id: str
    name: str = Field(description="the site's name, or the device's kind for a device")
    type: str = Field(description="commune, data_center, district, province, or device")
    district: str
    uptime_pct: float | None = Field(description="null when the whole period was planned maintenance")
    downtime_min: float
    outages: int
    mttr_min: float | None = Field(description="mean time to repair; null without outages")
    mtbf_h: float | None = Field(description="mean uptime between outages, hours; null without outages")
    maintenance_min: float
    scheduled_min: float = Field(description="the period (so far) minus planned maintenance; summed over units")
    units: int | None = Field(default=None, description="communes / data center summed into a district or province")
    unreachable_min: float | None = Field(default=None, description="device only: unreachable behind a parent's "
                                                                    "outage; charged to the parent, not counted here")

    @classmethod
    def figures(cls, f: Figures) -> dict:
        return {"uptime_pct": _r(f.uptime_pct, 4), "downtime_min": round(f.downtime_min, 2), "outages": f.outages,
                "mttr_min": _r(f.mttr_min, 2), "mtbf_h": _r(f.mtbf_h, 2), "maintenance_min": round(f.maintenance_min, 2),
                "scheduled_min": round(f.scheduled_ns / 60e9, 2)}


class AvailabilityOut(BaseModel):
    model_config = _ex({"period": PeriodOut.model_config["json_schema_extra"]["examples"][0], "level": "site",
                        "rows": [AvailabilityRow.model_config["json_schema_extra"]["examples"][0]],
                        "unknown_devices": []})
    period: PeriodOut
    level: Literal["site", "district", "province", "device"]
    rows: list[AvailabilityRow]
    unknown_devices: list[str] = Field(description="devices with outages in the history but no longer in the "
                                                   "registry: their outages are left out")


def rows(registry: Registry, a: Availability, level: str, district: str | None, site: str | None) -> list[AvailabilityRow]:
    out = []
    if level == "device":
        for d in a.devices.values():
            dev = registry.devices[d.device]
            if (district and dev.district != district) or (site and dev.site != site):
                continue
            out.append(AvailabilityRow(id=d.device, name=dev.kind, type="device", district=dev.district,
                                       unreachable_min=round(d.unreachable_ns / 60e9, 2),
                                       **AvailabilityRow.figures(d.figures)))
        return out
    want = {"site": ("commune", "data_center"), "district": ("district",), "province": ("province",)}[level]
    for s in a.sites.values():
        if s.type not in want or (district and s.district != district) or (site and s.site != site):
            continue
        out.append(AvailabilityRow(id=s.site, name=registry.sites[s.site].name, type=s.type, district=s.district,
                                   units=s.units, **AvailabilityRow.figures(s.figures)))
    return out


class OutageOut(BaseModel):
    model_config = _ex({"incident_id": 7, "kind": "uplink_down", "title": "Mất kết nối / Uplink down at Xã Y Tý",
                        "cause": "yty-router (commune_router) and the 4 devices ... are silent", "device": "yty-router",
                        "site": "y_ty", "site_name": "Xã Y Tý", "district": "bat_xat",
                        "started": "2026-10-05T02:00:00Z", "resolved": "2026-10-05T04:00:00Z",
                        "downtime_min": 60.0, "maintenance_min": 60.0, "unreachable_devices": 4})
    incident_id: int
    kind: str
    title: str
    cause: str
    device: str
    site: str
    site_name: str
    district: str
    started: datetime
    resolved: datetime | None = Field(description="null while it is still open")
    downtime_min: float = Field(description="inside the period, after maintenance")
    maintenance_min: float = Field(description="inside the period, excused by planned maintenance")
    unreachable_devices: int

    @classmethod
    def of(cls, registry: Registry, o: Outage) -> OutageOut:
        i = o.incident
        site = registry.sites.get(i.site)
        return cls(incident_id=i.id, kind=i.kind, title=i.title, cause=i.cause, device=i.device, site=i.site,
                   site_name=site.name if site else "", district=i.district, started=to_dt(i.started_ns),
                   resolved=to_dt(i.resolved_ns), downtime_min=round(o.downtime_ns / 60e9, 2),
                   maintenance_min=round(o.maintenance_ns / 60e9, 2), unreachable_devices=o.unreachable)


class OutageList(BaseModel):
    model_config = _ex({"period": PeriodOut.model_config["json_schema_extra"]["examples"][0],
                        "items": [OutageOut.model_config["json_schema_extra"]["examples"][0]], "total": 1})
    period: PeriodOut
    items: list[OutageOut]
    total: int


class MaintenanceIn(BaseModel):
    model_config = _ex({"site": "y_ty", "start": "2026-10-05T10:00:00+07:00", "end": "2026-10-05T12:00:00+07:00",
                        "reason": "Thay cáp quang / Fibre splice on the Y Tý uplink"}, extra="forbid")
    site: str | None = Field(default=None, max_length=64, description="a site id: covers its devices and the "
                                                                      "sites under it")
    device: str | None = Field(default=None, max_length=64, description="or one device id")
    start: str = Field(max_length=64, description="RFC 3339 with a zone, or epoch seconds/ms")
    end: str = Field(max_length=64, description="exclusive; at most 31 days after start")
    reason: str = Field(min_length=1, max_length=500)


class MaintenanceOut(BaseModel):
    model_config = _ex({"id": 3, "site": "y_ty", "device": None, "start": "2026-10-05T03:00:00Z",
                        "end": "2026-10-05T05:00:00Z", "reason": "Thay cáp quang / Fibre splice on the Y Tý uplink",
                        "created_by": "ioc-operator", "created": "2026-10-01T02:00:00Z"})
    id: int
    site: str | None
    device: str | None
    start: datetime
    end: datetime
    reason: str
    created_by: str
    created: datetime

    @classmethod
    def of(cls, w: Window) -> MaintenanceOut:
        return cls(id=w.id, site=w.site, device=w.device, start=to_dt(w.start_ns), end=to_dt(w.end_ns),
                   reason=w.reason, created_by=w.created_by, created=to_dt(w.created_ns))


class MaintenanceList(BaseModel):
    model_config = _ex({"items": [MaintenanceOut.model_config["json_schema_extra"]["examples"][0]]})
    items: list[MaintenanceOut]
