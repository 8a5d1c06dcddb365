"""Check decoded readings against the device profiles and the site registry.

The validator turns one MQTT message (topic, payload, arrival time) into the
points to store and the rejects to quarantine.  It never raises for anything a
device sends: every refusal becomes a :class:`storage.base.Rejected` with one
reason from :data:`REASONS` and a detail an engineer can act on.
"""

from __future__ import annotations

import math
import reprlib
from datetime import datetime, timezone
from typing import NamedTuple

from device_profiles import Profile, Registry
from storage.base import Point, Rejected

from .decoders import DecodeError, RawReading, get_decoder

#: Every reason a reading can be refused for.  Closed set: it is a tag in the store.
REASONS = (
    "too_large",  # payload over the size limit
    "unknown_topic",  # topic matches no profile's pattern
    "unknown_device",  # device id not in the registry, or registered as another kind/site
    "decode_error",  # payload (or one line of it) not in the profile's format
    "unknown_field",  # a field (or tag) the profile does not declare
    "wrong_type",  # a value of the wrong type (string for a number, NaN...)
    "out_of_range",  # a value outside the profile's valid range
    "bad_timestamp",  # unreadable, before 2000, too far in the future, or older than the replay horizon
    "clock_skew",  # the device clock is steadily off beyond the profile's tolerance (ingest/clock.py)
    "store_rejected",  # the store refused the rows as invalid (not a transient failure)
    "wrong_unit",  # SenML: a unit other than the profile's (ingest/senml.py; never converted)
    "unknown_alias",  # Sparkplug B: data by an alias no birth declared, or before the birth (ingest/sparkplug.py)
)

MIN_TS_NS = int(datetime(2000, 1, 1, tzinfo=timezone.utc).timestamp()) * 1_000_000_000
MAX_PAYLOAD_BYTES = 256 * 1024
MAX_READINGS_PER_MESSAGE = 10_000
RAW_KEEP_BYTES = 4096  # how much of a refused payload the quarantine keeps


class Route(NamedTuple):
    profile: Profile
    device_pos: int
    site_pos: int  # -1 when the pattern has no {site}


class _Pattern(NamedTuple):
    n_levels: int
    fixed_pos: tuple[int, ...]


class Router:
    """Finds the profile, device and site a topic belongs to, without scanning every profile."""

    def __init__(self, registry: Registry):
        self._by_shape: dict[_Pattern, dict[tuple[str, ...], Route]] = {}
        for p in registry.kinds.values():
            levels = p.topic.split("/")
            fixed = tuple(i for i, lvl in enumerate(levels) if lvl not in ("{site}", "{device}"))
            key = tuple(levels[i] for i in fixed)
            site_pos = levels.index("{site}") if "{site}" in levels else -1
            self._by_shape.setdefault(_Pattern(len(levels), fixed), {})[key] = Route(p, levels.index("{device}"), site_pos)

    def route(self, topic: str) -> tuple[Route, str, str | None] | None:
        levels = topic.split("/")
        for shape, routes in self._by_shape.items():
            if shape.n_levels != len(levels):
                continue
            r = routes.get(tuple(levels[i] for i in shape.fixed_pos))
            if r is not None:
                return r, levels[r.device_pos], levels[r.site_pos] if r.site_pos >= 0 else None
        return None


