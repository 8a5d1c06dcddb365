"""What an API key may see: one function per question, used by every route.

A key's scope is ``None`` (province-wide: everything, as before scopes existed) or one of

* ``agency:<id>``: the devices the agency owns (device_profiles/agencies.yaml; ``ubnd_<commune>``
  is a commune's people's committee);
* ``district:<id>``: every device at a site in the district;
* ``commune:<id>``: every device at the commune (site ids of type commune or data_center);

plus, for every scope, the devices marked ``shared: true`` (the province's connected shared data).

What follows from that, and the function that answers it:

* ``Scopes(registry).view(key.scope) -> View``: computed once per scope and cached.  ``View.devices``
  (own + shared), ``View.own`` (in scope, shared left out), ``View.sites`` (sites holding a visible
  device, the scope's own sites, and their ancestors, so a tree can be drawn), ``View.site_devices``
  and ``View.children`` (the registry's indexes cut to the view), ``View.all`` (province-wide).
* ``device_visible(view, device_id)``, ``device_or_404(registry, view, device_id)``: a device
  out of scope answers 404 exactly like an unknown one, so its existence does not leak.
* ``site_visible`` / ``site_or_404``: the same for sites.
* ``incident_visible(view, incident)``: its root device is visible, or one of its member devices
  is in the scope itself (not merely shared), or (district/commune scopes) it sits at a site of the
  scope: so a commune sees the uplink incident of its own commune, and an agency sees the outage
  that made its devices unreachable.  ``incident_or_404``, ``visible_members`` (members cut to the view),
  ``cut`` (the incident with its members cut, for summaries and counts).
* ``rejected_visible(view, row)``: a quarantined reading, by its device; rows naming no known device
  (an undecodable payload) are for province-wide keys only.
* ``restrict(view, snap)``: a live Snapshot (api.live) cut to the view, site statuses recomputed from
  the visible devices and incidents only, so a status never tells of what the key may not see.
* ``require_province_wide(key, what)``: 403 for a scoped key (used by /metrics).

In a route: declare ``view: ViewerScope`` (or ``OperatorScope``) from api.deps next to the key, then
ask the functions above, e.g. ``[d for d in ids if scope.device_visible(view, d)]``, ``scope.device_or_404(
registry, view, device_id)``, ``scope.visible_incidents(view, found)``; ``SnapshotDep`` is already
restricted.  ``view.all`` is True for a province-wide key, for a fast path that changes nothing.

A scope is checked when the key is created (``check(registry, text)``): an unknown agency, district
or commune is refused there, naming the choices.  Admin keys are always province-wide (an admin
manages every key, so a scoped admin could give itself any scope).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from analytics.incidents import Incident
from device_profiles import Registry

from .errors import ApiError, not_found
from .live import Snapshot, site_statuses

SCOPE_KINDS = ("agency", "district", "commune")
SCOPE_HELP = ("agency:<id> (so_tttt, so_tnmt, evn_laocai, ubnd_<commune>), district:<id> or commune:<id>; "
              "leave it out for a province-wide key")


class ScopeError(ValueError):
    """A scope that is malformed or names nothing in the registry; the message says which and what to use."""


@dataclass(frozen=True)
class Scope:
    kind: str  # one of SCOPE_KINDS
    id: str

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"


def parse(text: str | None) -> Scope | None:
    """``"agency:so_tnmt"`` -> Scope; None or "" -> None (province-wide); ScopeError when malformed."""
    if text is None or not text.strip():
        return None
    kind, sep, ident = text.strip().partition(":")
    if not sep or kind not in SCOPE_KINDS or not ident:
        raise ScopeError(f"scope {text!r}: expected {SCOPE_HELP}")
    return Scope(kind, ident)


def check(registry: Registry, text: str | None) -> str | None:
    """The scope as stored (``kind:id``) or None; ScopeError if it names no agency/district/commune."""
    scope = parse(text)
    if scope is None:
        return None
    if scope.kind == "agency":
        known = sorted(registry.agencies)
        ok = scope.id in registry.agencies
    elif scope.kind == "district":
        known = sorted(s.id for s in registry.sites.values() if s.type == "district")
        ok = scope.id in known
    else:
        known = sorted(s.id for s in registry.sites.values() if s.type in ("commune", "data_center"))
        ok = scope.id in known
    if not ok:
        shown = ", ".join(known[:12]) + (f" ... ({len(known)} in all)" if len(known) > 12 else "")
        raise ScopeError(f"scope {text!r}: no {scope.kind} {scope.id!r} in the registry; known: {shown}")
    return str(scope)


@dataclass(frozen=True)
class View:
    """What one scope sees (see the module docstring)."""

    scope: str | None
    all: bool
    devices: frozenset[str]
    own: frozenset[str]
    sites: frozenset[str]
    scope_sites: frozenset[str]  # district/commune scopes: the sites the scope covers; else empty
    site_devices: dict[str, list[str]] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)


class Scopes:
    """The views of one registry, one per scope, built on first use."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self._views: dict[str | None, View] = {}

    def view(self, scope: str | None) -> View:
        if scope not in self._views:
            self._views[scope] = self._build(parse(scope))
        return self._views[scope]

    def _subtree(self, site_id: str) -> set[str]:
        kids = defaultdict(list)
        for s in self.registry.sites.values():
            if s.parent:
                kids[s.parent].append(s.id)
        out, todo = set(), [site_id]
        while todo:
            s = todo.pop()
            out.add(s)
            todo.extend(kids[s])
        return out

    def _build(self, scope: Scope | None) -> View:
        reg = self.registry
        scope_sites: set[str] = set()
        if scope is None:
            own = set(reg.devices)
        elif scope.kind == "agency":
            own = {d.id for d in reg.devices.values() if d.owner == scope.id}
        else:
            scope_sites = self._subtree(scope.id) if scope.id in reg.sites else set()
            own = {d.id for d in reg.devices.values() if d.site in scope_sites}
        devices = own | {d.id for d in reg.devices.values() if d.shared}
        sites = {reg.devices[d].site for d in devices} | scope_sites
        if scope is None:
            sites = set(reg.sites)
        for s in list(sites):  # ancestors, so that the tree reaches the province
            parent = reg.sites[s].parent
            while parent and parent not in sites:
                sites.add(parent)
                parent = reg.sites[parent].parent
        site_devices: dict[str, list[str]] = defaultdict(list)
        for d in sorted(devices):
            site_devices[reg.devices[d].site].append(d)
        children: dict[str, list[str]] = defaultdict(list)
        for s in reg.sites.values():
            if s.parent and s.id in sites:
                children[s.parent].append(s.id)
        return View(None if scope is None else str(scope), scope is None, frozenset(devices), frozenset(own),
                    frozenset(sites), frozenset(scope_sites), dict(site_devices), dict(children))


