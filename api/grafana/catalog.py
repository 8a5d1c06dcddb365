"""The data source's catalogue: metrics and their payloads (Builder mode), payload options,
template variables and ad hoc filter keys/values.  Names shown to people are Vietnamese
(with the kind titles in English too); values are the registry's ids.

Every list takes the caller's ``view`` (api.scope.View): a scoped key is offered, and may ask for,
only the districts, communes and devices it can see; an id outside it is refused like an unknown one."""

from __future__ import annotations

from typing import Any

from analytics.incidents import SEVERITIES
from device_profiles import Registry
from ingest.validate import REASONS
from storage.base import AGGREGATES

from ..errors import bad_parameter
from ..live import DEVICE_STATUSES, SITE_STATUSES
from .availability import CATALOG as AVAILABILITY_CATALOG
from .models import MetricConfig, Option, PayloadConfig, TagKey, TagValue, VariableValue, one, values

TAG_KEYS = ("district", "site", "kind", "severity")
_METRICS = {  # metric -> (label, payload names)
    "telemetry": ("Đo đạc / Telemetry", ("kind", "field", "device", "site", "district", "agg")),
    "incidents_open": ("Sự cố đang mở / Open incidents", ("district", "site", "severity", "kind")),
    "incidents_timeline": ("Số sự cố theo thời gian / Open incidents over time", ("district", "site", "kind")),
    "site_status": ("Trạng thái xã / Site status", ("district", "status")),
    "device_status": ("Trạng thái thiết bị / Device status", ("district", "site", "kind", "status")),
    "quarantine_rate": ("Dữ liệu bị từ chối / Quarantined readings", ("reason",)),
    "incidents_annotations": ("Sự cố (chú thích) / Incidents (annotations)", ("district", "site", "severity", "kind")),
}
_METRICS.update(AVAILABILITY_CATALOG)  # api/grafana/availability.py
METRIC_NAMES = tuple(_METRICS)
_LABELS = {"kind": "Loại thiết bị / Kind", "field": "Trường / Field", "device": "Thiết bị / Device",
           "site": "Xã / Commune", "district": "Huyện / District", "agg": "Gộp / Aggregate",
           "severity": "Mức độ / Severity", "status": "Trạng thái / Status", "reason": "Lý do / Reason"}
_MULTI = {"device", "site", "district", "severity", "status", "reason"}


def metric_configs() -> list[MetricConfig]:
    return [MetricConfig(label=label, value=name, payloads=[
        PayloadConfig(label=_LABELS[p], name=p, type="multi-select" if p in _MULTI else "select",
                      placeholder="" if name == "telemetry" and p in ("kind", "field") else "tất cả / all",
                      reloadMetric=p == "kind") for p in payloads]) for name, (label, payloads) in _METRICS.items()]


def _sees_site(view, site_id: str) -> bool:
    return view is None or site_id in view.sites


def districts(registry: Registry, view=None) -> list[tuple[str, str]]:
    return sorted((s.name, s.id) for s in registry.sites.values() if s.type == "district" and _sees_site(view, s.id))


def communes(registry: Registry, district: list[str] | None, include_dc: bool = False,
             view=None) -> list[tuple[str, str]]:
    types = ("commune", "data_center") if include_dc else ("commune",)
    return sorted((s.name, s.id) for s in registry.sites.values()
                  if s.type in types and (district is None or s.district in district) and _sees_site(view, s.id))


def devices(registry: Registry, site=None, district=None, kind=None, view=None) -> list[tuple[str, str]]:
    out = []
    for d in registry.devices.values():
        if (site and d.site not in site) or (district and d.district not in district) or (kind and d.kind not in kind):
            continue
        if view is not None and d.id not in view.devices:
            continue
        out.append((f"{d.id} ({registry.kinds[d.kind].title.vi})", d.id))
    return sorted(out)


def kinds(registry: Registry) -> list[tuple[str, str]]:
    return sorted((f"{p.title.vi} / {p.title.en}", k) for k, p in registry.kinds.items())


def fields(registry: Registry, kind: str) -> list[tuple[str, str]]:
    return [(f"{n} ({f.unit})", n) for n, f in registry.kinds[kind].fields.items()]