def to_ns(ts, unit: str = "auto") -> int:
    """A measurement time as epoch nanoseconds.

    Numbers in ``auto`` unit are read by magnitude: seconds below 1e11, then
    milliseconds, microseconds, nanoseconds. Strings are RFC 3339 / ISO 8601 with
    an offset. Raises ValueError naming what it could not read.
    """
    if isinstance(ts, bool) or not isinstance(ts, (int, float, str)):
        raise ValueError(f"timestamp must be a number or an RFC 3339 string, got {type(ts).__name__}")
    if isinstance(ts, str):
        try:
            dt = datetime.fromisoformat(ts)
        except ValueError:
            raise ValueError(f"timestamp {ts[:40]!r} is not RFC 3339") from None
        if dt.tzinfo is None:
            raise ValueError(f"timestamp {ts[:40]!r} has no UTC offset (add 'Z' or '+07:00')")
        return int(dt.timestamp() * 1_000_000) * 1000
    if isinstance(ts, float) and not math.isfinite(ts):
        raise ValueError(f"timestamp {ts} is not a finite number")
    if unit == "ns":
        ns = int(ts)
    else:
        a = abs(ts)
        scale = 1_000_000_000 if a < 1e11 else 1_000_000 if a < 1e14 else 1_000 if a < 1e17 else 1
        ns = int(round(ts * scale)) if isinstance(ts, float) else int(ts) * scale
    if not -(2**63) < ns < 2**63:
        raise ValueError(f"timestamp {str(ts)[:40]} is out of range (beyond the year 2262)")
    return ns


def check_value(name: str, value, spec) -> tuple[str, str] | None:
    """None if ``value`` fits the field spec, else (reason, detail)."""
    t = spec.type
    if t == "bool":
        if isinstance(value, bool):
            return None
        return "wrong_type", f"field {name!r}: expected true/false, got {_show(value)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "wrong_type", f"field {name!r}: expected a number ({t}), got {_show(value)}"
    if isinstance(value, float) and not math.isfinite(value):
        return "wrong_type", f"field {name!r}: {value} is not a finite number"
    if t == "int" and isinstance(value, float) and not value.is_integer():
        return "wrong_type", f"field {name!r}: expected an integer, got {value}"
    if not spec.min <= value <= spec.max:
        return "out_of_range", f"field {name!r}: {value} {spec.unit} is outside the valid range [{spec.min:g}, {spec.max:g}]"
    return None


_REPR = reprlib.Repr()  # keyword arguments only from Python 3.12
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict = 2, 60, 60, 4, 4


def _show(value) -> str:
    """A short repr that cannot recurse: payloads may nest thousands deep."""
    return _REPR.repr(value)