# --- devices and sites --------------------------------------------------------------------------


def device_visible(view: View, device_id: str) -> bool:
    return device_id in view.devices


def device_or_404(registry: Registry, view: View, device_id: str):
    """The registry's device, or 404 (the same answer for an unknown device and one out of scope)."""
    dev = registry.devices.get(device_id)
    if dev is None or device_id not in view.devices:
        raise not_found("device", device_id, "see GET /api/v1/devices for the devices your key can see")
    return dev


def site_visible(view: View, site_id: str) -> bool:
    return site_id in view.sites


def site_or_404(registry: Registry, view: View, site_id: str):
    site = registry.sites.get(site_id)
    if site is None or site_id not in view.sites:
        raise not_found("site", site_id, "see GET /api/v1/sites for the sites your key can see")
    return site


# --- incidents ----------------------------------------------------------------------------------


def incident_visible(view: View, inc: Incident) -> bool:
    if view.all or inc.device in view.devices or inc.site in view.scope_sites:
        return True
    return any(dev in view.own for dev, _ in inc.members)


def visible_incidents(view: View, incidents: Iterable[Incident]) -> list[Incident]:
    return [i for i in incidents if incident_visible(view, i)]


def incident_or_404(view: View, inc: Incident | None, incident_id: int) -> Incident:
    if inc is None or not incident_visible(view, inc):
        raise not_found("incident", incident_id, "see GET /api/v1/incidents for the incidents your key can see")
    return inc


def visible_members(view: View, inc: Incident) -> tuple[tuple[str, str], ...]:
    return inc.members if view.all else tuple(m for m in inc.members if m[0] in view.devices)


def cut(view: View, inc: Incident) -> Incident:
    """The incident with its members cut to the view (so counts such as 'unreachable' tell only of those)."""
    return inc if view.all else replace(inc, members=visible_members(view, inc))


# --- quarantine, live status, Prometheus --------------------------------------------------------


def rejected_visible(view: View, row) -> bool:
    """A quarantined reading (storage.base.Rejected): visible when its device is."""
    return view.all or (bool(row.device) and row.device in view.devices)


def restrict(view: View, snap: Snapshot) -> Snapshot:
    """The snapshot as this view may see it: visible devices and incidents, site statuses from those only."""
    if view.all:
        return snap
    open_ = [cut(view, i) for i in visible_incidents(view, snap.open)]
    ids = {i.id for i in open_}
    out = Snapshot(snap.now_ns, {d: t for d, t in snap.last_seen.items() if d in view.devices}, open_)
    out.device = {d: s for d, s in snap.device.items() if d in view.devices}
    out.device_incidents = {d: [i for i in found if i in ids]
                            for d, found in snap.device_incidents.items() if d in view.devices}
    out.site_incidents = {s: [] for s in view.sites}
    for inc in open_:
        out.site_incidents.setdefault(inc.site, []).append(inc)
    site_statuses(out, view.sites, view.site_devices, view.children)
    return out


def require_province_wide(key, what: str) -> None:
    if key is not None and key.scope is not None:
        raise ApiError(403, "forbidden", f"{what} covers the whole province; your key ({key.prefix}…, {key.name!r}) "
                                         f"is scoped to {key.scope}: use a province-wide key",
                       {"key_scope": key.scope})
