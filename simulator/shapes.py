"""What each field of each kind looks like: a per-(kind, field) table for the
shipped profiles, and a generic fallback driven by the field's name, unit,
range and alarm marks, so a new kind simulates without code.

A shape is ``(model, params)``; a model is a function of a :class:`Ctx` (the
readings being generated) returning a float or bool numpy array, before the
value is clamped to the field's valid range and rounded (see ``finalize``).
Values are in the profile's own units.
"""

from __future__ import annotations

import math
import re
from functools import cached_property

import numpy as np

from . import signals as sg


class Ctx:
    """The readings of one kind being generated in one step: devices, reading indexes, times."""

    def __init__(self, model, dev: np.ndarray, k: np.ndarray, t: np.ndarray):
        self.m = model
        self.dev, self.k, self.t = dev, k, t
        self.keys = model.keys[dev]
        self.region = model.region[dev]
        self.elev = model.elev[dev]
        self.vals: dict[str, np.ndarray] = {}

    def trait(self, name: str) -> np.ndarray:
        """A fixed uniform [0, 1) per device for ``name`` (a rating, an offset)."""
        return self.m.trait(name)[self.dev]

    def noise(self, name: str) -> np.ndarray:
        return sg.normal(self.keys ^ np.uint64(sg.key(self.m.seed, sg.stable_id(name), 2)), self.k)

    @cached_property
    def hour(self):
        return sg.local_hour(self.t, self.m.offset_s)

    @cached_property
    def doy(self):
        return sg.day_of_year(self.t, self.m.offset_s)

    @cached_property
    def weather(self):
        return sg.weather(self.m.seed, self.region, self.t)

    @cached_property
    def rain(self):
        return sg.rain_rate(self.m.seed, self.region, self.t, self.m.offset_s)

    @cached_property
    def temp_out(self):
        return sg.outdoor_temp(self.m.seed, self.region, self.elev, self.t, self.m.offset_s, self.rain)

    @cached_property
    def activity(self):
        return ACTIVITY[self.m.activity](self)


def _bell(h, centre, width):
    d = np.mod(h - centre + 12, 24) - 12
    return np.exp(-((d / width) ** 2))


def _act_night(c: Ctx):
    """Street lights: full from dusk to 23:00, dimmed to 60 % until dawn, off by day."""
    rise, sset = sg.sun_hours(c.doy)
    h = c.hour
    on = (h >= sset - 0.25) | (h < rise + 0.25)
    return np.where(on, np.where((h >= 23) | (h < rise + 0.25), 0.6, 1.0), 0.0)


ACTIVITY = {
    "night": _act_night,
    "daylight": lambda c: np.clip(np.sin(np.pi * (c.hour - 6) / 12), 0, 1),
    "evening": lambda c: np.clip(0.1 + 0.45 * np.clip(np.sin(np.pi * (c.hour - 6) / 16), 0, 1)
                                 + 0.5 * _bell(c.hour, 20.5, 2.0), 0, 1),
    "business": lambda c: np.clip(0.5 * _bell(c.hour, 10, 3) + 0.6 * _bell(c.hour, 15, 3), 0, 1),
    "always": lambda c: np.ones_like(c.t),
}
KIND_ACTIVITY = {"street_light": "night", "camera": "daylight", "commune_router": "evening",
                 "commune_ups": "evening", "ip_loudspeaker": "always"}
FAMILY_ACTIVITY = {"data_center": "business", "commune": "evening", "smart_city": "daylight"}


# ------------------------------------------------------------------ models

def m_level(c, name, spec, base, spread=0.0, daily=0.0, peak_h=14.0, noise=0.0, weather=0.0, act=0.0):
    """base ± spread per device, + day/night swing peaking at ``peak_h``, + activity, weather, noise."""
    v = base + spread * (2 * c.trait(name) - 1) + act * c.activity
    if daily:
        v = v + daily * np.cos(2 * np.pi * (c.hour - peak_h) / 24)
    if weather:
        v = v + weather * c.weather
    return v + noise * c.noise(name) if noise else v


def m_outdoor_temp(c, name, spec, add=0.0, sun=0.0, noise=0.15):
    """Outdoor air temperature, plus ``add`` and ``sun`` °C of solar heating at noon (enclosures)."""
    v = c.temp_out + add + 0.3 * (2 * c.trait(name) - 1) + noise * c.noise(name)
    if sun:
        v = v + sun * np.clip(np.sin(np.pi * (c.hour - 6) / 12), 0, 1)
    return v


