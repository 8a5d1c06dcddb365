"""Input and public output models of the REST API.

Inputs refuse unknown keys (a typo must not be silently ignored).  Outputs are
built from the internal objects by the ``of`` class methods and carry only
what a client may see: never a key's hash, never an incident's dedup key.
Every model has an example, which the OpenAPI document shows.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from analytics.incidents import Comment, Incident
from device_profiles import Registry

from .keys import ApiKey
from .params import to_dt

Number = float | int


def _ex(example: dict) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [example]})


def _name(registry: Registry, site_id: str | None) -> str:
    site = registry.sites.get(site_id or "")
    return site.name if site else ""


# --- telemetry ----------------------------------------------------------------------------------

class SeriesPoint(BaseModel):
    model_config = _ex({"time": "2026-11-27T10:00:00Z", "value": 42.5})
    time: datetime
    value: Number


_SERIES_EX = {"device": "yty-router", "kind": "commune_router", "field": "latency_ms", "unit": "ms",
              "site": "y_ty", "district": "bat_xat", "start": "2026-11-27T10:00:00Z", "end": "2026-11-27T11:00:00Z",
              "window_s": 300, "agg": "mean", "count": 2,
              "points": [{"time": "2026-11-27T10:00:00Z", "value": 42.5}, {"time": "2026-11-27T10:05:00Z",
                                                                          "value": 44.1}]}


class Series(BaseModel):
    model_config = _ex(_SERIES_EX)
    device: str
    kind: str
    field: str
    unit: str
    site: str
    district: str
    start: datetime
    end: datetime
    window_s: int | None = Field(description="window length; null: raw readings")
    agg: str | None = Field(description="mean, min, max, last or count; null: raw readings")
    count: int
    points: list[SeriesPoint] = Field(description="oldest first; windows without readings are left out")


class LatestReading(BaseModel):
    model_config = _ex({"device": "yty-router", "kind": "commune_router", "site": "y_ty", "district": "bat_xat",
                        "time": "2026-11-27T10:59:30Z", "values": {"link_up": 1, "latency_ms": 43.2}})
    device: str
    kind: str
    site: str
    district: str
    time: datetime = Field(description="measurement time of the device's newest reading in the look-back")
    values: dict[str, Number] = Field(description="each field's newest value in the look-back")


class LatestList(BaseModel):
    model_config = _ex({"start": "2026-11-27T10:57:00Z", "end": "2026-11-27T11:00:00Z", "count": 1,
                        "items": [LatestReading.model_config["json_schema_extra"]["examples"][0]]})
    start: datetime
    end: datetime
    count: int
    items: list[LatestReading]


# --- devices ------------------------------------------------------------------------------------

class FieldInfo(BaseModel):
    model_config = _ex({"name": "latency_ms", "type": "float", "unit": "ms", "min": 0, "max": 60000,
                        "description": "round-trip time to the data center", "limits": {"warn_above": 150}})
    name: str
    type: Literal["float", "int", "bool"]
    unit: str
    min: float | None
    max: float | None
    description: str
    limits: dict[str, float] | None = Field(description="alarm marks (warn_above, crit_above, ...)")


class Reporting(BaseModel):
    model_config = _ex({"interval_s": 30, "jitter_s": 12, "duty_cycle": None})
    interval_s: float
    jitter_s: float
    duty_cycle: list[dict[str, str]] | None = Field(description="daily windows (local time) when it reports")


_DEVICE_EX = {"id": "yty-spk-1", "kind": "ip_loudspeaker", "kind_name": "Cụm loa IP / IP loudspeaker cluster",
              "site": "y_ty", "site_name": "Xã Y Tý", "district": "bat_xat", "district_name": "Huyện Bát Xát",
              "uplink": "yty-router", "power": "yty-ups", "lat": 22.64, "lon": 103.62,
              "status": "unreachable (inferred)", "last_seen": "2026-11-27T10:30:00Z", "open_incidents": [7]}


class DeviceSummary(BaseModel):
    model_config = _ex(_DEVICE_EX)
    id: str
    kind: str
    kind_name: str = Field(description="Vietnamese / English")
    site: str
    site_name: str
    district: str
    district_name: str
    uplink: str | None
    power: str | None
    lat: float | None
    lon: float | None
    status: Literal["ok", "silent", "unreachable (inferred)", "unknown"]
    last_seen: datetime | None = Field(description="newest measurement time stored; null if never heard from")
    open_incidents: list[int]

    @classmethod
    def of(cls, registry: Registry, device_id: str, snap) -> DeviceSummary:
        d = registry.devices[device_id]
        title = registry.kinds[d.kind].title
        return cls(id=d.id, kind=d.kind, kind_name=f"{title.vi} / {title.en}", site=d.site,
                   site_name=_name(registry, d.site), district=d.district, district_name=_name(registry, d.district),
                   uplink=d.uplink, power=d.power, lat=d.lat, lon=d.lon, status=snap.device[d.id],
                   last_seen=to_dt(snap.last_seen.get(d.id)), open_incidents=snap.device_incidents.get(d.id, []))


class DeviceDetail(DeviceSummary):
    model_config = _ex({**_DEVICE_EX, "fields": [FieldInfo.model_config["json_schema_extra"]["examples"][0]],
                        "reporting": {"interval_s": 60, "jitter_s": 20, "duty_cycle": [{"start": "11:00",
                                                                                         "end": "11:30"}]},
                        "depends_on": ["yty-router", "yty-ups"], "dependants": []})
    fields: list[FieldInfo]
    reporting: Reporting
    depends_on: list[str] = Field(description="uplinks and power feeds it depends on, nearest first")
    dependants: list[str] = Field(description="devices that depend on it directly")


# --- incidents ----------------------------------------------------------------------------------

_INCIDENT_EX = {"id": 7, "kind": "uplink_down", "severity": "critical", "status": "open",
                "title": "Mất kết nối / Uplink down at Xã Y Tý (Huyện Bát Xát): 9 devices unreachable",
                "cause": "yty-router (commune_router) and the 9 devices that reach the network through it are silent",
                "site": "y_ty", "site_name": "Xã Y Tý", "district": "bat_xat", "district_name": "Huyện Bát Xát",
                "device": "yty-router", "started": "2026-11-27T10:30:00Z", "last_active": "2026-11-27T11:00:00Z",
                "resolved": None, "acknowledged_by": None, "assignee": None, "resolved_by": None, "unreachable": 9}


class IncidentSummary(BaseModel):
    model_config = _ex(_INCIDENT_EX)
    id: int
    kind: str
    severity: Literal["info", "warning", "critical"]
    status: Literal["open", "acknowledged", "resolved"]
    title: str = Field(description="Vietnamese / English")
    cause: str
    site: str
    site_name: str
    district: str
    district_name: str
    device: str = Field(description="the device at fault (the root, for uplink/power incidents)")
    started: datetime
    last_active: datetime
    resolved: datetime | None
    acknowledged_by: str | None
    assignee: str | None
    resolved_by: str | None = Field(description="who resolved it by hand; null when the detector saw it clear")
    unreachable: int = Field(description="devices marked 'unreachable (inferred)' behind it")

    @classmethod
    def of(cls, registry: Registry, inc: Incident) -> IncidentSummary:
        return cls(id=inc.id, kind=inc.kind, severity=inc.severity, status=inc.status, title=inc.title,
                   cause=inc.cause, site=inc.site, site_name=_name(registry, inc.site), district=inc.district,
                   district_name=_name(registry, inc.district), device=inc.device, started=to_dt(inc.started_ns),
                   last_active=to_dt(inc.last_active_ns), resolved=to_dt(inc.resolved_ns),
                   acknowledged_by=inc.acknowledged_by, assignee=inc.assignee, resolved_by=inc.resolved_by,
                   unreachable=sum(1 for _, role in inc.members if role == "unreachable (inferred)"))


class Member(BaseModel):
    device: str
    role: str


class IncidentEvent(BaseModel):
    time: datetime
    event: str = Field(description="opened, escalated, updated, acknowledged, assigned, resolved, reopened")
    detail: str


class CommentOut(BaseModel):
    model_config = _ex({"id": 1, "time": "2026-11-27T10:40:00Z", "author": "ops-hanh",
                        "text": "Đã gọi VNPT Bát Xát / Called the Bát Xát carrier"})
    id: int
    time: datetime
    author: str = Field(description="the name of the API key that wrote it")
    text: str

    @classmethod
    def of(cls, c: Comment) -> CommentOut:
        return cls(id=c.id, time=to_dt(c.ts_ns), author=c.author, text=c.body)


class IncidentDetail(IncidentSummary):
    model_config = _ex({**_INCIDENT_EX, "evidence": {"last_heard": {"yty-router": 1795689000.0}},
                        "members": [{"device": "yty-spk-1", "role": "unreachable (inferred)"}],
                        "events": [{"time": "2026-11-27T10:31:00Z", "event": "opened", "detail": "..."}],
                        "comments": []})
    evidence: dict[str, Any]
    members: list[Member]
    events: list[IncidentEvent]
    comments: list[CommentOut]


class IncidentList(BaseModel):
    model_config = _ex({"items": [_INCIDENT_EX], "count": 1, "total": 1, "limit": 100, "offset": 0})
    items: list[IncidentSummary] = Field(description="newest first")
    count: int
    total: int = Field(description="how many match the filters in all")
    limit: int
    offset: int


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AcknowledgeIn(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"comment": "Đang kiểm tra đường truyền / Checking the link"}]})
    comment: str = Field(default="", max_length=2000)


class ResolveIn(AcknowledgeIn):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"comment": "Đã thay bộ định tuyến / Router replaced"}]})


class AssignIn(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"assignee": "kythuat-batxat"}]})
    assignee: str = Field(min_length=1, max_length=100, pattern=r"\S", description="who works on it")


class CommentIn(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"text": "Đã gọi VNPT Bát Xát / Called the Bát Xát carrier"}]})
    text: str = Field(min_length=1, max_length=4000, pattern=r"\S")


# --- sites --------------------------------------------------------------------------------------

class SiteNode(BaseModel):
    model_config = _ex({"id": "bat_xat", "type": "district", "name": "Huyện Bát Xát", "lat": 22.536, "lon": 103.89,
                        "status": "degraded", "devices": 60, "devices_ok": 50, "open_incidents": 1,
                        "children": [{"id": "y_ty", "type": "commune", "name": "Xã Y Tý", "lat": 22.64,
                                      "lon": 103.62, "status": "down", "devices": 10, "devices_ok": 0,
                                      "open_incidents": 1, "children": []}]})
    id: str
    type: Literal["province", "data_center", "district", "commune"]
    name: str
    lat: float | None
    lon: float | None
    status: Literal["ok", "degraded", "down", "unknown"]
    devices: int = Field(description="devices at the site and below it")
    devices_ok: int
    open_incidents: int = Field(description="open incidents at the site and below it")
    children: list[SiteNode]


class SiteDetail(BaseModel):
    model_config = _ex({"id": "y_ty", "type": "commune", "name": "Xã Y Tý", "parent": "bat_xat",
                        "district": "bat_xat", "district_name": "Huyện Bát Xát", "lat": 22.64, "lon": 103.62,
                        "status": "down", "children": [], "devices": [_DEVICE_EX], "open_incidents": [_INCIDENT_EX]})
    id: str
    type: Literal["province", "data_center", "district", "commune"]
    name: str
    parent: str | None
    district: str | None
    district_name: str
    lat: float | None
    lon: float | None
    status: Literal["ok", "degraded", "down", "unknown"]
    children: list[str]
    devices: list[DeviceSummary] = Field(description="devices at the site and below it")
    open_incidents: list[IncidentSummary] = Field(description="open incidents at the site and below it")


# --- quarantine ---------------------------------------------------------------------------------

class Quarantined(BaseModel):
    model_config = _ex({"arrived": "2026-11-27T10:59:58Z", "reason": "out_of_range",
                        "topic": "laocai/y_ty/water_level/yty-wl-1", "kind": "water_level", "device": "yty-wl-1",
                        "detail": "level_m = 412.0 is above the valid maximum 50", "raw": "{\"level_m\": 412.0}"})
    arrived: datetime
    reason: str
    topic: str
    kind: str
    device: str
    detail: str = Field(description="what exactly was wrong")
    raw: str = Field(description="the payload as received (UTF-8; other bytes as \\xNN; cut at 4096 characters)")


class QuarantineList(BaseModel):
    model_config = _ex({"since": "2026-11-27T10:00:00Z", "until": "2026-11-27T11:00:00Z", "count": 1,
                        "scanned": 1, "items": [Quarantined.model_config["json_schema_extra"]["examples"][0]]})
    since: datetime
    until: datetime
    count: int
    scanned: int = Field(description="refusals read from the store (the newest first) before filtering by reason")
    items: list[Quarantined] = Field(description="newest first")


# --- keys ---------------------------------------------------------------------------------------

_KEY_EX = {"id": 3, "name": "grafana", "role": "viewer", "prefix": "fsp_Vq3xk2Lm", "created": "2026-11-27T09:00:00Z",
           "last_used": "2026-11-27T10:59:00Z", "revoked": None}


class KeyCreateIn(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "grafana", "role": "viewer"}]})
    name: str = Field(min_length=1, max_length=100, pattern=r"\S", description="whose key: a person or a service")
    role: Literal["viewer", "operator", "admin"]


class KeyOut(BaseModel):
    model_config = _ex(_KEY_EX)
    id: int
    name: str
    role: Literal["viewer", "operator", "admin"]
    prefix: str = Field(description="the key's first characters, to recognise it; the key itself is never stored")
    created: datetime
    last_used: datetime | None = Field(description="to the minute")
    revoked: datetime | None

    @classmethod
    def of(cls, k: ApiKey) -> KeyOut:
        return cls(id=k.id, name=k.name, role=k.role, prefix=k.prefix, created=to_dt(k.created_ns),
                   last_used=to_dt(k.last_used_ns), revoked=to_dt(k.revoked_ns))


class KeyCreated(KeyOut):
    model_config = _ex({**_KEY_EX, "last_used": None,
                        "key": "fsp_Vq3xk2LmN8yQ0cT5rW1zA7bD4eF6gH9iJ2kL3mN5oP7"})
    key: str = Field(description="the secret key: shown this once, store it now")


# --- health -------------------------------------------------------------------------------------

class Check(BaseModel):
    ok: bool
    detail: str


class Health(BaseModel):
    model_config = _ex({"status": "ok", "checks": {"store": {"ok": True, "detail": "sqlite: reachable"},
                                                    "incidents_db": {"ok": True, "detail": "reachable"}}})
    status: Literal["ok"]
    checks: dict[str, Check]
