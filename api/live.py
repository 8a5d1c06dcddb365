"""Live status of devices and sites: what the store last heard plus what the detector decided.

Computed once per request from two cheap reads (``store.last_seen()`` and the
open incidents), so every route, the Grafana tables and the status page tell
the same story as the detector:

* device: ``unreachable (inferred)`` when an open incident lists it so, or
  when an uplink or power feed it depends on is the root of an open
  uplink/power incident (its own state cannot be known; the detector leaves
  out devices outside their duty-cycle windows); ``unknown`` when
  never heard from; ``silent`` when it missed its reporting contract (the
  detector's own rule: 3 reports, duty cycles counted) or an open silence
  incident is rooted at it; ``ok`` otherwise;
* site: ``down`` when an uplink/power incident sits at it or every device it
  has is silent or unreachable; ``unknown`` when none of its devices ever
  reported; ``degraded`` when any incident is open at it or a device is not
  ok; ``ok`` otherwise.  A district or the province: ``down``/``unknown`` when
  all its sites are, ``degraded`` when any is not ok.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from analytics.incidents import Incident, IncidentStore
from analytics.silence import SilenceDetector
from analytics.topology import UNREACHABLE
from device_profiles import Registry

DEVICE_STATUSES = ("ok", "silent", UNREACHABLE, "unknown")
SITE_STATUSES = ("ok", "degraded", "down", "unknown")
OUTAGE_KINDS = frozenset({"uplink_down", "power_loss"})
SILENT_ROOT_KINDS = frozenset({"silence", "uplink_down", "power_loss"})  # the root device itself is silent


@dataclass
class Snapshot:
    now_ns: int
    last_seen: dict[str, int]
    open: list[Incident]
    device: dict[str, str] = field(default_factory=dict)  # device id -> status
    device_incidents: dict[str, list[int]] = field(default_factory=dict)  # device id -> open incident ids
    site: dict[str, str] = field(default_factory=dict)  # site id -> status
    site_incidents: dict[str, list[Incident]] = field(default_factory=dict)

    def devices_ok(self, devices: list[str]) -> int:
        return sum(1 for d in devices if self.device.get(d) == "ok")


class LiveStatus:
    def __init__(self, registry: Registry, missed: int = 3):
        self.registry = registry
        self.silence = SilenceDetector(registry, missed=missed, since_ns=0)
        self.site_devices: dict[str, list[str]] = defaultdict(list)
        for d in sorted(registry.devices.values(), key=lambda d: d.id):
            self.site_devices[d.site].append(d.id)
        self.ancestors = {d: frozenset(registry.ancestors(d)) for d in registry.devices}
        self.children: dict[str, list[str]] = defaultdict(list)
        for s in registry.sites.values():
            if s.parent:
                self.children[s.parent].append(s.id)

    def snapshot(self, store, incidents: IncidentStore, now_ns: int) -> Snapshot:
        snap = Snapshot(now_ns, store.last_seen(), incidents.open_incidents())
        self._devices(snap)
        for site in self.registry.sites.values():
            snap.site_incidents.setdefault(site.id, [])
        for inc in snap.open:
            snap.site_incidents.setdefault(inc.site, []).append(inc)
        site_statuses(snap, self.registry.sites, self.site_devices, self.children)
        return snap

    def _devices(self, snap: Snapshot) -> None:
        silent_mask, _, _ = self.silence.evaluate(snap.last_seen, snap.now_ns)
        silent = {d for d, s in zip(self.silence.devices, silent_mask) if s}
        unreachable, silent_roots = set(), set()
        for inc in snap.open:
            ids = snap.device_incidents
            if inc.device:
                ids.setdefault(inc.device, []).append(inc.id)
            if inc.kind in SILENT_ROOT_KINDS and inc.device:
                silent_roots.add(inc.device)
            for dev, role in inc.members:
                ids.setdefault(dev, []).append(inc.id)
                if role == UNREACHABLE:
                    unreachable.add(dev)
        outage_roots = {i.device for i in snap.open if i.kind in OUTAGE_KINDS and i.device}
        for dev in self.registry.devices:
            if dev in unreachable or not outage_roots.isdisjoint(self.ancestors[dev]):
                snap.device[dev] = UNREACHABLE
            elif dev not in snap.last_seen:
                snap.device[dev] = "unknown"
            elif dev in silent or dev in silent_roots:
                snap.device[dev] = "silent"
            else:
                snap.device[dev] = "ok"


def site_statuses(snap: Snapshot, sites, site_devices: dict[str, list[str]], children: dict[str, list[str]]) -> None:
    """Fill ``snap.site`` for ``sites`` from the device statuses and incidents in ``snap``.

    ``site_devices`` and ``children`` may be cut to what one API key sees (api.scope.restrict):
    a site's status then tells only of those devices and incidents.
    """
    for site_id in sites:
        _site(snap, site_id, site_devices, children)


def _site(snap: Snapshot, site_id: str, site_devices, children) -> str:
    if site_id in snap.site:
        return snap.site[site_id]
    devices = site_devices.get(site_id, [])
    if devices:
        status = _own_status(snap, site_id, devices)
    else:
        kids = [_site(snap, c, site_devices, children) for c in children.get(site_id, [])]
        status = _aggregate(kids) if kids else "unknown"
        if status == "ok" and snap.site_incidents.get(site_id):
            status = "degraded"
    snap.site[site_id] = status
    return status


def _own_status(snap: Snapshot, site_id: str, devices: list[str]) -> str:
    states = [snap.device[d] for d in devices]
    incs = snap.site_incidents.get(site_id, [])
    if any(i.kind in OUTAGE_KINDS for i in incs):
        return "down"
    if all(s == "unknown" for s in states):
        return "unknown"
    if all(s in ("silent", UNREACHABLE, "unknown") for s in states):
        return "down"
    if incs or any(s != "ok" for s in states):
        return "degraded"
    return "ok"


def _aggregate(states: list[str]) -> str:
    if all(s == "unknown" for s in states):
        return "unknown"
    if all(s in ("down", "unknown") for s in states):
        return "down"
    if any(s != "ok" for s in states):
        return "degraded"
    return "ok"