def m_outdoor_rh(c, name, spec, noise=1.0):
    rh = sg.outdoor_humidity(c.m.seed, c.region, c.elev, c.t, c.m.offset_s, c.rain)
    return rh + noise * c.noise(name)


def m_rain_rate(c, name, spec):
    return c.rain * (0.85 + 0.3 * c.trait(name))


def m_rain_amount(c, name, spec):
    """Rain fallen over the reporting interval (mm), from the rate at the report."""
    return c.rain * (0.85 + 0.3 * c.trait(name)) * c.m.interval_s / 3600.0


def m_river(c, name, spec, noise=0.01):
    """River stage: seasonal base flow plus the lagged answer to recent showers, kept below the warn mark."""
    warn = _marks(spec)[1]
    lo = max(spec.min, 0.0) if spec.min < 0 < warn else spec.min
    span = warn - lo
    resp = sg.river_response(c.m.seed, c.region, c.t, c.m.offset_s, 3.0 + 4.0 * c.trait(name + ".lag"))
    base = lo + span * (0.18 + 0.12 * c.trait(name) + 0.15 * sg.monsoon(c.doy))
    return base + 0.45 * span * resp + noise * span * c.noise(name)


def m_pm25(c, name, spec, noise=2.0):
    """PM2.5 (µg/m³): smoky dry season, clean monsoon; traffic peaks at 7:30 and 20:00; washed out by rain."""
    season = 30 + 15 * np.cos(2 * np.pi * (c.doy - 45) / sg.YEAR_DAYS)
    traffic = 0.85 + 0.3 * _bell(c.hour, 7.5, 1.5) + 0.45 * _bell(c.hour, 20, 2.0) - 0.15 * _bell(c.hour, 14, 3)
    site = (0.6 + 0.7 * c.trait(name)) * np.where(c.elev > 1000, 0.7, 1.0)
    v = season * traffic * site * np.exp(0.35 * c.weather) * (1 - 0.6 * np.tanh(c.rain / 8))
    return np.maximum(v * (1 + 0.05 * c.noise(name)) + 0.3 * noise * c.noise(name + "+"), 1.5 + c.trait(name))


def m_ratio(c, name, spec, of, lo, hi, noise=0.0, add=0.0):
    """``of`` × a per-device ratio in [lo, hi] (+ add, + noise)."""
    return c.vals[of] * (lo + (hi - lo) * c.trait(name)) + add + noise * c.noise(name)


def m_linear(c, name, spec, of, a, b_lo, b_hi, noise=0.0):
    """a + b·``of`` with b per device in [b_lo, b_hi]."""
    return a + c.vals[of] * (b_lo + (b_hi - b_lo) * c.trait(name)) + noise * c.noise(name)


def m_inverse(c, name, spec, of, k_lo, k_hi, noise=0.0):
    """k / ``of`` (runtime from load), k per device in [k_lo, k_hi]."""
    return (k_lo + (k_hi - k_lo) * c.trait(name)) / np.maximum(c.vals[of], 1.0) + noise * c.noise(name)


def m_const(c, name, spec, lo, hi=None):
    """A per-device constant in [lo, hi] (ports installed, volume set)."""
    return lo + ((hi if hi is not None else lo) - lo) * c.trait(name)


def m_events(c, name, spec, mean=0.2):
    """Rare small counts per interval (errors): mostly 0, now and then a few."""
    u = sg.uniform(c.keys ^ np.uint64(sg.key(c.m.seed, sg.stable_id(name), 3)), c.k)
    return np.floor(-np.log1p(-u) * mean * 1.5 - 0.5).clip(0)


def m_dim(c, name, spec):
    return 100.0 * c.activity


def m_bool(c, name, spec, value):
    return np.full(c.t.shape, bool(value))


def m_active(c, name, spec):
    return c.activity > 0.05


MODELS = {f.__name__[2:]: f for f in (m_level, m_outdoor_temp, m_outdoor_rh, m_rain_rate, m_rain_amount, m_river,
                                       m_pm25, m_ratio, m_linear, m_inverse, m_const, m_events, m_dim, m_bool, m_active)}

# ------------------------------------------------------------------ the shipped kinds

