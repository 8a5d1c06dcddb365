"""The monthly availability report's content, once, for every format (CSV, HTML, PDF).

``build(registry, incidents, maintenance, "2026-10", now_ns)`` reads the stores and
returns a ``Monthly``: the province, the data center, every district and commune,
the worst communes, the longest outages with their causes, downtime by cause and the
planned maintenance.  The formats only lay it out.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from analytics import availability, periods
from analytics.availability import Availability, Figures, Outage
from analytics.maintenance import Window
from device_profiles import Registry

WORST = 10
LONGEST = 10

# Incident kinds as the leadership reads them (Vietnamese / English).
CAUSES = {
    "uplink_down": "Mất kết nối / Uplink down",
    "power_loss": "Mất điện / Power lost",
    "dependants_silent": "Thiết bị phía sau / Dependants silent",
    "silence": "Mất tín hiệu / Device silent",
}


@dataclass
class Row:
    id: str
    name: str
    type: str
    district: str  # district name ("" for the data center and the province)
    figures: Figures
    units: int = 1


@dataclass
class Monthly:
    period: periods.Period
    until_ns: int
    generated_ns: int
    province: Row
    datacenter: list[Row]
    districts: list[Row]  # by uptime, worst first
    communes: list[Row]  # every commune, worst first
    outages: list[Outage]  # longest first, those with downtime
    by_cause: list[tuple[str, float, int]]  # (cause label, downtime minutes, outages), most downtime first
    windows: list[Window]
    site_names: dict[str, str] = field(default_factory=dict)
    unknown_devices: list[str] = field(default_factory=list)

    @property
    def worst_communes(self) -> list[Row]:
        """Up to WORST communes, only those that had downtime: a list of 100 % rows tells nobody anything."""
        return [r for r in self.communes if r.figures.downtime_ns > 0][:WORST]

    @property
    def longest(self) -> list[Outage]:
        return self.outages[:LONGEST]

    def local(self, ns: int | None) -> str:
        return "" if ns is None else datetime.fromtimestamp(ns / 1e9, periods.TZ).strftime("%d/%m/%Y %H:%M")


def _worst_first(rows: list[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: (100.0 if r.figures.uptime_pct is None else r.figures.uptime_pct,
                                       -r.figures.downtime_ns, r.name))


def assemble(registry: Registry, a: Availability, windows: list[Window], generated_ns: int) -> Monthly:
    """Lay an Availability of one month out as the report's sections."""
    def row(site_id: str) -> Row:
        s, site = a.sites[site_id], registry.sites[site_id]
        district = registry.sites[s.district].name if s.district and s.district != site_id else ""
        return Row(site_id, site.name, s.type, district, s.figures, s.units)

    by_type: dict[str, list[Row]] = defaultdict(list)
    for site_id in a.sites:
        r = row(site_id)
        by_type[r.type].append(r)
    province = by_type["province"][0] if by_type["province"] else Row("", "", "province", "", Figures())
    causes: dict[str, list] = defaultdict(lambda: [0, 0])
    for o in a.outages:
        if o.downtime_ns > 0:
            label = CAUSES.get(o.incident.kind, o.incident.kind)
            causes[label][0] += o.downtime_ns
            causes[label][1] += 1
    by_cause = sorted(((k, v[0] / 60e9, v[1]) for k, v in causes.items()), key=lambda c: (-c[1], c[0]))
    return Monthly(period=a.period, until_ns=a.until_ns, generated_ns=generated_ns, province=province,
                   datacenter=by_type["data_center"], districts=_worst_first(by_type["district"]),
                   communes=_worst_first(by_type["commune"]),
                   outages=[o for o in a.outages if o.downtime_ns > 0], by_cause=by_cause, windows=windows,
                   site_names={s.id: s.name for s in registry.sites.values()}, unknown_devices=a.unknown_devices)


def build(registry: Registry, incident_store, maintenance_store, month: str, now_ns: int) -> Monthly:
    """The report of ``month`` (YYYY-MM, local); raises PeriodError for a bad month, ValueError for a future one."""
    period = periods.parse("month", month)
    a = availability.load(registry, incident_store, maintenance_store, period, now_ns)
    return assemble(registry, a, maintenance_store.overlapping(period.start_ns, period.end_ns), now_ns)
