"""Availability per device, commune, district, the data center and the province, from incident history.

Definitions (docs/availability.md has them with worked examples):

* **Outage**: an incident whose key is ``silence:<device>``: the silence, uplink_down,
  power_loss and dependants_silent incidents of analytics/topology.py, from
  ``started_ns`` to ``resolved_ns`` (still open: to now).  Limits and anomalies are
  not downtime: a hot inlet is a risk, not an outage.
* **Counts against the parent**: a topology incident is charged to its root device
  (the cut uplink, the dead UPS) and that device's site; the devices it made
  unreachable are not down themselves: their ``unreachable`` minutes are shown, not
  counted.
* **Maintenance**: a window on a device, on its site or on a site above it removes
  that time from the device's scheduled time and from its downtime; an outage that
  a window cuts in two is still one outage.
* **Device**: downtime = union of its outages minus its maintenance; outages = the
  merged outages with any downtime left; scheduled = period minus maintenance.
* **Unit site** (a commune, the data center: any site holding devices): downtime =
  union over its devices' downtime ("something at Y Tý was out"); scheduled = period
  minus the windows covering the whole site.
* **District / province**: sums over their unit sites (commune-minutes): uptime % =
  sum of uptime / sum of scheduled, so every commune weighs the same.
* uptime % = 100 (scheduled - downtime) / scheduled; MTTR = downtime / outages;
  MTBF = (scheduled - downtime) / outages (the ITIL mean uptime between failures).

A period that has not ended is measured up to ``now``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from device_profiles import Registry

from .incidents import Incident
from .maintenance import Window
from .periods import Period

OUTAGE_PREFIX = "silence:"
MINUTE_NS = 60 * 10**9

Intervals = list[tuple[int, int]]


# ---------------------------------------------------------------- interval arithmetic

def merge(intervals: Iterable[tuple[int, int]]) -> Intervals:
    """Sorted, disjoint union; empty intervals dropped; touching ones joined."""
    out: Intervals = []
    for s, e in sorted(i for i in intervals if i[1] > i[0]):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def clip(intervals: Intervals, lo: int, hi: int) -> Intervals:
    return [(max(s, lo), min(e, hi)) for s, e in intervals if min(e, hi) > max(s, lo)]


def subtract(intervals: Intervals, cuts: Intervals) -> Intervals:
    """``intervals`` minus ``cuts`` (both merged)."""
    out: Intervals = []
    for s, e in intervals:
        cur = s
        for cs, ce in cuts:
            if ce <= cur or cs >= e:
                continue
            if cs > cur:
                out.append((cur, cs))
            cur = max(cur, ce)
        if cur < e:
            out.append((cur, e))
    return out


def intersect(a: Intervals, b: Intervals) -> Intervals:
    """Both merged; one sweep over the two lists."""
    out: Intervals = []
    i = j = 0
    while i < len(a) and j < len(b):
        s, e = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if e > s:
            out.append((s, e))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def total(intervals: Intervals) -> int:
    return sum(e - s for s, e in intervals)


def _count_hit(raw: Intervals, remaining: Intervals) -> int:
    """Raw outages with any downtime left after maintenance (one outage split by a window is still one).

    Both merged, ``remaining`` inside ``raw``: each remaining piece lies in exactly one raw piece.
    """
    hit, i = set(), 0
    for s, _e in remaining:
        while raw[i][1] <= s:
            i += 1
        hit.add(i)
    return len(hit)


# ---------------------------------------------------------------- figures

@dataclass
class Figures:
    scheduled_ns: int = 0
    downtime_ns: int = 0
    outages: int = 0
    maintenance_ns: int = 0

    def __add__(self, other: Figures) -> Figures:
        return Figures(self.scheduled_ns + other.scheduled_ns, self.downtime_ns + other.downtime_ns,
                       self.outages + other.outages, self.maintenance_ns + other.maintenance_ns)

    @property
    def uptime_pct(self) -> float | None:
        if self.scheduled_ns <= 0:
            return None  # the whole period was planned work: no availability to speak of
        return 100.0 * (self.scheduled_ns - self.downtime_ns) / self.scheduled_ns

    @property
    def downtime_min(self) -> float:
        return self.downtime_ns / MINUTE_NS

    @property
    def maintenance_min(self) -> float:
        return self.maintenance_ns / MINUTE_NS

    @property
    def mttr_min(self) -> float | None:
        return self.downtime_ns / self.outages / MINUTE_NS if self.outages else None

    @property
    def mtbf_h(self) -> float | None:
        return (self.scheduled_ns - self.downtime_ns) / self.outages / (60 * MINUTE_NS) if self.outages else None


@dataclass
class Outage:
    """One outage incident as the period sees it: its downtime inside the period, after maintenance."""

    incident: Incident
    downtime_ns: int
    maintenance_ns: int
    unreachable: int  # devices it made unreachable (charged to this outage, not to them)


@dataclass
class DeviceAvailability:
    device: str
    site: str
    figures: Figures
    unreachable_ns: int = 0  # time it was unreachable behind a parent's outage: shown, not counted


@dataclass
class SiteAvailability:
    site: str
    type: str
    district: str  # "" outside districts (the data center, the province)
    figures: Figures
    units: int = 1  # unit sites summed into it


@dataclass
class Availability:
    period: Period
    until_ns: int  # measured up to here: the period's end, or now for a period still running
    devices: dict[str, DeviceAvailability]
    sites: dict[str, SiteAvailability]  # unit sites, districts, the province
    outages: list[Outage] = field(default_factory=list)  # longest first
    unknown_devices: list[str] = field(default_factory=list)  # in incidents, no longer in the registry


# ---------------------------------------------------------------- the computation

def _site_chain(registry: Registry, site_id: str) -> list[str]:
    chain, cur = [], site_id
    while cur and cur not in chain:
        chain.append(cur)
        cur = registry.sites[cur].parent
    return chain


def _spans(registry: Registry, incidents: Iterable[Incident], lo: int, hi: int, now_ns: int):
    """Each outage incident's span inside [lo, hi): charged to its device; its members only "unreachable"."""
    raw: dict[str, Intervals] = defaultdict(list)
    unreachable: dict[str, Intervals] = defaultdict(list)
    outage_incidents, unknown = [], set()
    for inc in incidents:
        if not inc.key.startswith(OUTAGE_PREFIX):
            continue
        end = inc.resolved_ns if inc.resolved_ns is not None else now_ns
        span = clip([(inc.started_ns, end)], lo, hi)
        if not span:
            continue
        if inc.device not in registry.devices:
            unknown.add(inc.device)
            continue
        raw[inc.device] += span
        for member, _role in inc.members:
            unreachable[member] += span
        outage_incidents.append((inc, span))
    return raw, unreachable, outage_incidents, unknown