L = "level"
TABLE: dict[tuple[str, str], tuple[str, dict]] = {
    ("air_quality", "pm25"): ("pm25", {}),
    ("air_quality", "pm10"): ("ratio", dict(of="pm25", lo=1.45, hi=1.9, noise=3.0)),
    ("air_quality", "temperature"): ("outdoor_temp", {}),
    ("air_quality", "humidity"): ("outdoor_rh", {}),
    ("camera", "online"): ("bool", dict(value=True)),
    ("camera", "fps"): (L, dict(base=25.0, noise=0.03)),
    ("camera", "bitrate_kbps"): (L, dict(base=2600, spread=600, act=1800, noise=180)),
    ("camera", "storage_used_pct"): (L, dict(base=76, spread=6, noise=0.05)),
    ("commune_router", "link_up"): ("bool", dict(value=True)),
    ("commune_router", "latency_ms"): (L, dict(base=22, spread=8, act=18, noise=3)),
    ("commune_router", "packet_loss_pct"): (L, dict(base=0.02, act=0.25, noise=0.04)),
    ("commune_router", "rx_mbps"): (L, dict(base=3, spread=1.5, act=55, noise=3)),
    ("commune_router", "tx_mbps"): ("ratio", dict(of="rx_mbps", lo=0.15, hi=0.35, noise=0.5)),
    ("commune_ups", "on_battery"): ("bool", dict(value=False)),
    ("commune_ups", "battery_charge_pct"): (L, dict(base=99.6, spread=0.4)),
    ("commune_ups", "load_pct"): (L, dict(base=24, spread=8, act=12, noise=0.8)),
    ("commune_ups", "input_voltage_v"): (L, dict(base=224, spread=3, act=-9, noise=1.5)),
    ("commune_ups", "runtime_min"): ("inverse", dict(of="load_pct", k_lo=2400, k_hi=3600)),
    ("core_switch", "ports_up"): ("const", dict(lo=40, hi=48)),
    ("core_switch", "ports_down"): ("const", dict(lo=0, hi=1.4)),
    ("core_switch", "rx_errors"): ("events", dict(mean=0.3)),
    ("core_switch", "tx_errors"): ("events", dict(mean=0.15)),
    ("core_switch", "cpu_pct"): (L, dict(base=11, spread=3, act=6, noise=1.2)),
    ("crac", "supply_temp_c"): (L, dict(base=19.8, spread=0.4, noise=0.12)),
    ("crac", "return_temp_c"): (L, dict(base=28.5, spread=0.8, act=1.2, noise=0.25)),
    ("crac", "humidity_pct"): (L, dict(base=46, spread=3, noise=0.6)),
    ("crac", "fan_speed_pct"): (L, dict(base=62, spread=4, act=8, noise=0.8)),
    ("dc_ups", "on_battery"): ("bool", dict(value=False)),
    ("dc_ups", "load_pct"): (L, dict(base=31, spread=2, act=3, noise=0.4)),
    ("dc_ups", "battery_charge_pct"): (L, dict(base=99.7, spread=0.3)),
    ("dc_ups", "input_voltage_v"): (L, dict(base=400, spread=4, act=-4, noise=1.5)),
    ("dc_ups", "runtime_min"): ("inverse", dict(of="load_pct", k_lo=700, k_hi=850)),
    ("ip_loudspeaker", "online"): ("bool", dict(value=True)),
    ("ip_loudspeaker", "broadcasting"): ("active", {}),
    ("ip_loudspeaker", "volume_pct"): ("const", dict(lo=60, hi=85)),
    ("ip_loudspeaker", "amp_temperature_c"): ("outdoor_temp", dict(add=16, noise=0.8)),
    ("rack_pdu", "power_kw"): (L, dict(base=3.4, spread=1.0, act=0.35, noise=0.04)),
    ("rack_pdu", "current_a"): ("ratio", dict(of="power_kw", lo=4.45, hi=4.7, noise=0.05)),
    ("rack_pdu", "voltage_v"): (L, dict(base=231, spread=2, noise=0.8)),
    ("server", "cpu_pct"): (L, dict(base=18, spread=12, act=22, noise=4)),
    ("server", "mem_pct"): (L, dict(base=55, spread=15, act=4, noise=0.8)),
    ("server", "disk_pct"): (L, dict(base=48, spread=20, noise=0.02)),
    ("server", "inlet_temp_c"): (L, dict(base=22.4, spread=0.8, act=0.3, noise=0.12)),
    ("server", "cpu_temp_c"): ("linear", dict(of="cpu_pct", a=38, b_lo=0.3, b_hi=0.4, noise=0.8)),
    ("street_light", "lamp_on"): ("active", {}),
    ("street_light", "dim_level"): ("dim", {}),
    ("street_light", "power_w"): ("linear", dict(of="dim_level", a=12, b_lo=15, b_hi=80, noise=3)),
    ("street_light", "voltage_v"): (L, dict(base=224, spread=3, act=-7, noise=1.5)),
    ("water_level", "level_m"): ("river", {}),
    ("water_level", "rain_mm"): ("rain_amount", {}),
    ("water_level", "rain_intensity_mm_h"): ("rain_rate", {}),
}