class Validator:
    """Turns messages into points and rejects, following the profiles."""

    def __init__(self, registry: Registry, max_payload_bytes: int = MAX_PAYLOAD_BYTES):
        self.registry = registry
        self.router = Router(registry)
        self.max_payload_bytes = max_payload_bytes
        # Check at start, not at the first message, that every profile's format has a decoder.
        self._decoders = {k: get_decoder(p.format) for k, p in registry.kinds.items()}
        # Sparkplug B sessions, SenML units, gateways speaking for many devices (ingest/formats.py).
        from .formats import SPARKPLUG_PREFIX, special_formats
        self.sparkplug, self._special = special_formats(self)
        self._sparkplug_prefix = SPARKPLUG_PREFIX

    def message(self, topic: str, payload: bytes, arrived_ns: int) -> tuple[list[Point], list[Rejected]]:
        def reject(reason: str, detail: str, kind: str = "", device: str = "") -> Rejected:
            return Rejected(arrived_ns, topic, reason, detail, bytes(payload[:RAW_KEEP_BYTES]), kind, device[:64])

        if len(payload) > self.max_payload_bytes:
            return [], [reject("too_large", f"payload of {len(payload)} bytes is over the {self.max_payload_bytes}-byte limit")]
        if self.sparkplug is not None and topic.startswith(self._sparkplug_prefix):
            return self.sparkplug.message(topic, payload, arrived_ns)
        found = self.router.route(topic)
        if found is None:
            return [], [reject("unknown_topic", "topic matches no device profile's topic pattern")]
        route, device_id, site_id = found
        profile = route.profile
        device = self.registry.devices.get(device_id)
        if device is None or device.kind != profile.kind or (site_id is not None and site_id != device.site):
            if device is None:
                why = f"device {device_id[:64]!r} is not in the site registry"
            elif device.kind != profile.kind:
                why = f"device {device_id!r} is registered as a {device.kind}, not a {profile.kind}"
            else:
                why = f"device {device_id!r} is registered at site {device.site!r}, not {site_id[:64]!r}"
            return [], [reject("unknown_device", why, profile.kind, device_id)]
        special = self._special.get(profile.format)
        if special is not None:
            return special(topic, payload, arrived_ns, profile, device_id, reject)
        try:
            items = self._decoders[profile.kind](payload)
        except DecodeError as exc:
            return [], [reject("decode_error", f"{profile.format}: {exc}", profile.kind, device_id)]
        if len(items) > MAX_READINGS_PER_MESSAGE:
            return [], [reject("too_large", f"{len(items)} readings in one message; at most {MAX_READINGS_PER_MESSAGE}", profile.kind, device_id)]

        points: list[Point] = []
        rejected: list[Rejected] = []
        many = len(items) > 1
        for n, item in enumerate(items, 1):
            problem = self._check(item, profile, device_id, arrived_ns)
            if isinstance(problem, Point):
                points.append(problem)
                continue
            reason, detail = problem
            if many:
                detail = f"reading {n} of {len(items)}: {detail}"
            rejected.append(reject(reason, detail, profile.kind, device_id))
        return points, rejected

    def _check(self, item, profile: Profile, device_id: str, arrived_ns: int) -> Point | tuple[str, str]:
        if isinstance(item, DecodeError):
            return "decode_error", f"{profile.format}: {item}"
        raw: RawReading = item
        if raw.device is not None and raw.device != device_id:
            return "unknown_device", f"payload names device {raw.device[:64]!r} but the topic names {device_id!r}"
        fields = raw.fields
        specs = profile.fields
        if raw.measurement is not None and raw.measurement != profile.kind:
            return "decode_error", f"measurement {raw.measurement[:64]!r} is not the device's kind {profile.kind!r}"
        if raw.extra_tags:
            return "unknown_field", (f"tag {raw.extra_tags[0][:64]!r} is not declared in profile {profile.kind!r} "
                                     "(only the device tag is read; site and district come from the registry)")
        if not fields:
            return "unknown_field", "the reading holds no field"
        for name, value in fields.items():
            spec = specs.get(name)
            if spec is None:
                return "unknown_field", f"field {name[:64]!r} is not declared in profile {profile.kind!r} (declared: {', '.join(specs)})"
            bad = check_value(name, value, spec)
            if bad is not None:
                return bad
        if raw.ts is None:
            ts_ns = arrived_ns
        else:
            try:
                ts_ns = to_ns(raw.ts, raw.ts_unit)
            except (ValueError, OverflowError) as exc:
                return "bad_timestamp", str(exc)
            if ts_ns < MIN_TS_NS:
                return "bad_timestamp", f"measurement time {_iso(ts_ns)} is before 2000: the device clock is not set"
            ahead_s = (ts_ns - arrived_ns) / 1e9
            # clock_policy correct: ingest/clock.py shifts a clock that runs ahead instead of refusing it
            if ahead_s > profile.reporting.future_tolerance_s and profile.reporting.clock_policy != "correct":
                return "bad_timestamp", (
                    f"measurement time {_iso(ts_ns)} is {ahead_s:.0f} s ahead of arrival; "
                    f"profile {profile.kind!r} tolerates {profile.reporting.future_tolerance_s:g} s: check the device clock (NTP)"
                )
        dev = self.registry.devices[device_id]
        values = {k: (int(v) if specs[k].type != "float" else float(v)) for k, v in fields.items()}
        return Point(profile.kind, device_id, dev.site, dev.district, ts_ns, values, arrived_ns)


def _iso(ts_ns: int) -> str:
    try:
        return datetime.fromtimestamp(ts_ns / 1e9, tz=timezone.utc).isoformat(timespec="seconds")
    except (OverflowError, ValueError, OSError):
        return f"{ts_ns} ns"