def compute(registry: Registry, incidents: Iterable[Incident], windows: Iterable[Window], period: Period,
            now_ns: int) -> Availability:
    """Availability over ``period`` (measured up to ``now_ns`` if it has not ended).

    Raises ValueError when the period starts after ``now_ns``: there is nothing to measure yet.
    """
    lo, hi = period.start_ns, min(period.end_ns, now_ns)
    if hi <= lo:
        raise ValueError(f"period {period.label} has not started yet: nothing to measure")
    cuts_by_site: dict[str, Intervals] = defaultdict(list)
    cuts_by_device: dict[str, Intervals] = defaultdict(list)
    for w in windows:
        (cuts_by_site[w.site] if w.site else cuts_by_device[w.device]).append((w.start_ns, w.end_ns))
    chains = {s: _site_chain(registry, s) for s in registry.sites}
    site_cuts = {s: clip(merge(iv for a in chains[s] for iv in cuts_by_site.get(a, ())), lo, hi)
                 for s in registry.sites}

    raw, unreachable, outage_incidents, unknown = _spans(registry, incidents, lo, hi, now_ns)
    devices: dict[str, DeviceAvailability] = {}
    remaining_by_device: dict[str, Intervals] = {}
    for dev in registry.devices.values():
        cuts = merge([*site_cuts[dev.site], *clip(merge(cuts_by_device.get(dev.id, ())), lo, hi)])
        mine = merge(raw.get(dev.id, ()))
        remaining = subtract(mine, cuts)
        remaining_by_device[dev.id] = remaining
        fig = Figures(hi - lo - total(cuts), total(remaining), _count_hit(mine, remaining), total(cuts))
        devices[dev.id] = DeviceAvailability(dev.id, dev.site, fig, total(subtract(merge(unreachable.get(dev.id, ())),
                                                                                   cuts)))

    sites = _sites(registry, raw, remaining_by_device, site_cuts, lo, hi)
    outages = []
    for inc, span in outage_incidents:
        left = total(intersect(span, remaining_by_device[inc.device]))
        outages.append(Outage(inc, left, total(span) - left, len(inc.members)))
    outages.sort(key=lambda o: (-o.downtime_ns, o.incident.started_ns, o.incident.id))
    return Availability(period, hi, devices, sites, outages, sorted(unknown))


def _sites(registry: Registry, raw, remaining_by_device, site_cuts, lo: int, hi: int) -> dict[str, SiteAvailability]:
    by_site: dict[str, list[str]] = defaultdict(list)
    for dev in registry.devices.values():
        by_site[dev.site].append(dev.id)
    out: dict[str, SiteAvailability] = {}
    for site_id, devs in by_site.items():
        site = registry.sites[site_id]
        mine = merge(iv for d in devs for iv in raw.get(d, ()))
        remaining = merge(iv for d in devs for iv in remaining_by_device[d])
        cuts = site_cuts[site_id]
        fig = Figures(hi - lo - total(cuts), total(remaining), _count_hit(mine, remaining), total(cuts))
        out[site_id] = SiteAvailability(site_id, site.type, site.district or "", fig)
    # Districts and the province: sums over the unit sites under them (commune-minutes).
    for site in registry.sites.values():
        if site.id in out:
            continue
        units = [u for u in out.values() if site.id in _site_chain(registry, u.site)[1:]]
        if not units:
            continue
        fig = Figures()
        for u in units:
            fig = fig + u.figures
        out[site.id] = SiteAvailability(site.id, site.type, site.district or "", fig, len(units))
    return out


# The kinds a ``silence:<device>`` incident can have (analytics/topology.py): read by kind, so a month
# of limit and anomaly incidents is never loaded just to be skipped.
OUTAGE_KINDS = ("silence", "uplink_down", "power_loss", "dependants_silent")


def fetch(incident_store, maintenance_store, start_ns: int, end_ns: int) -> tuple[list[Incident], list[Window]]:
    """The outage incidents and the maintenance windows that touch [start_ns, end_ns)."""
    incs: list[Incident] = []
    for kind in OUTAGE_KINDS:
        found, _ = incident_store.find(kind=kind, since_ns=start_ns, limit=10_000_000)
        incs += [i for i in found if i.started_ns < end_ns and i.key.startswith(OUTAGE_PREFIX)]
    return incs, maintenance_store.overlapping(start_ns, end_ns)


def load(registry: Registry, incident_store, maintenance_store, period: Period, now_ns: int) -> Availability:
    """Read the incidents and windows that touch ``period`` from the stores, and compute."""
    incs, windows = fetch(incident_store, maintenance_store, period.start_ns, period.end_ns)
    return compute(registry, incs, windows, period, now_ns)