# ------------------------------------------------------------------ the generic fallback

def _marks(spec) -> tuple[float, float]:
    """The normal band of a numeric field: [warn_below or min, warn_above or max]."""
    lo, hi = spec.min, spec.max
    lim = spec.limits
    if lim is not None:
        lo = next((x for x in (lim.warn_below, lim.crit_below) if x is not None), lo)
        hi = next((x for x in (lim.warn_above, lim.crit_above) if x is not None), hi)
    return float(lo), float(hi)


NOMINAL_V = (400, 230, 220, 120, 48, 24, 12, 5)
_OK_BOOL = re.compile(r"online|link|(^|_)up($|_)|ok($|_)|healthy|connected|recording|ready|available|reachable")
_ACTIVE_BOOL = re.compile(r"(^|_)(on|lit|lamp_on|light_on|playing|active|broadcasting|running|streaming)($|_)")


def generic_shape(family: str, name: str, spec) -> tuple[str, dict]:
    """A plausible shape for a field nobody described, from its name, unit, range and marks."""
    if spec.type == "bool":
        if _ACTIVE_BOOL.search(name):
            return "active", {}
        return "bool", dict(value=bool(_OK_BOOL.search(name)))
    lo, hi = _marks(spec)
    span = hi - lo
    unit = spec.unit.strip()
    if unit in ("°C", "degC", "C") or "temp" in name:
        if family == "data_center":
            return L, dict(base=min(max(24.0, lo), hi), spread=1.0, noise=0.15)
        return "outdoor_temp", dict(add=0.0 if family == "smart_city" else 6.0, sun=0.0 if family == "smart_city" else 6.0)
    if "humid" in name or unit.upper() == "%RH":
        return ("outdoor_rh", {}) if family != "data_center" else (L, dict(base=45, spread=3, noise=0.6))
    if unit == "V":
        v = next((v for v in NOMINAL_V if lo < v < hi), (lo + hi) / 2)
        return L, dict(base=v, spread=0.01 * v, noise=0.006 * v)
    if unit == "Hz":
        return L, dict(base=50.0 if lo < 50 < hi else (lo + hi) / 2, noise=0.02)
    if "rain" in name or "precip" in name:
        return ("rain_rate", {}) if "/h" in unit else ("rain_amount", {})
    if "batt" in name and unit == "%":
        return L, dict(base=min(99.6, hi), spread=0.4)
    if re.search(r"error|drop|discard|fail", name) and spec.type == "int":
        return "events", dict(mean=0.2)
    if math.isfinite(span) and span > 0:
        return L, dict(base=lo + 0.35 * span, spread=0.1 * span, act=0.15 * span, noise=0.01 * span)
    return L, dict(base=float(spec.min))


def shape_for(kind: str, family: str, name: str, spec) -> tuple[str, dict]:
    return TABLE.get((kind, name)) or generic_shape(family, name, spec)


def _frac_digits(x: float) -> int:
    text = repr(float(x))
    return 0 if "e" in text or text.endswith(".0") else min(6, len(text.split(".")[1]))


def decimals(spec) -> int:
    """Decimal places sent for a float field: ~4 significant digits of its normal band (1 to 3),
    and at least as many as its min/max have, so a value clamped to a bound prints as the bound."""
    lo, hi = _marks(spec)
    span = min(spec.max - spec.min, hi - lo) if hi > lo else spec.max - spec.min
    d = int(min(3, max(1, 3 - math.floor(math.log10(span))))) if span > 0 else 2
    return max(d, _frac_digits(spec.min), _frac_digits(spec.max))


def finalize(spec, v: np.ndarray) -> np.ndarray:
    """Clamp to the valid range and round: float64 for float, int64 for int, bool for bool."""
    if spec.type == "bool":
        return np.asarray(v, dtype=bool)
    if spec.type == "int":
        return np.clip(np.rint(v), math.ceil(spec.min), math.floor(spec.max)).astype(np.int64)
    return np.clip(np.round(v, decimals(spec)), spec.min, spec.max)