def check(registry: Registry, key: str, vals: list[str] | None, metric: str = "", view=None) -> list[str] | None:
    """Refuse a payload value that is not in the registry / the allowed set, naming the key and the choices.

    With a ``view``, sites, districts and devices outside it count as unknown (and are not listed)."""
    if vals is None:
        return None
    allowed = {
        "district": [s.id for s in registry.sites.values() if s.type == "district" and _sees_site(view, s.id)],
        "site": [s for s in registry.sites if _sees_site(view, s)], "kind": list(registry.kinds),
        "device": [d for d in registry.devices if view is None or d in view.devices],
        "severity": SEVERITIES, "reason": REASONS, "agg": AGGREGATES,
        "status": DEVICE_STATUSES if metric == "device_status" else SITE_STATUSES,
    }.get(key)
    for v in vals:
        if allowed is not None and v not in allowed:
            known = sorted(allowed)
            shown = ", ".join(known[:25]) + (f" ... ({len(known)} in all)" if len(known) > 25 else "")
            raise bad_parameter(f"payload.{key}", f"unknown value {v!r}; known: {shown}", value=v)
    return vals


def payload_options(registry: Registry, metric: str, payload: dict[str, Any], name: str, view=None) -> list[Option]:
    district = check(registry, "district", values(payload, "district"), view=view)
    pairs: list[tuple[str, str]]
    if name == "kind":
        pairs = kinds(registry)
    elif name == "field":
        kind = one(payload, "kind")
        pairs = fields(registry, check(registry, "kind", [kind])[0]) if kind else []
    elif name == "device":
        pairs = devices(registry, check(registry, "site", values(payload, "site"), view=view), district,
                        check(registry, "kind", values(payload, "kind")), view)
    elif name == "site":
        pairs = communes(registry, district, include_dc=True, view=view)
    elif name == "district":
        pairs = districts(registry, view)
    elif name in ("agg", "severity", "reason"):
        pairs = [(v, v) for v in {"agg": AGGREGATES, "severity": SEVERITIES, "reason": REASONS}[name]]
    elif name == "status":
        pairs = [(v, v) for v in (DEVICE_STATUSES if metric == "device_status" else SITE_STATUSES)]
    else:
        raise bad_parameter("name", f"no options for payload {name!r}; known: {', '.join(_LABELS)}")
    return [Option(label=label, value=value) for label, value in pairs]


def variable(registry: Registry, payload: dict[str, Any], view=None) -> list[VariableValue]:
    target = one(payload, "target")
    district = check(registry, "district", values(payload, "district"), view=view)
    if target == "districts":
        pairs = districts(registry, view)
    elif target == "communes":
        pairs = communes(registry, district, include_dc=bool(payload.get("include_dc")), view=view)
    elif target == "devices":
        pairs = devices(registry, check(registry, "site", values(payload, "site"), view=view), district,
                        check(registry, "kind", values(payload, "kind")), view)
    elif target == "kinds":
        pairs = kinds(registry)
    elif target == "fields":
        kind = one(payload, "kind")
        if kind is None:
            raise bad_parameter("payload.kind", "the fields variable needs a kind, e.g. "
                                                '{"target": "fields", "kind": "water_level"}')
        pairs = fields(registry, check(registry, "kind", [kind])[0])
    else:
        raise bad_parameter("payload.target", f"unknown variable {target!r}; known: districts, communes, devices, "
                                              "kinds, fields")
    return [VariableValue(__text=text, __value=value) for text, value in sorted(pairs)]


def tag_keys() -> list[TagKey]:
    return [TagKey(text=k) for k in TAG_KEYS]


def tag_values(registry: Registry, key: str, view=None) -> list[TagValue]:
    if key == "district":
        vals = [v for _, v in districts(registry, view)]
    elif key == "site":
        vals = [v for _, v in communes(registry, None, include_dc=True, view=view)]
    elif key == "kind":
        vals = sorted(registry.kinds)
    elif key == "severity":
        vals = list(SEVERITIES)
    else:
        raise bad_parameter("key", f"unknown tag key {key!r}; known: {', '.join(TAG_KEYS)}")
    return [TagValue(text=v) for v in vals]
