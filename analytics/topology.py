"""Topology: many silent devices behind one uplink or power feed are ONE incident at the parent.

Given the silent devices, each is attributed to its *root*: the silent device it
depends on (through uplinks and power feeds) that itself depends on nothing
silent.  A root with silent dependants becomes one incident ("uplink down at Y
Tý", "power lost at Pha Long"), its dependants are marked "unreachable
(inferred)" and get no alarm of their own.  When a parent still reports but most
of its dependants fell silent together, the incident is opened at the parent all
the same (a dead switch port, a tripped PDU breaker).
"""

from __future__ import annotations

from collections import defaultdict

from device_profiles import Registry

from .incidents import Condition

UNREACHABLE = "unreachable (inferred)"


def _site_label(registry: Registry, site_id: str) -> str:
    site = registry.sites[site_id]
    district = registry.sites.get(site.district) if site.district else None
    return f"{site.name} ({district.name})" if district and district.id != site.id else site.name


class Topology:
    def __init__(self, registry: Registry, together_s: float = 600.0):
        self.registry = registry
        self.together_s = together_s  # dependants silent within this span count as "together"
        self.dependants: dict[str, list[str]] = defaultdict(list)
        self.via: dict[tuple[str, str], str] = {}  # (child, parent) -> "uplink" | "power"
        for d in registry.devices.values():
            for rel in ("uplink", "power"):
                parent = getattr(d, rel)
                if parent:
                    self.dependants[parent].append(d.id)
                    self.via[(d.id, parent)] = rel
        self._ancestors = {d: registry.ancestors(d) for d in registry.devices}
        self._due_s = {d.id: registry.kinds[d.kind].reporting.interval_s + registry.kinds[d.kind].reporting.jitter_s
                       for d in registry.devices.values()}

    def _descendants(self, device: str) -> list[str]:
        out, todo = [], list(self.dependants.get(device, ()))
        while todo:
            d = todo.pop()
            if d not in out:
                out.append(d)
                todo.extend(self.dependants.get(d, ()))
        return out

    def _relation(self, root: str, members: list[str]) -> str:
        """'power' if the root feeds its dependants power, else 'uplink'."""
        rels = [self.via.get((m, root)) for m in members]
        return "power" if rels.count("power") > rels.count("uplink") else "uplink"

    def conditions(self, silent: dict[str, float], on_battery: dict[str, bool] | None = None,
                   heard: dict[str, float] | None = None) -> list[Condition]:
        """``silent``: device id -> time (epoch s) it was last heard from. Returns one Condition per root.

        Every condition's key is ``silence:<root>``: a router that falls silent a
        little before the devices behind it is one incident that grows, not two.

        ``heard`` (every device -> last heard, epoch s): a silent device none of
        whose ancestors is silent yet, but one of which has not been heard from
        since the device's first missed report was due (its last report +
        interval + jitter), is left for later: that ancestor's own verdict is
        due (it reports again, proving the path works, and the device is silent
        on its own; or it goes silent too, and the device is one of its
        unreachable dependants).  A device whose silence deadline comes before
        its uplink's (a shorter interval, or a report just before the cut) thus
        raises no "device silent" alarm of its own before "uplink down".
        """
        on_battery = on_battery or {}
        roots: dict[str, list[str]] = defaultdict(list)
        for d in silent:
            tops = [a for a in self._ancestors[d] if a in silent and not any(x in silent for x in self._ancestors[a])]
            if not tops:
                due = silent[d] + self._due_s[d]  # when its first missed report was due
                if heard is not None and any(heard.get(a, float("-inf")) <= due for a in self._ancestors[d]):
                    continue  # an ancestor not heard since then: its verdict first
                roots.setdefault(d, [])
                continue
            best = max(tops, key=lambda a: sum(1 for x in self._descendants(a) if x in silent))
            roots[best].append(d)

        # A parent that still reports, with most of its dependants silent together: group at the parent.
        lone = {r for r, m in roots.items() if not m}
        for parent, deps in self.dependants.items():
            if parent in silent:
                continue
            quiet = [d for d in deps if d in lone]
            if len(quiet) >= max(2, (len(deps) + 1) // 2):
                times = [silent[d] for d in quiet]
                if max(times) - min(times) <= self.together_s:
                    for d in quiet:
                        lone.discard(d)
                        del roots[d]
                    roots[parent] = quiet

        out = []
        for root, members in roots.items():
            out.append(self._condition(root, sorted(members), silent, on_battery))
        return out

    def _condition(self, root: str, members: list[str], silent: dict[str, float], on_battery: dict[str, bool]) -> Condition:
        reg = self.registry
        dev = reg.devices[root]
        where = _site_label(reg, dev.site)
        interval = reg.kinds[dev.kind].reporting.interval_s
        heard = [silent[d] for d in [root, *members] if d in silent]
        started_ns = int((min(heard) + interval) * 1e9) if heard else 0
        evidence = {"last_heard": {d: silent[d] for d in [root, *members] if d in silent}}
        if not members and on_battery.get(root):
            return Condition(
                key=f"silence:{root}", kind="power_loss", severity="critical",
                title=f"Mất điện / Power lost at {where}: {root} ran on battery, then went silent",
                cause=f"{root} reported running on battery before it went silent: mains and battery are both gone",
                site=dev.site, district=dev.district, device=root, started_ns=started_ns,
                evidence={**evidence, "on_battery_before_silence": [root]})
        if not members:
            return Condition(
                key=f"silence:{root}", kind="silence", severity="warning",
                title=f"Thiết bị mất tín hiệu / Device silent: {root} at {where}",
                cause=f"{root} ({dev.kind}) has missed its reporting contract (every {interval:g} s)",
                site=dev.site, district=dev.district, device=root, started_ns=started_ns, evidence=evidence)
        battery = sorted(d for d in [root, *members] if on_battery.get(d))
        relation = self._relation(root, members)
        n = len(members)
        if battery or relation == "power":
            kind, title = "power_loss", f"Mất điện / Power lost at {where}: {n} device{'s' if n != 1 else ''} unreachable"
            cause = (f"{', '.join(battery)} reported running on battery before the site went silent"
                     if battery else f"power feed {root} is silent and every device it feeds with it")
            evidence["on_battery_before_silence"] = battery
        elif root in silent:
            kind, title = "uplink_down", f"Mất kết nối / Uplink down at {where}: {n} device{'s' if n != 1 else ''} unreachable"
            cause = f"{root} ({dev.kind}) and the {n} devices that reach the network through it are silent"
        else:
            kind, title = "dependants_silent", f"Thiết bị phía sau mất tín hiệu / {n} devices behind {root} silent at {where}"
            cause = f"{root} still reports, but {n} of the devices that depend on it fell silent together"
        return Condition(
            key=f"silence:{root}", kind=kind, severity="critical", title=title, cause=cause,
            site=dev.site, district=dev.district, device=root, started_ns=started_ns, evidence=evidence,
            members=tuple((m, UNREACHABLE) for m in members))
