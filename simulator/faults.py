"""Named faults the simulator can inject, and their effect on the readings.

A fault is written ``name:target[:start_s[:duration_s]]``: ``start_s`` is in
simulated seconds after the simulation start (default 0), ``duration_s`` in
simulated seconds (default: until the end).  Examples::

    uplink_cut:y_ty            power_loss:ta_van:600:3600     crac_failure:dc
    stuck_sensor:cocleu-wl-1   flood:cocleu-wl-1:300          malformed:0.01

:meth:`Fault.parse` raises ValueError for an unknown name or a bad number;
targets are checked against the registry (``Fault.parse(spec, registry)`` or
when the :class:`~simulator.core.Simulation` is built), again with ValueError
naming the fault, the target and the valid choices.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from functools import partial

import numpy as np

POWER_DRAIN_S = 1200.0  # a commune UPS carries its load this long on battery
FLOOD_RISE_S = 3600.0  # a flood takes the river past crit in this long
CRAC_RATE_C_PER_MIN = 0.3
CLOCK_SKEW_S = 3600.0

FAULTS = {
    "uplink_cut": "<site id>: the site's router and every device behind it fall silent",
    "power_loss": "<site id>: the site's UPS runs on battery for ~20 min, then it and all it powers fall silent",
    "crac_failure": "<crac device id | dc>: supply/return air climb ~0.3 °C/min, fans drop, server inlets follow",
    "stuck_sensor": "<device id>: the device repeats one value on its numeric fields",
    "flood": "<water-level device id>: the river rises past the warn and crit marks over ~1 hour",
    "speaker_offline": "<site id>: the site's IP loudspeaker clusters fall silent",
    "clock_skew": "<device id>: timestamps 1 hour ahead of max(simulated time, wall clock): refused, bad_timestamp",
    "link_replay": "<site id>: like uplink_cut, but the devices keep measuring and replay their buffer, 60 readings "
                   "a message, when the link returns (docs/time.md)",
    "malformed": "<rate 0..1>: that share of messages replaced by one-reading bad payloads",
}

ON_BATT = re.compile(r"on_batt|battery_mode|mains_fail")
BATT_PCT = re.compile(r"batt\w*(charge|pct|level|soc)|(^|_)soc($|_)")
RUNTIME = re.compile(r"runtime|autonomy|time_left|remaining")
INPUT_V = re.compile(r"(input|mains|grid|utility)\w*volt|(input|mains)_v($|_)")
SUPPLY_T = re.compile(r"supply\w*temp")
RETURN_T = re.compile(r"(return|exhaust)\w*temp")
FAN = re.compile(r"fan")
HEATED_T = re.compile(r"(inlet|intake|cpu|chip|die|asic|gpu)\w*temp")


def _choices(items, target: str = "", limit: int = 80) -> str:
    items = sorted(items)
    close = difflib.get_close_matches(target, items, n=3, cutoff=0.6)
    more = f", ... ({len(items)} in all)" if len(items) > limit else ""
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return ", ".join(items[:limit]) + more + hint


@dataclass(frozen=True)
class Fault:
    name: str
    target: str
    start_s: float = 0.0
    duration_s: float | None = None

    @property
    def end_s(self) -> float:
        return math.inf if self.duration_s is None else self.start_s + self.duration_s

    @classmethod
    def parse(cls, spec: str, registry=None) -> Fault:
        """``name:target[:start_s[:duration_s]]`` -> Fault; ValueError names what is wrong and the choices."""
        parts = spec.strip().split(":")
        if len(parts) < 2 or len(parts) > 4 or not parts[0] or not parts[1]:
            raise ValueError(f"fault {spec!r}: expected NAME:TARGET[:START_S[:DURATION_S]], "
                             f"NAME one of {', '.join(FAULTS)}")
        name, target = parts[0], parts[1]
        if name not in FAULTS:
            raise ValueError(f"fault {spec!r}: unknown fault {name!r} (target {target!r}); "
                             f"valid faults: {', '.join(FAULTS)}")
        nums = []
        for label, text in zip(("start_s", "duration_s"), parts[2:]):
            try:
                x = float(text)
            except ValueError:
                raise ValueError(f"fault {spec!r}: {label} {text!r} is not a number of seconds") from None
            if not math.isfinite(x) or x < 0 or (label == "duration_s" and x == 0):
                raise ValueError(f"fault {spec!r}: {label} must be a finite number of seconds "
                                 f"({'> 0' if label == 'duration_s' else '>= 0'}), got {text!r}")
            nums.append(x)
        fault = cls(name, target, *nums)
        if name == "malformed":
            fault.rate  # noqa: B018 - validates
        if registry is not None:
            fault.devices(registry)
        return fault

    def __str__(self) -> str:
        s = f"{self.name}:{self.target}"
        if self.start_s or self.duration_s is not None:
            s += f":{self.start_s:g}"
        return s + (f":{self.duration_s:g}" if self.duration_s is not None else "")

    @property
    def rate(self) -> float:
        """For ``malformed``: the share of messages to break, in (0, 1]."""
        try:
            r = float(self.target)
        except ValueError:
            r = -1.0
        if not 0 < r <= 1:
            raise ValueError(f"fault malformed: target {self.target!r} must be a rate in (0, 1], e.g. malformed:0.01")
        return r

    def _bad(self, what: str, choices) -> ValueError:
        return ValueError(f"fault {self.name}: target {self.target!r} is not {what}; valid choices: {_choices(choices, self.target)}")

    def devices(self, registry) -> list[str]:
        """The devices this fault acts on directly (validated against ``registry``; ValueError if not)."""
        reg, t = registry, self.target
        by_site: dict[str, list] = {}
        for d in reg.devices.values():
            by_site.setdefault(d.site, []).append(d)
        if self.name == "malformed":
            return []
        if self.name in ("uplink_cut", "link_replay"):
            uplinks = {d.uplink for d in reg.devices.values() if d.uplink}
            sites = {s: [d.id for d in devs if d.id in uplinks] for s, devs in by_site.items()}
            sites = {s: ids for s, ids in sites.items() if ids}
            if t not in sites:
                raise self._bad("a site with a router (an uplink other devices reach the network through)", sites)
            return sites[t]
        if self.name == "power_loss":
            feeds = {d.power for d in reg.devices.values() if d.power}
            ups = {d.kind for d in reg.devices.values()
                   if any(ON_BATT.search(f) for f in reg.kinds[d.kind].fields)}
            sites = {s: [d.id for d in devs if d.id in feeds and d.kind in ups] for s, devs in by_site.items()}
            sites = {s: ids for s, ids in sites.items() if ids}
            if t not in sites:
                raise self._bad("a site with a UPS that powers other devices", sites)
            return sites[t]
        if self.name == "speaker_offline":
            duty = {k for k, p in reg.kinds.items() if p.reporting.duty_cycle is not None or "loudspeaker" in k}
            sites = {s: [d.id for d in devs if d.kind in duty] for s, devs in by_site.items()}
            sites = {s: ids for s, ids in sites.items() if ids}
            if t not in sites:
                raise self._bad("a site with IP loudspeaker clusters", sites)
            return sites[t]
        if self.name == "crac_failure":
            cracs = [d.id for d in reg.devices.values() if _is_crac(reg.kinds[d.kind])]
            if t == "dc" and cracs:
                return cracs
            if t not in cracs:
                raise self._bad("a CRAC device id (or 'dc' for all of them)", cracs + ["dc"])
            return [t]
        if self.name == "flood":
            levels = [d.id for d in reg.devices.values() if flood_field(reg.kinds[d.kind]) is not None]
            if t not in levels:
                raise self._bad("a water-level device id", levels)
            return [t]
        if self.name == "stuck_sensor":
            numeric = [d.id for d in reg.devices.values()
                       if any(f.type != "bool" for f in reg.kinds[d.kind].fields.values())]
            if t not in numeric:
                raise self._bad("a device id with numeric fields", numeric)
            return [t]
        if t not in reg.devices:  # clock_skew
            raise self._bad("a device id", reg.devices)
        return [t]


def _is_crac(profile) -> bool:
    names = list(profile.fields)
    return profile.kind == "crac" or (any(SUPPLY_T.search(n) for n in names) and any(RETURN_T.search(n) for n in names))


def flood_field(profile) -> str | None:
    """The river-stage field of a kind (a 'level' field with a crit_above mark), or None."""
    for name, spec in profile.fields.items():
        if spec.type != "bool" and spec.limits is not None and spec.limits.crit_above is not None and "level" in name:
            return name
    return None


def silenced_by(fault: Fault, registry) -> set[str]:
    """Every device a silencing fault takes off the air (its direct targets and all that depend on them)."""
    direct = set(fault.devices(registry))
    if fault.name not in ("uplink_cut", "power_loss", "speaker_offline", "link_replay"):
        return set()
    return direct | {d for d in registry.devices if direct.intersection(registry.ancestors(d))}


def _ramp(off: np.ndarray, start: float, span: float) -> np.ndarray:
    return np.clip((off - start) / span, 0.0, 1.0)


class FaultPlan:
    """The faults resolved against the registry and the kind models; times are sim offsets (s)."""

    def __init__(self, faults: list[Fault], registry, models: dict):
        self.faults = list(faults)
        self.silence: dict[str, list] = {}  # kind -> [(device mask, start, end)]
        self.stuck: dict[str, list] = {}
        self.skew: dict[str, list] = {}
        self.held: dict[str, list] = {}  # kind -> [(device mask, start, end)]: measured, buffered, replayed at end
        self.effects: dict[str, list] = {}  # kind -> [(fn, device mask, fault)]
        self.malformed = [(f.rate, f.start_s, f.end_s) for f in self.faults if f.name == "malformed"]

        def mask(m, ids) -> np.ndarray:
            return np.array([i in ids for i in m.ids], dtype=bool)

        for f in self.faults:
            direct = set(f.devices(registry))
            if f.name == "link_replay":
                for kind, m in models.items():
                    if (mk := mask(m, silenced_by(f, registry))).any():
                        self.held.setdefault(kind, []).append((mk, f.start_s, f.end_s))
            if f.name in ("uplink_cut", "speaker_offline", "power_loss"):
                gone = silenced_by(f, registry)
                start = f.start_s + (POWER_DRAIN_S if f.name == "power_loss" else 0.0)
                for kind, m in models.items():
                    if (mk := mask(m, gone)).any():
                        self.silence.setdefault(kind, []).append((mk, start, f.end_s))
            targets = {"stuck_sensor": self.stuck, "clock_skew": self.skew}
            for kind, m in models.items():
                mk = mask(m, direct)
                if f.name in targets and mk.any():
                    targets[f.name].setdefault(kind, []).append((mk, f.start_s, f.end_s))
                elif f.name in ("power_loss", "flood") and mk.any():
                    fn = _power_loss if f.name == "power_loss" else _flood
                    self.effects.setdefault(kind, []).append((fn, mk, f))
            if f.name == "crac_failure":
                self._crac(f, direct, registry, models, mask)

    def _crac(self, f: Fault, failed: set, registry, models, mask) -> None:
        for site in {registry.devices[i].site for i in failed}:
            at_site = [d for d in registry.devices.values() if d.site == site]
            cracs = [d.id for d in at_site if _is_crac(registry.kinds[d.kind])]
            share = len(failed.intersection(cracs)) / len(cracs)
            rest = {d.id for d in at_site if d.id not in failed}
            for kind, m in models.items():
                if (mk := mask(m, failed)).any():
                    self.effects.setdefault(kind, []).append((_crac_failed, mk, f))
                if (mk := mask(m, rest)).any():
                    self.effects.setdefault(kind, []).append((partial(_crac_room, share=share), mk, f))

    # -------------------------------------------------------------- queries by the core

    @staticmethod
    def _active(entries, dev, off):
        out = np.zeros(dev.shape, dtype=bool)
        for mk, a, b in entries:
            out |= mk[dev] & (off >= a) & (off < b)
        return out

    def silent(self, kind: str, dev: np.ndarray, off: np.ndarray) -> np.ndarray:
        return self._active(self.silence.get(kind, ()), dev, off)

    def stuck_at(self, m, dev, k, off) -> np.ndarray:
        """Reading index to evaluate (the first one in the stuck window, for stuck sensors)."""
        entries = self.stuck.get(m.kind)
        if not entries:
            return k
        k = k.copy()
        for mk, a, b in entries:
            hit = mk[dev] & (off >= a) & (off < b)
            if hit.any():
                first = np.ceil((m.t0 + a - m.phase[dev[hit]]) / m.interval_s).astype(np.int64)
                k[hit] = first
        return k

    def holding(self, kind: str, dev: np.ndarray, off: np.ndarray) -> np.ndarray:
        """Readings measured but held back (link_replay): published when the link returns."""
        return self._active(self.held.get(kind, ()), dev, off)

    def skew_s(self, kind: str, dev, off) -> np.ndarray:
        return np.where(self._active(self.skew.get(kind, ()), dev, off), CLOCK_SKEW_S, 0.0)

    def apply(self, m, c, off: np.ndarray) -> None:
        """Apply the value effects (power loss, flood, CRAC failure) to ``c.vals`` in place."""
        for fn, mk, f in self.effects.get(m.kind, ()):
            sel = mk[c.dev] & (off >= f.start_s) & (off < f.end_s)
            if sel.any():
                fn(c, sel, off - f.start_s)

    def malformed_rate(self, off: np.ndarray) -> np.ndarray:
        rate = np.zeros(off.shape)
        for r, a, b in self.malformed:
            rate = np.maximum(rate, np.where((off >= a) & (off < b), r, 0.0))
        return rate


def _fields(c, pattern):
    return [n for n in c.vals if pattern.search(n) and c.m.profile.fields[n].type != "bool"]


def _power_loss(c, sel, elapsed) -> None:
    drain = _ramp(elapsed[sel], 0.0, POWER_DRAIN_S)
    for n in c.vals:
        spec = c.m.profile.fields[n]
        if spec.type == "bool" and ON_BATT.search(n):
            c.vals[n] = np.where(sel, True, c.vals[n])
    for n in _fields(c, BATT_PCT):
        c.vals[n][sel] = c.vals[n][sel] * (1 - drain) + 3.0 * drain
    for n in _fields(c, RUNTIME):
        c.vals[n][sel] = c.vals[n][sel] * (1 - drain)
    for n in _fields(c, INPUT_V):
        c.vals[n][sel] = 0.0


def _flood(c, sel, elapsed) -> None:
    name = flood_field(c.m.profile)
    if name is None:
        return
    lim = c.m.profile.fields[name].limits
    warn = lim.warn_above if lim.warn_above is not None else lim.crit_above * 0.8
    peak = lim.crit_above + 0.3 * (lim.crit_above - warn)
    v = c.vals[name]
    v[sel] = v[sel] + (peak - v[sel]) * _ramp(elapsed[sel], 0.0, FLOOD_RISE_S)


def _crac_failed(c, sel, elapsed) -> None:
    rise = CRAC_RATE_C_PER_MIN * elapsed[sel] / 60.0
    for n in _fields(c, SUPPLY_T) + _fields(c, RETURN_T):
        c.vals[n][sel] += rise
    for n in _fields(c, FAN):
        c.vals[n][sel] *= 1 - 0.8 * _ramp(elapsed[sel], 0.0, 90.0)


def _crac_room(c, sel, elapsed, *, share: float) -> None:
    """The rest of the room heats at ``share`` of the failed unit's rate; healthy CRACs push their fans."""
    rise = CRAC_RATE_C_PER_MIN * share * elapsed[sel] / 60.0
    for n in _fields(c, HEATED_T) + _fields(c, RETURN_T):
        c.vals[n][sel] += rise
    for n in _fields(c, FAN):
        c.vals[n][sel] += (100.0 - c.vals[n][sel]) * share * _ramp(elapsed[sel], 0.0, 300.0)
